"""Upload targets: a PENDING_UPLOAD record plus a presigned POST for the browser.

The server chooses the key (ids only) and pins every condition S3 can enforce: the exact
key, the exact size, the content type, SSE-KMS with our key and metadata naming the
uploader. No file byte passes through Lambda.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from orca_imaging import repository
from orca_imaging.errors import PayloadTooLargeError
from orca_imaging.ids import new_image_id
from orca_imaging.keys import original_key
from orca_imaging.models import FileType, ImageModel, ImageStatus, UploadSource, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from orca_imaging.auth import Principal
    from orca_imaging.settings import ApiSettings

_SHA256_HEX = r"^[0-9a-f]{64}$"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_MIME = r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$"


class UploadRequest(BaseModel):
    """One file the client is about to upload."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    file_name: str = Field(alias="fileName", min_length=1, max_length=255)
    size: int = Field(gt=0, description="Exact size in bytes; S3 refuses any other")
    content_type: str = Field(alias="contentType", pattern=_MIME, max_length=127)
    patient_id: str = Field(alias="patientId", pattern=_ID)
    sha256: str | None = Field(default=None, pattern=_SHA256_HEX)
    source: UploadSource = UploadSource.MOBILE
    protocol_session_id: str | None = Field(default=None, alias="protocolSessionId", pattern=_ID)
    protocol_slot: str | None = Field(default=None, alias="protocolSlot", max_length=64)


class UploadTarget(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    image_id: str = Field(alias="imageId")
    url: str
    fields: dict[str, str]
    expires_at: str = Field(alias="expiresAt")
    max_bytes: int = Field(alias="maxBytes")


@dataclass(frozen=True)
class UploadPolicy:
    max_bytes: int
    ttl_base_seconds: int
    min_bytes_per_second: int
    ttl_max_seconds: int

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> UploadPolicy:
        return cls(
            max_bytes=settings.max_upload_bytes,
            ttl_base_seconds=settings.upload_ttl_base_seconds,
            min_bytes_per_second=settings.upload_min_bytes_per_second,
            ttl_max_seconds=settings.upload_ttl_max_seconds,
        )

    def expiry_seconds(self, size: int) -> int:
        """Long enough for the slowest link we plan for, never unbounded."""
        return min(self.ttl_max_seconds, self.ttl_base_seconds + size // self.min_bytes_per_second)


def presigned_post(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    size: int,
    content_type: str,
    kms_key_id: str,
    metadata: dict[str, str],
    expires_in: int,
) -> dict[str, Any]:
    """A POST policy S3 enforces: exact key, exact size, type, SSE-KMS and metadata."""
    fields: dict[str, str] = {
        "Content-Type": content_type,
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id,
        **{f"x-amz-meta-{name}": value for name, value in metadata.items()},
    }
    conditions: list[Any] = [
        {"bucket": bucket},
        ["eq", "$key", key],
        ["content-length-range", size, size],
        *({name: value} for name, value in fields.items()),
    ]
    return s3.generate_presigned_post(
        Bucket=bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
    )


def create_upload_target(
    request: UploadRequest,
    principal: Principal,
    *,
    s3: S3Client,
    settings: ApiSettings,
    correlation_id: str | None,
    batch_id: str | None = None,
) -> UploadTarget:
    """Record a PENDING_UPLOAD image and return where the browser may POST its bytes."""
    policy = UploadPolicy.from_settings(settings)
    if request.size > policy.max_bytes:
        raise PayloadTooLargeError(
            f"file is {request.size} bytes; the clinic allows at most {policy.max_bytes}",
            details={"maxBytes": policy.max_bytes},
        )
    image_id = new_image_id()
    key = original_key(principal.clinic_id, image_id)
    expires_in = policy.expiry_seconds(request.size)
    now = utcnow()
    image = ImageModel(
        clinic_id=principal.clinic_id,
        image_id=image_id,
        patient_id=request.patient_id,
        filename=request.file_name,
        file_type=FileType.DOCUMENT,  # until the consumer sniffs the bytes
        storage_key=key,
        declared_size=request.size,
        declared_mime_type=request.content_type,
        declared_sha256=request.sha256,
        source=request.source,
        protocol_session_id=request.protocol_session_id,
        protocol_slot=request.protocol_slot,
        batch_id=batch_id,
        status=ImageStatus.PENDING_UPLOAD,
        upload_expires_at=now + timedelta(seconds=expires_in),
        captured_by=principal.user_id,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
    )
    audit = repository.audit_event(
        clinic_id=principal.clinic_id,
        action="UPLOAD_REQUESTED",
        actor=principal.user_id,
        subject_type="image",
        subject_id=image_id,
        correlation_id=correlation_id,
        details={"size": request.size, "source": str(request.source), "batchId": batch_id},
        at=now,
    )
    repository.create_image(image, audit)
    post = presigned_post(
        s3,
        bucket=settings.originals_bucket,
        key=key,
        size=request.size,
        content_type=request.content_type,
        kms_key_id=settings.kms_key_id,
        metadata={
            "uploader": principal.user_id,
            "batch": batch_id or "none",
            "image": image_id,
            # Carried to the consumer so one id follows the file from request to record.
            "correlation": correlation_id or "none",
        },
        expires_in=expires_in,
    )
    return UploadTarget(
        image_id=image_id,
        url=post["url"],
        fields=post["fields"],
        expires_at=image.upload_expires_at.isoformat() if image.upload_expires_at else "",
        max_bytes=request.size,
    )
