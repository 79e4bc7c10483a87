"""The imaging API: upload targets and records. Parse, authorize, call the domain, return.

No `from __future__ import annotations` here: the resolver reads the route signatures at
run time to validate requests, through the permission wrapper.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from orca_imaging import clients, records, repository, uploads
from orca_imaging.api import correlation_id, current_principal, install_error_handlers, requires
from orca_imaging.auth import Permission
from orca_imaging.observability import logger, metrics, tracer
from orca_imaging.resources import API_BASE
from orca_imaging.settings import ApiSettings, load

SETTINGS = load(ApiSettings)
repository.bind_tables(SETTINGS)

app = APIGatewayRestResolver(enable_validation=True)
install_error_handlers(app)


@app.post(f"{API_BASE}/upload")
@requires(app, Permission.CAPTURE)
def request_upload(request: Annotated[uploads.UploadRequest, Body()]) -> Response[dict[str, Any]]:
    target = uploads.create_upload_target(
        request,
        current_principal(app),
        s3=clients.s3(),
        settings=SETTINGS,
        correlation_id=correlation_id(),
    )
    metrics.add_metric(name="UploadTargetsIssued", unit="Count", value=1)
    return Response(status_code=201, content_type="application/json", body=target.model_dump(by_alias=True))


@app.get(f"{API_BASE}/images/<image_id>")
@requires(app, Permission.VIEW)
def get_image(image_id: str) -> dict[str, Any]:
    return records.image_with_urls(
        current_principal(app),
        image_id,
        s3=clients.s3(),
        settings=SETTINGS,
        correlation_id=correlation_id(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
