"""The DICOM objects waiting for a person to say whose they are, and that person's answer.

`GET /dicom/pending` lists them with what the object says about its patient and the
scored candidates. `POST /dicom/match` links images (or a whole study) to one patient and
records who verified; later objects of that study then link by themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, model_validator

from orca_imaging import repository
from orca_imaging.bodies import RequestBody
from orca_imaging.errors import ConflictError
from orca_imaging.ids import ID_PATTERN, UID_PATTERN
from orca_imaging.models import FileType, ImageModel, ImageStatus, utcnow

if TYPE_CHECKING:
    from orca_imaging.auth import Principal


def pending(principal: Principal, *, limit: int) -> dict[str, Any]:
    """The clinic's DICOM objects in PENDING_MATCH, most recent first."""
    images = repository.images_with_status(principal.clinic_id, ImageStatus.PENDING_MATCH, limit=limit)
    return {
        "items": [
            {
                "imageId": image.image_id,
                "studyUid": image.study_uid,
                "modality": image.modality,
                "category": image.category,
                "capturedAt": image.captured_at.isoformat() if image.captured_at else None,
                # What the object says about its patient: the person verifying needs it.
                "dicomPatient": (image.dicom_summary or {}).get("patient"),
                "candidates": image.match_candidates or [],
            }
            for image in images
            if image.file_type == FileType.XRAY
        ]
    }


class MatchRequest(RequestBody):
    """Images, or a whole study, and the patient they belong to."""

    patient_id: str = Field(alias="patientId", pattern=ID_PATTERN)
    image_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        default=None, alias="imageIds", min_length=1, max_length=500
    )
    study_uid: str | None = Field(default=None, alias="studyUid", pattern=UID_PATTERN, max_length=64)

    @model_validator(mode="after")
    def _one_selector(self) -> MatchRequest:
        if (self.image_ids is None) == (self.study_uid is None):
            raise ValueError("give imageIds or studyUid, not both")
        return self


def match(principal: Principal, request: MatchRequest, *, correlation_id: str | None) -> dict[str, Any]:
    """Link the images to the patient, each with an audit event naming who verified."""
    repository.get_patient(principal.clinic_id, request.patient_id)
    if request.study_uid:
        images = repository.images_of_study(principal.clinic_id, request.study_uid)
    else:
        images = [repository.get_image(principal.clinic_id, i) for i in request.image_ids or []]
    waiting = [i for i in images if i.status == ImageStatus.PENDING_MATCH]
    if not waiting:
        raise ConflictError("nothing here is waiting for a patient")
    linked = [
        image.image_id for image in waiting if _link(principal, image, request.patient_id, correlation_id)
    ]
    return {"patientId": request.patient_id, "linked": linked}


def _link(principal: Principal, image: ImageModel, patient_id: str, correlation_id: str | None) -> bool:
    audit = repository.caller_audit(
        principal,
        "DICOM_MATCH_VERIFIED",
        ("image", image.image_id),
        correlation_id=correlation_id,
        details={"patientId": patient_id},
    )
    return repository.transition_image(
        image,
        audit,
        expected=ImageModel.status == ImageStatus.PENDING_MATCH,
        status=ImageStatus.ACTIVE,
        patient_id=patient_id,
        match_verified_by=principal.user_id,
        matched_at=utcnow(),
        match_candidates=None,
    )
