"""What every API function shares: the caller, permissions, and errors as JSON.

A route declares its permission with `@requires(...)`; the resolver's exception handlers
turn every `OrcaError` (and request validation failures) into
`{code, message, correlationId}` with the error's status, in one place.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError as PowertoolsValidationError,
)
from pydantic import BaseModel

from orca_imaging.auth import Permission, Principal, principal_from_claims
from orca_imaging.errors import NotFoundError, OrcaError, RequestValidationError
from orca_imaging.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from orca_imaging.models import ImageModel

P = ParamSpec("P")
R = TypeVar("R")


class ErrorBody(BaseModel):
    """Every error the API returns."""

    code: str
    message: str
    correlationId: str | None = None  # noqa: N815 - the wire name
    details: dict[str, Any] | None = None


_ERROR_TEXT = {
    400: "The request is invalid; `details.fields` names each field",
    401: "No valid token",
    403: "The caller's roles lack the permission",
    404: "Not found in the caller's clinic",
    409: "The item is not in a state that allows this",
    413: "The file is larger than the clinic allows",
    502: "The PACS could not be reached, refused the association, or failed the request",
    503: "A dependency failed; retry",
}


def responses(success: int, *errors: int, description: str = "Success") -> dict[int, dict[str, Any]]:
    """OpenAPI responses for a route: its success status and the errors it can return."""
    documented: dict[int, dict[str, Any]] = {
        code: {"description": _ERROR_TEXT[code], "content": {"application/json": {"model": ErrorBody}}}
        for code in sorted({400, 401, 403, 503, *errors})
    }
    documented[success] = {"description": description}
    if success != 204:
        documented[success]["content"] = {"application/json": {"schema": {"type": "object"}}}
    return documented


def current_principal(app: APIGatewayRestResolver) -> Principal:
    authorizer = app.current_event.request_context.authorizer
    claims = authorizer.get("claims") if authorizer else None
    return principal_from_claims(claims)


def requires(
    app: APIGatewayRestResolver, permission: Permission
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Reject the call with 403 unless the caller's roles grant `permission`."""

    def decorate(route: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(route)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            current_principal(app).require(permission)
            return route(*args, **kwargs)

        return guarded

    return decorate


def correlation_id() -> str | None:
    value = logger.get_correlation_id()
    return str(value) if value else None


def error_response(error: OrcaError) -> Response[Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message, "correlationId": correlation_id()}
    if error.details:
        body["details"] = error.details
    return Response(status_code=error.status, content_type="application/json", body=body)


def install_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(OrcaError)
    def _domain_error(error: OrcaError) -> Response[Any]:
        log = logger.warning if error.status < 500 else logger.error
        log("request failed", extra={"code": error.code, "status": error.status})
        if isinstance(error, NotFoundError) and error.subject:
            _audit_not_found(app, error.subject)
        return error_response(error)

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[Any]:
        """A fault of ours: the caller gets the error shape and a correlation id to quote,
        not API Gateway's bare 502; the log line keeps the traceback, and the message only
        as `observability.PhiSafeFormatter` allows (Lambda would have logged it whole)."""
        logger.exception("request failed unexpectedly")
        return error_response(OrcaError("internal error; quote the correlation id when reporting it"))

    @app.exception_handler(PowertoolsValidationError)
    def _invalid_request(error: PowertoolsValidationError) -> Response[Any]:
        fields = [
            {
                "field": ".".join(str(part) for part in e.get("loc", ()) if part != "body"),
                "message": e.get("msg", "invalid"),
            }
            for e in error.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return error_response(
            RequestValidationError(f"invalid request: {summary}", details={"fields": fields})
        )


def _audit_not_found(app: APIGatewayRestResolver, subject: tuple[str, str]) -> None:
    """Every 404 on an id is audited in the caller's clinic: a probe for another clinic's
    ids leaves a trace, and the answer is the same whether or not the id exists elsewhere."""
    from orca_imaging import repository

    principal = current_principal(app)
    repository.record_caller_audit(
        principal,
        "ACCESS_NOT_FOUND",
        subject,
        correlation_id=correlation_id(),
        details={"path": app.current_event.path, "method": app.current_event.http_method},
    )


_INTERNAL_FIELDS = {
    "patientKey",
    "capturedAtKey",
    "shaKey",
    "sopKey",
    "statusKey",
    "updatedAtKey",
    "batchKey",
    "version",
    "multipartUploadId",
}


# JSON attributes the simple dict leaves as text; the API returns them as objects.
_JSON_FIELDS = ("metadata", "dicomData", "dicomSummary", "radiationDose", "matchCandidates", "volume")


def image_view(image: ImageModel) -> dict[str, Any]:
    """The record as the API shows it: the spec's field names, no index plumbing."""
    view = {k: v for k, v in image.to_simple_dict().items() if k not in _INTERNAL_FIELDS}
    for name in _JSON_FIELDS:
        if isinstance(view.get(name), str):
            view[name] = json.loads(view[name])
    return view


def openapi_document(app: APIGatewayRestResolver, *, title: str, version: str) -> dict[str, Any]:
    """The resolver's OpenAPI document, corrected where Powertools guesses from annotations:
    a 204 has no body, whatever the route's return type says."""
    document: dict[str, Any] = app.get_openapi_schema(title=title, version=version).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).get("204", {}).pop("content", None)
    return document
