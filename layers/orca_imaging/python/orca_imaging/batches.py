"""Upload batches: many targets at once, tracked to completion by a Step Functions execution.

The execution (definitions/batch.asl.json) only reads the batch's counters and acts on
them; the consumers move the counters. Cancelling marks the batch, stops the execution and
expires every file not yet uploaded; files already processed stay.
"""

from __future__ import annotations

import json
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from orca_imaging import repository
from orca_imaging.bodies import RequestBody, ResponseBody
from orca_imaging.errors import ConflictError, DependencyError, RequestValidationError
from orca_imaging.ids import ID_PATTERN, new_id
from orca_imaging.matching import match_name
from orca_imaging.models import BatchModel, BatchStatus, ImageModel, ImageStatus, UploadSource, utcnow
from orca_imaging.uploads import UploadFile, UploadSigner, UploadTarget, new_pending_image, with_warnings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from orca_imaging.auth import Principal
    from orca_imaging.settings import ApiSettings


class BatchKind(StrEnum):
    UPLOAD = "upload"
    DICOM_IMPORT = "dicom_import"
    SCAN_IMPORT = "3d_import"


class BatchRequest(RequestBody):
    """Many files at once; the patient is per batch, per file, or (folder imports) neither."""

    files: list[UploadFile] = Field(min_length=1, max_length=1000)
    patient_id: str | None = Field(default=None, alias="patientId", pattern=ID_PATTERN)
    source: UploadSource = UploadSource.FOLDER_IMPORT
    protocol_session_id: str | None = Field(default=None, alias="protocolSessionId", pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _names_unique(self) -> BatchRequest:
        names = [f.file_name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("file names must be unique within a batch")
        return self


class BatchTargets(ResponseBody):
    batch_id: str = Field(alias="batchId")
    batch_number: str = Field(alias="batchNumber")
    status: str
    upload_deadline: str = Field(alias="uploadDeadline")
    targets: list[UploadTarget]


class FileStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


_FILE_STATUS = {
    ImageStatus.PENDING_UPLOAD: FileStatus.PENDING,
    ImageStatus.PROCESSING: FileStatus.PROCESSING,
    ImageStatus.ACTIVE: FileStatus.SUCCEEDED,
    ImageStatus.PENDING_MATCH: FileStatus.SUCCEEDED,
    ImageStatus.ARCHIVED: FileStatus.SUCCEEDED,
    ImageStatus.DELETED: FileStatus.SUCCEEDED,
    ImageStatus.REJECTED: FileStatus.FAILED,
}
CANCELLED_CODE = "upload_cancelled"


def file_status(image: ImageModel) -> FileStatus:
    if image.status == ImageStatus.REJECTED and image.reject_code == CANCELLED_CODE:
        return FileStatus.CANCELLED
    return _FILE_STATUS[ImageStatus(image.status)]


def create_batch(
    request: BatchRequest,
    principal: Principal,
    *,
    kind: BatchKind,
    s3: S3Client,
    sfn: SFNClient,
    settings: ApiSettings,
    correlation_id: str | None,
) -> BatchTargets:
    """Record a batch and a PENDING_UPLOAD image per file, sign every target, start tracking."""
    if len(request.files) > settings.max_batch_files:
        raise RequestValidationError(f"a batch holds at most {settings.max_batch_files} files")
    signer = UploadSigner(s3, settings, principal, correlation_id)
    cautions = [signer.check(file) for file in request.files]
    for patient_id in {f.patient_id or request.patient_id for f in request.files} - {None}:
        repository.get_patient(principal.clinic_id, str(patient_id))

    files = _match_by_name(principal.clinic_id, request)
    batch_id = new_id("bat")
    now = utcnow()
    deadline = now + timedelta(seconds=settings.batch_upload_timeout_seconds)
    images = [
        new_pending_image(
            file,
            principal,
            expires_in=min(signer.policy.expiry_seconds(file.size), settings.batch_upload_timeout_seconds),
            source=request.source,
            protocol_session_id=request.protocol_session_id,
            batch_id=batch_id,
            patient_id=request.patient_id,
        )
        for file in files
    ]
    targets = [
        with_warnings(signer.target(image), principal.clinic_id, image.declared_sha256, file_cautions)
        for image, file_cautions in zip(images, cautions, strict=True)
    ]
    batch = BatchModel(
        clinic_id=principal.clinic_id,
        batch_id=batch_id,
        batch_number=f"B-{now:%Y%m%d}-{batch_id[-6:].upper()}",
        status=BatchStatus.PROCESSING,
        source=request.source,
        kind=kind,
        patient_id=request.patient_id,
        protocol_session_id=request.protocol_session_id,
        total_files=len(images),
        upload_deadline=deadline,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
        started_at=now,
    )
    repository.create_batch(batch)
    repository.put_images(
        images,
        repository.caller_audit(
            principal,
            "BATCH_REQUESTED",
            ("batch", batch_id),
            correlation_id=correlation_id,
            details={"files": len(images), "kind": str(kind), "source": str(request.source)},
        ),
    )
    batch.execution_arn = _start_tracking(sfn, settings, batch, [i.image_id for i in images])
    repository.update_batch(batch, [BatchModel.execution_arn.set(batch.execution_arn)])
    return BatchTargets(
        batch_id=batch_id,
        batch_number=batch.batch_number,
        status=batch.status,
        upload_deadline=deadline.isoformat(),
        targets=targets,
    )


def _match_by_name(clinic_id: str, request: BatchRequest) -> list[UploadFile]:
    """Files with no patient named get one from the clinic's filename pattern, if it
    resolves to exactly one patient in the registry; otherwise they stay unassigned and
    will wait in PENDING_MATCH."""
    if request.patient_id:
        return list(request.files)
    pattern = repository.clinic_settings(clinic_id).filename_pattern
    if not pattern:
        return list(request.files)
    charts: dict[str, str | None] = {}
    matched = []
    for file in request.files:
        found = None if file.patient_id else match_name(pattern, file.file_name)
        if found is None:
            matched.append(file)
            continue
        if found.chart not in charts:
            patient = repository.patient_with_chart(clinic_id, found.chart)
            charts[found.chart] = patient.patient_id if patient else None
        updates: dict[str, Any] = {"patient_id": charts[found.chart]}
        if found.slot and not file.protocol_slot:
            updates["protocol_slot"] = found.slot
        matched.append(file.model_copy(update=updates))
    return matched


def _start_tracking(sfn: SFNClient, settings: ApiSettings, batch: BatchModel, image_ids: list[str]) -> str:
    execution_input = {
        "clinicId": batch.clinic_id,
        "batchId": batch.batch_id,
        "pollSeconds": settings.batch_poll_seconds,
        # The upload deadline as a number of polls: a counter behaves the same in AWS and
        # in the local interpreter, where timestamp formats differ.
        "clock": {"pollsLeft": -(-settings.batch_upload_timeout_seconds // settings.batch_poll_seconds)},
        "swept": False,
        "imageIds": image_ids,
    }
    try:
        started = sfn.start_execution(
            stateMachineArn=settings.batch_state_machine_arn,
            # Named after the batch: a retried request can never start a second tracker.
            name=batch.batch_id,
            input=json.dumps(execution_input),
        )
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("starting the batch tracker failed") from e
    return started["executionArn"]


def batch_view(principal: Principal, batch_id: str) -> dict[str, Any]:
    """Counts, progress and each file's status with its reason, for the caller's clinic."""
    batch = repository.get_batch(principal.clinic_id, batch_id)
    images = repository.images_in_batch(principal.clinic_id, batch_id)
    if batch.status != BatchStatus.PROCESSING:
        # The batch index is eventually consistent (in DynamoDB as in moto): a file the
        # finished counters include may still read as unfinished there. Read those again.
        images = [
            repository.get_image(image.clinic_id, image.image_id)
            if image.status in (ImageStatus.PENDING_UPLOAD, ImageStatus.PROCESSING)
            else image
            for image in images
        ]
    files = []
    for image in images:
        status = file_status(image)
        entry: dict[str, Any] = {"imageId": image.image_id, "fileName": image.filename, "status": status}
        if image.reject_code:
            entry |= {"reason": image.reject_code, "message": image.reject_message}
        if image.warnings:
            entry["warnings"] = list(image.warnings)
        files.append(entry)
    succeeded, failed = int(batch.succeeded_count), int(batch.failed_count)
    total = int(batch.total_files)
    return {
        "batchId": batch.batch_id,
        "batchNumber": batch.batch_number,
        "status": batch.status,
        "kind": batch.kind,
        "source": batch.source,
        "patientId": batch.patient_id,
        "total": total,
        "processed": succeeded + failed,
        "succeeded": succeeded,
        "failed": failed,
        "progress": round(100.0 * (succeeded + failed) / total, 1) if total else 100.0,
        "uploadDeadline": batch.upload_deadline.isoformat(),
        "createdAt": batch.created_at.isoformat(),
        "completedAt": batch.completed_at,
        "cancelledAt": batch.cancelled_at.isoformat() if batch.cancelled_at else None,
        "files": files,
        "errors": [f for f in files if f["status"] == FileStatus.FAILED],
    }


_FINISHED = (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS)


def cancel_batch(
    principal: Principal,
    batch_id: str,
    *,
    s3: S3Client,
    sfn: SFNClient,
    settings: ApiSettings,
    correlation_id: str | None,
) -> dict[str, Any]:
    """Stop tracking, expire every pending upload, and mark the batch CANCELLED."""
    batch = repository.get_batch(principal.clinic_id, batch_id)
    if batch.status in _FINISHED:
        raise ConflictError(f"the batch is already {batch.status}")
    if batch.status != BatchStatus.CANCELLED:
        now = utcnow()
        changed = repository.update_batch(
            batch,
            [
                BatchModel.status.set(BatchStatus.CANCELLED),
                BatchModel.cancelled_at.set(now),
                BatchModel.updated_at.set(now),
            ],
            condition=BatchModel.status.is_in(BatchStatus.PENDING, BatchStatus.PROCESSING),
        )
        if not changed:  # it finished (or was cancelled) meanwhile
            return batch_view(principal, batch_id)
        repository.record_caller_audit(
            principal,
            "BATCH_CANCELLED",
            ("batch", batch_id),
            correlation_id=correlation_id,
        )
    if batch.execution_arn:
        try:
            sfn.stop_execution(executionArn=batch.execution_arn, cause="cancelled by the user")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise DependencyError("stopping the batch tracker failed") from e
    for image in repository.images_in_batch(principal.clinic_id, batch_id):
        if image.status == ImageStatus.PENDING_UPLOAD:
            expire_pending_upload(
                image, CANCELLED_CODE, "the batch was cancelled", principal, s3, settings, correlation_id
            )
    return batch_view(principal, batch_id)


def expire_pending_upload(
    image: ImageModel,
    reason: str,
    message: str,
    principal: Principal,
    s3: S3Client,
    settings: ApiSettings,
    correlation_id: str | None,
    *,
    count_in_batch: str | None = None,
) -> bool:
    """A file that will not be accepted any more: reject its record and abort its parts."""
    if image.multipart_upload_id:
        try:
            s3.abort_multipart_upload(
                Bucket=settings.originals_bucket, Key=image.storage_key, UploadId=image.multipart_upload_id
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise DependencyError("aborting a multipart upload failed") from e
    audit = repository.caller_audit(
        principal,
        "UPLOAD_EXPIRED",
        ("image", image.image_id),
        correlation_id=correlation_id,
        details={"reason": reason},
    )
    return repository.transition_image(
        image,
        audit,
        expected=ImageModel.status == ImageStatus.PENDING_UPLOAD,
        count_in_batch=count_in_batch,
        status=ImageStatus.REJECTED,
        reject_code=reason,
        reject_message=message,
        updated_by=principal.user_id,
    )
