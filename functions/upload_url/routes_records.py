"""Records: an image with its view URLs, a patient's images, soft delete, the registry replica."""

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from orca_imaging import clients, records
from orca_imaging.api import correlation_id, current_principal, requires, responses
from orca_imaging.auth import Permission
from orca_imaging.ids import ID_PATTERN
from orca_imaging.models import FileType, ImageCategory, ImageStatus
from orca_imaging.resources import API_BASE
from orca_imaging.settings import ApiSettings, load

router = Router()


@router.get(f"{API_BASE}/images/<image_id>", responses=responses(200, 404))
@requires(router, Permission.VIEW)
def get_image(image_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return records.image_with_urls(
        current_principal(router),
        image_id,
        s3=clients.s3(),
        settings=load(ApiSettings),
        correlation_id=correlation_id(),
    )


@router.delete(f"{API_BASE}/images/<image_id>", responses=responses(204, 404, 409))
@requires(router, Permission.DELETE)
def delete_image(image_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response[None]:
    records.soft_delete(current_principal(router), image_id, correlation_id=correlation_id())
    return Response(status_code=204)


@router.get(f"{API_BASE}/patients/<patient_id>/images", responses=responses(200, 404))
@requires(router, Permission.VIEW)
def patient_images(
    patient_id: Annotated[str, Path(pattern=ID_PATTERN)],
    file_type: Annotated[FileType | None, Query(alias="fileType")] = None,
    category: Annotated[ImageCategory | None, Query()] = None,
    status: Annotated[ImageStatus | None, Query()] = None,
    captured_from: Annotated[datetime | None, Query(alias="from")] = None,
    captured_to: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    query = records.ImageQuery(
        file_type=file_type,
        category=category,
        status=status,
        captured_from=captured_from,
        captured_to=captured_to,
        limit=limit,
        cursor=cursor,
    )
    return records.patient_images(current_principal(router), patient_id, query)


@router.get(f"{API_BASE}/patients/<patient_id>/radiation", responses=responses(200, 404))
@requires(router, Permission.VIEW)
def patient_radiation(patient_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return records.patient_radiation(current_principal(router), patient_id)


@router.put(f"{API_BASE}/patients/<patient_id>", responses=responses(204))
@requires(router, Permission.ADMIN)
def put_patient(
    patient_id: Annotated[str, Path(pattern=ID_PATTERN)], record: Annotated[records.PatientRecord, Body()]
) -> Response[None]:
    records.put_patient(current_principal(router), patient_id, record, correlation_id=correlation_id())
    return Response(status_code=204)


@router.get(f"{API_BASE}/settings", responses=responses(200))
@requires(router, Permission.ADMIN)
def get_settings() -> dict[str, Any]:
    return records.clinic_settings_view(current_principal(router))


@router.put(f"{API_BASE}/settings", responses=responses(200))
@requires(router, Permission.ADMIN)
def put_settings(request: Annotated[records.ClinicSettingsRequest, Body()]) -> dict[str, Any]:
    return records.put_clinic_settings(current_principal(router), request, correlation_id=correlation_id())
