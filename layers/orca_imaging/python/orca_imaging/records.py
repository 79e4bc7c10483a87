"""Reading records back: the image as the API shows it, with short-lived view URLs."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from orca_imaging import repository
from orca_imaging.api import image_view
from orca_imaging.bodies import RequestBody
from orca_imaging.errors import RequestValidationError
from orca_imaging.limits import IN_MEMORY_MAX_BYTES, PhotoLimits
from orca_imaging.matching import compile_pattern
from orca_imaging.models import (
    ClinicSettingsModel,
    FileType,
    ImageCategory,
    ImageModel,
    ImageStatus,
    PatientModel,
    scoped,
    utcnow,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from pynamodb.expressions.condition import Condition

    from orca_imaging.auth import Principal
    from orca_imaging.settings import ApiSettings


def variant_keys(image: ImageModel) -> dict[str, str]:
    return dict(image.variant_keys.as_dict()) if image.variant_keys else {}


def image_with_urls(
    principal: Principal, image_id: str, *, s3: S3Client, settings: ApiSettings, correlation_id: str | None
) -> dict[str, Any]:
    """The caller's clinic's image plus presigned GETs; issuing them is an audit event."""
    image = repository.get_image(principal.clinic_id, image_id)
    view = image_view(image)
    urls: dict[str, str] = {}
    if image.status not in (ImageStatus.PENDING_UPLOAD, ImageStatus.DELETED):
        if image.storage_key:  # a CBCT volume has no original of its own: its slices do
            params: dict[str, Any] = {"Bucket": settings.originals_bucket, "Key": image.storage_key}
            if image.object_version:
                params["VersionId"] = image.object_version
            urls["original"] = s3.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=settings.view_url_ttl_seconds
            )
        for variant, key in variant_keys(image).items():
            urls[variant] = s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": settings.derived_bucket, "Key": key},
                ExpiresIn=settings.view_url_ttl_seconds,
            )
        repository.record_caller_audit(
            principal,
            "VIEW_URLS_ISSUED",
            ("image", image_id),
            correlation_id=correlation_id,
            details={"variants": sorted(urls)},
        )
    view["urls"] = urls
    return view


class ImageQuery(RequestBody):
    """Filters for a patient's images; `cursor` is the opaque value of `nextCursor`."""

    file_type: FileType | None = Field(default=None, alias="fileType")
    category: ImageCategory | None = None
    status: ImageStatus | None = None
    captured_from: datetime | None = Field(default=None, alias="from")
    captured_to: datetime | None = Field(default=None, alias="to")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=2048)


def _decode_cursor(cursor: str, patient_key: str) -> dict[str, Any]:
    try:
        key: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as e:
        raise RequestValidationError("the cursor is not valid") from e
    # A cursor is only good for the listing that produced it: never another patient or clinic.
    if not isinstance(key, dict) or key.get("patientKey", {}).get("S") != patient_key:
        raise RequestValidationError("the cursor is not valid for this listing")
    return key


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def patient_images(principal: Principal, patient_id: str, query: ImageQuery) -> dict[str, Any]:
    """A page of the patient's images, newest first; deleted ones only when asked for."""
    repository.get_patient(principal.clinic_id, patient_id)
    patient_key = scoped(principal.clinic_id, patient_id)
    index = ImageModel.by_patient
    range_condition: Condition | None
    if query.captured_from and query.captured_to:
        range_condition = ImageModel.captured_at_key.between(
            _iso(query.captured_from), _iso(query.captured_to)
        )
    elif query.captured_from:
        range_condition = ImageModel.captured_at_key >= _iso(query.captured_from)
    elif query.captured_to:
        range_condition = ImageModel.captured_at_key <= _iso(query.captured_to)
    else:
        range_condition = None
    filters = (
        [ImageModel.status == query.status] if query.status else [ImageModel.status != ImageStatus.DELETED]
    )
    if query.file_type:
        filters.append(ImageModel.file_type == query.file_type)
    if query.category:
        filters.append(ImageModel.category == query.category)
    condition = filters[0]
    for extra in filters[1:]:
        condition &= extra
    results = index.query(
        patient_key,
        range_key_condition=range_condition,
        filter_condition=condition,
        scan_index_forward=False,
        limit=query.limit,
        last_evaluated_key=_decode_cursor(query.cursor, patient_key) if query.cursor else None,
    )
    items = [image_view(image) for image in results]
    last = results.last_evaluated_key
    next_cursor = base64.urlsafe_b64encode(json.dumps(last).encode()).decode() if last else None
    return {"patientId": patient_id, "images": items, "nextCursor": next_cursor}


def soft_delete(principal: Principal, image_id: str, *, correlation_id: str | None) -> None:
    """Mark the image DELETED (its objects stay, recoverable); audited."""
    image = repository.get_image(principal.clinic_id, image_id)
    if image.status == ImageStatus.DELETED:
        return
    audit = repository.caller_audit(
        principal,
        "IMAGE_DELETED",
        ("image", image_id),
        correlation_id=correlation_id,
        details={"previousStatus": image.status},
    )
    repository.transition_image(
        image,
        audit,
        expected=ImageModel.status == image.status,
        status=ImageStatus.DELETED,
        deleted_at=utcnow(),
        updated_by=principal.user_id,
    )


class PatientRecord(RequestBody):
    """The registry replica's view of a patient, as the practice-management system sends it."""

    chart_number: str | None = Field(default=None, alias="chartNumber", max_length=64)
    family_name: str | None = Field(default=None, alias="familyName", max_length=128)
    given_name: str | None = Field(default=None, alias="givenName", max_length=128)
    birth_date: date | None = Field(default=None, alias="birthDate")
    sex: Literal["M", "F", "O"] | None = None


def put_patient(
    principal: Principal, patient_id: str, record: PatientRecord, *, correlation_id: str | None
) -> None:
    repository.save_patient(
        PatientModel(
            clinic_id=principal.clinic_id,
            patient_id=patient_id,
            chart_number=record.chart_number,
            family_name=record.family_name,
            given_name=record.given_name,
            birth_date=record.birth_date.isoformat() if record.birth_date else None,
            sex=record.sex,
        )
    )
    repository.record_caller_audit(
        principal,
        "PATIENT_SYNCED",
        ("patient", patient_id),
        correlation_id=correlation_id,
    )


def patient_radiation(principal: Principal, patient_id: str) -> dict[str, Any]:
    """Each recorded exposure of the patient, oldest first, and the cumulative dose per
    quantity and unit (doses in different units are never added together).

    A study with a Radiation Dose SR is counted by its report, which states the study's
    totals; its images' own dose attributes are listed, linked to the report, but not
    added again.
    """
    repository.get_patient(principal.clinic_id, patient_id)
    images = repository.patient_images_with_dose(principal.clinic_id, patient_id)
    reports = {
        image.study_uid: image.image_id
        for image in images
        if image.study_uid and (image.radiation_dose or {}).get("source") == "rdsr"
    }
    exposures: list[dict[str, Any]] = []
    totals: defaultdict[tuple[str, str], float] = defaultdict(float)
    for image in images:
        dose = image.radiation_dose or {}
        is_report = dose.get("source") == "rdsr"
        counted = is_report or image.study_uid not in reports
        if counted:
            for entry in dose.get("doses", []):
                totals[(entry["quantity"], entry["unit"])] += float(entry["value"])
        exposures.append(
            {
                "imageId": image.image_id,
                "capturedAt": image.captured_at.isoformat() if image.captured_at else None,
                "modality": image.modality,
                "category": image.category,
                "studyUid": image.study_uid,
                "source": "rdsr" if is_report else "image",
                "doseReport": None if is_report else reports.get(image.study_uid or ""),
                "countedInTotals": counted,
                "doses": dose.get("doses", []),
                "exposure": dose.get("exposure", {}),
            }
        )
    return {
        "patientId": patient_id,
        "exposures": exposures,
        "totals": [
            {"quantity": quantity, "unit": unit, "value": round(value, 6)}
            for (quantity, unit), value in sorted(totals.items())
        ],
    }


class CategoryRuleRequest(RequestBody):
    """One DICOM category rule (see the README's "DICOM categories")."""

    modalities: list[Annotated[str, Field(pattern=r"^[A-Za-z]{2,4}$")]] = Field(min_length=1, max_length=10)
    category: ImageCategory
    code: str | None = Field(default=None, pattern=r"^[A-Z]{2,8}$")
    words: list[Annotated[str, Field(min_length=2, max_length=32)]] = Field(
        default_factory=list, max_length=20
    )
    views: list[Annotated[str, Field(max_length=16)]] = Field(default_factory=list, max_length=10)
    body_parts: list[Annotated[str, Field(max_length=16)]] = Field(
        default_factory=list, alias="bodyParts", max_length=10
    )


class ClinicSettingsRequest(RequestBody):
    """What a clinic admin sets for intake. A field left out goes back to the default."""

    filename_pattern: str | None = Field(default=None, alias="filenamePattern", min_length=3, max_length=128)
    photo_soft_limit_bytes: int | None = Field(
        default=None, alias="photoSoftLimitBytes", gt=0, le=IN_MEMORY_MAX_BYTES
    )
    photo_hard_limit_bytes: int | None = Field(
        default=None, alias="photoHardLimitBytes", gt=0, le=IN_MEMORY_MAX_BYTES
    )
    min_photo_edge_pixels: int | None = Field(default=None, alias="minPhotoEdgePixels", gt=0, le=10_000)
    dicom_auto_link: Literal["exact", "never"] | None = Field(default=None, alias="dicomAutoLink")
    dicom_category_rules: list[CategoryRuleRequest] | None = Field(
        default=None, alias="dicomCategoryRules", max_length=50
    )

    @model_validator(mode="after")
    def _soft_below_hard(self) -> ClinicSettingsRequest:
        limits = PhotoLimits(
            soft_limit_bytes=self.photo_soft_limit_bytes or PhotoLimits.soft_limit_bytes,
            hard_limit_bytes=self.photo_hard_limit_bytes or PhotoLimits.hard_limit_bytes,
        )
        if limits.soft_limit_bytes > limits.hard_limit_bytes:
            raise ValueError("photoSoftLimitBytes must not exceed photoHardLimitBytes")
        return self


def clinic_settings_view(principal: Principal) -> dict[str, Any]:
    current = repository.clinic_settings(principal.clinic_id)
    limits = PhotoLimits.for_clinic(current)
    return {
        "clinicId": principal.clinic_id,
        "filenamePattern": current.filename_pattern,
        "photoSoftLimitBytes": limits.soft_limit_bytes,
        "photoHardLimitBytes": limits.hard_limit_bytes,
        "minPhotoEdgePixels": limits.min_edge_pixels,
        "dicomAutoLink": current.dicom_auto_link or "exact",
        "dicomCategoryRules": current.dicom_category_rules or [],
    }


def put_clinic_settings(
    principal: Principal, request: ClinicSettingsRequest, *, correlation_id: str | None
) -> dict[str, Any]:
    if request.filename_pattern:
        compile_pattern(request.filename_pattern)  # refuse a pattern that cannot work
    repository.save_clinic_settings(
        ClinicSettingsModel(
            clinic_id=principal.clinic_id,
            filename_pattern=request.filename_pattern,
            photo_soft_limit_bytes=request.photo_soft_limit_bytes,
            photo_hard_limit_bytes=request.photo_hard_limit_bytes,
            min_photo_edge_pixels=request.min_photo_edge_pixels,
            dicom_auto_link=request.dicom_auto_link,
            dicom_category_rules=[
                rule.model_dump(by_alias=True, mode="json") for rule in request.dicom_category_rules or []
            ]
            or None,
            updated_by=principal.user_id,
        )
    )
    repository.record_caller_audit(
        principal, "CLINIC_SETTINGS_CHANGED", ("clinic", principal.clinic_id), correlation_id=correlation_id
    )
    return clinic_settings_view(principal)
