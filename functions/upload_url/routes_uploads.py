"""Upload targets: single files, batches, DICOM and 3D imports, and multipart uploads."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from orca_imaging import batches, clients, multipart, uploads
from orca_imaging.api import correlation_id, current_principal, requires, responses
from orca_imaging.auth import Permission
from orca_imaging.ids import ID_PATTERN
from orca_imaging.observability import metrics
from orca_imaging.resources import API_BASE
from orca_imaging.settings import ApiSettings, load

router = Router()
CAPTURE = Permission.CAPTURE


def _created(body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=201, content_type="application/json", body=body)


@router.post(f"{API_BASE}/upload", responses=responses(201, 404, 413))
@requires(router, CAPTURE)
def request_upload(request: Annotated[uploads.UploadRequest, Body()]) -> Response[dict[str, Any]]:
    target = uploads.create_upload_target(
        request,
        current_principal(router),
        s3=clients.s3(),
        settings=load(ApiSettings),
        correlation_id=correlation_id(),
    )
    metrics.add_metric(name="UploadTargetsIssued", unit="Count", value=1)
    return _created(target.model_dump(by_alias=True, exclude_none=True))


def _batch(request: batches.BatchRequest, kind: batches.BatchKind) -> Response[dict[str, Any]]:
    created = batches.create_batch(
        request,
        current_principal(router),
        kind=kind,
        s3=clients.s3(),
        sfn=clients.stepfunctions(),
        settings=load(ApiSettings),
        correlation_id=correlation_id(),
    )
    metrics.add_metric(name="UploadTargetsIssued", unit="Count", value=len(created.targets))
    return _created(created.model_dump(by_alias=True, exclude_none=True))


@router.post(f"{API_BASE}/upload/batch", responses=responses(201, 404, 413))
@requires(router, CAPTURE)
def request_batch(request: Annotated[batches.BatchRequest, Body()]) -> Response[dict[str, Any]]:
    return _batch(request, batches.BatchKind.UPLOAD)


@router.post(f"{API_BASE}/dicom/import", responses=responses(201, 404, 413))
@requires(router, CAPTURE)
def request_dicom_import(request: Annotated[batches.BatchRequest, Body()]) -> Response[dict[str, Any]]:
    return _batch(request, batches.BatchKind.DICOM_IMPORT)


@router.post(f"{API_BASE}/3d/import", responses=responses(201, 404, 413))
@requires(router, CAPTURE)
def request_scan_import(request: Annotated[batches.BatchRequest, Body()]) -> Response[dict[str, Any]]:
    return _batch(request, batches.BatchKind.SCAN_IMPORT)


@router.get(f"{API_BASE}/upload/batch/<batch_id>", responses=responses(200, 404))
@requires(router, CAPTURE)
def get_batch(batch_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return batches.batch_view(current_principal(router), batch_id)


@router.delete(f"{API_BASE}/upload/batch/<batch_id>", responses=responses(200, 404, 409))
@requires(router, CAPTURE)
def cancel_batch(batch_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return batches.cancel_batch(
        current_principal(router),
        batch_id,
        s3=clients.s3(),
        sfn=clients.stepfunctions(),
        settings=load(ApiSettings),
        correlation_id=correlation_id(),
    )


@router.get(f"{API_BASE}/upload/<image_id>/parts", responses=responses(200, 404, 409))
@requires(router, CAPTURE)
def list_parts(image_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return multipart.list_parts(
        current_principal(router), image_id, s3=clients.s3(), settings=load(ApiSettings)
    )


@router.post(f"{API_BASE}/upload/<image_id>/parts", responses=responses(200, 404, 409))
@requires(router, CAPTURE)
def resign_parts(
    image_id: Annotated[str, Path(pattern=ID_PATTERN)], request: Annotated[multipart.ResignRequest, Body()]
) -> dict[str, Any]:
    urls = multipart.resign_parts(
        current_principal(router), image_id, request, s3=clients.s3(), settings=load(ApiSettings)
    )
    return {"imageId": image_id, "parts": [u.model_dump(by_alias=True) for u in urls]}


@router.post(f"{API_BASE}/upload/<image_id>/complete", responses=responses(200, 404, 409))
@requires(router, CAPTURE)
def complete_upload(
    image_id: Annotated[str, Path(pattern=ID_PATTERN)], request: Annotated[multipart.CompleteRequest, Body()]
) -> dict[str, Any]:
    return multipart.complete(
        current_principal(router), image_id, request, s3=clients.s3(), settings=load(ApiSettings)
    )


@router.delete(f"{API_BASE}/upload/<image_id>", responses=responses(204, 404, 409))
@requires(router, CAPTURE)
def abort_upload(image_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response[None]:
    multipart.abort(
        current_principal(router),
        image_id,
        s3=clients.s3(),
        settings=load(ApiSettings),
        correlation_id=correlation_id(),
    )
    return Response(status_code=204)
