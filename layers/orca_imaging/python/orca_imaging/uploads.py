"""Upload targets: a PENDING_UPLOAD record plus a presigned POST for the browser.

The server chooses the key (ids only) and pins every condition S3 can enforce: the exact
key, the exact size, the content type, SSE-KMS with our key and metadata naming the
uploader. No file byte passes through Lambda.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from orca_imaging import repository
from orca_imaging.bodies import RequestBody, ResponseBody
from orca_imaging.errors import DependencyError, FileRejectedError, PayloadTooLargeError
from orca_imaging.ids import ID_PATTERN, new_image_id
from orca_imaging.keys import original_key
from orca_imaging.limits import PHOTO_CONTENT_PREFIX, PhotoLimits
from orca_imaging.models import FileType, ImageModel, ImageStatus, UploadSource, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from orca_imaging.auth import Principal
    from orca_imaging.settings import ApiSettings

_SHA256_HEX = r"^[0-9a-f]{64}$"
_MIME = r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$"


class UploadFile(RequestBody):
    """One file the client is about to upload."""

    file_name: str = Field(alias="fileName", min_length=1, max_length=255)
    size: int = Field(gt=0, description="Exact size in bytes; S3 refuses any other")
    content_type: str = Field(alias="contentType", pattern=_MIME, max_length=127)
    sha256: str | None = Field(default=None, pattern=_SHA256_HEX)
    patient_id: str | None = Field(default=None, alias="patientId", pattern=ID_PATTERN)
    protocol_slot: str | None = Field(default=None, alias="protocolSlot", max_length=64)


class UploadRequest(UploadFile):
    """`POST /upload`: one file, for a named patient."""

    patient_id: str = Field(alias="patientId", pattern=ID_PATTERN)
    source: UploadSource = UploadSource.MOBILE
    protocol_session_id: str | None = Field(default=None, alias="protocolSessionId", pattern=ID_PATTERN)


class PartUrl(ResponseBody):
    part_number: int = Field(alias="partNumber")
    url: str


class MultipartTarget(ResponseBody):
    """A multipart upload: PUT each part to its URL, then call complete with the ETags."""

    upload_id: str = Field(alias="uploadId")
    part_size: int = Field(alias="partSize")
    parts: list[PartUrl]


class UploadTarget(ResponseBody):
    """Where one file goes: a presigned POST (`url` + `fields`) or a multipart upload."""

    image_id: str = Field(alias="imageId")
    file_name: str = Field(alias="fileName")
    url: str | None = None
    fields: dict[str, str] | None = None
    multipart: MultipartTarget | None = None
    expires_at: str = Field(alias="expiresAt")
    max_bytes: int = Field(alias="maxBytes")
    # e.g. "duplicate_of:img_..." when the declared sha256 is already in the clinic.
    warnings: list[str] | None = None


@dataclass(frozen=True)
class UploadPolicy:
    max_bytes: int
    ttl_base_seconds: int
    min_bytes_per_second: int
    ttl_max_seconds: int
    multipart_threshold: int = 100 * 1024**2
    part_bytes: int = 16 * 1024**2

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> UploadPolicy:
        return cls(
            max_bytes=settings.max_upload_bytes,
            ttl_base_seconds=settings.upload_ttl_base_seconds,
            min_bytes_per_second=settings.upload_min_bytes_per_second,
            ttl_max_seconds=settings.upload_ttl_max_seconds,
            multipart_threshold=settings.multipart_threshold_bytes,
            part_bytes=settings.multipart_part_bytes,
        )

    def expiry_seconds(self, size: int) -> int:
        """Long enough for the slowest link we plan for, never unbounded."""
        return min(self.ttl_max_seconds, self.ttl_base_seconds + size // self.min_bytes_per_second)

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise PayloadTooLargeError(
                f"file is {size} bytes; the clinic allows at most {self.max_bytes}",
                details={"maxBytes": self.max_bytes},
            )

    def part_count(self, size: int) -> int:
        return -(-size // self.part_bytes)


def presigned_post(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    size: int,
    content_type: str,
    kms_key_id: str | None,
    metadata: dict[str, str],
    expires_in: int,
) -> dict[str, Any]:
    """A POST policy S3 enforces: exact key, exact size, type, SSE-KMS and metadata.

    `kms_key_id=None` leaves encryption to the bucket default; the service always names
    its key, so an upload can never land unencrypted or under another key.
    """
    encryption = (
        {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id}
        if kms_key_id
        else {}
    )
    fields: dict[str, str] = {
        "Content-Type": content_type,
        **encryption,
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


def new_pending_image(
    file: UploadFile,
    principal: Principal,
    *,
    expires_in: int,
    source: UploadSource,
    protocol_session_id: str | None = None,
    batch_id: str | None = None,
    patient_id: str | None = None,
) -> ImageModel:
    """The PENDING_UPLOAD record for one file the client is about to upload."""
    image_id = new_image_id()
    now = utcnow()
    return ImageModel(
        clinic_id=principal.clinic_id,
        image_id=image_id,
        patient_id=file.patient_id or patient_id,
        filename=file.file_name,
        file_type=FileType.DOCUMENT,  # until the consumer sniffs the bytes
        storage_key=original_key(principal.clinic_id, image_id),
        declared_size=file.size,
        declared_mime_type=file.content_type,
        declared_sha256=file.sha256,
        source=source,
        protocol_session_id=protocol_session_id,
        protocol_slot=file.protocol_slot,
        batch_id=batch_id,
        status=ImageStatus.PENDING_UPLOAD,
        upload_expires_at=now + timedelta(seconds=expires_in),
        captured_by=principal.user_id,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
    )


class UploadSigner:
    """Signs where each file may go: one presigned POST, or a multipart upload's part URLs."""

    def __init__(
        self, s3: S3Client, settings: ApiSettings, principal: Principal, correlation_id: str | None
    ) -> None:
        self.s3 = s3
        self.settings = settings
        self.policy = UploadPolicy.from_settings(settings)
        self.principal = principal
        self.correlation_id = correlation_id

    @cached_property
    def photo_limits(self) -> PhotoLimits:
        return PhotoLimits.for_clinic(repository.clinic_settings(self.principal.clinic_id))

    def check(self, file: UploadFile) -> list[str]:
        """Refuse a declared size over the limits (413); the warnings for one within them."""
        self.policy.check_size(file.size)
        if not file.content_type.startswith(PHOTO_CONTENT_PREFIX):
            return []
        try:
            return self.photo_limits.check_size(file.size)
        except FileRejectedError as e:
            raise PayloadTooLargeError(
                e.message, details={"maxBytes": self.photo_limits.hard_limit_bytes}
            ) from e

    def metadata(self, image: ImageModel) -> dict[str, str]:
        return {
            "uploader": self.principal.user_id,
            "batch": image.batch_id or "none",
            "image": image.image_id,
            # Carried to the consumer so one id follows the file from request to record.
            "correlation": self.correlation_id or "none",
        }

    def target(self, image: ImageModel) -> UploadTarget:
        """Sign the target for a new image; a multipart upload is started on S3 here."""
        size = int(image.declared_size or 0)
        expires_in = self.policy.expiry_seconds(size)
        common = {
            "image_id": image.image_id,
            "file_name": image.filename or "",
            "expires_at": image.upload_expires_at.isoformat() if image.upload_expires_at else "",
            "max_bytes": size,
        }
        if size > self.policy.multipart_threshold:
            return UploadTarget(**common, multipart=self.start_multipart(image, expires_in))
        post = presigned_post(
            self.s3,
            bucket=self.settings.originals_bucket,
            key=image.storage_key,
            size=size,
            content_type=image.declared_mime_type or "application/octet-stream",
            kms_key_id=self.settings.kms_key_id,
            metadata=self.metadata(image),
            expires_in=expires_in,
        )
        return UploadTarget(**common, url=post["url"], fields=post["fields"])

    def start_multipart(self, image: ImageModel, expires_in: int) -> MultipartTarget:
        try:
            upload = self.s3.create_multipart_upload(
                Bucket=self.settings.originals_bucket,
                Key=image.storage_key,
                ContentType=image.declared_mime_type or "application/octet-stream",
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.settings.kms_key_id,
                Metadata=self.metadata(image),
            )
        except (BotoCoreError, ClientError) as e:
            raise DependencyError("starting a multipart upload failed") from e
        image.multipart_upload_id = upload["UploadId"]
        parts = range(1, self.policy.part_count(int(image.declared_size or 0)) + 1)
        return MultipartTarget(
            upload_id=upload["UploadId"],
            part_size=self.policy.part_bytes,
            parts=self.part_urls(image, list(parts), expires_in),
        )

    def part_urls(self, image: ImageModel, part_numbers: list[int], expires_in: int) -> list[PartUrl]:
        return [
            PartUrl(
                part_number=n,
                url=self.s3.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.settings.originals_bucket,
                        "Key": image.storage_key,
                        "UploadId": image.multipart_upload_id,
                        "PartNumber": n,
                    },
                    ExpiresIn=expires_in,
                ),
            )
            for n in part_numbers
        ]


def create_upload_target(
    request: UploadRequest,
    principal: Principal,
    *,
    s3: S3Client,
    settings: ApiSettings,
    correlation_id: str | None,
) -> UploadTarget:
    """Record a PENDING_UPLOAD image and return where the client may send its bytes."""
    signer = UploadSigner(s3, settings, principal, correlation_id)
    cautions = signer.check(request)
    repository.get_patient(principal.clinic_id, request.patient_id)
    image = new_pending_image(
        request,
        principal,
        expires_in=signer.policy.expiry_seconds(request.size),
        source=request.source,
        protocol_session_id=request.protocol_session_id,
    )
    target = signer.target(image)
    audit = repository.caller_audit(
        principal,
        "UPLOAD_REQUESTED",
        ("image", image.image_id),
        correlation_id=correlation_id,
        details={
            "size": request.size,
            "source": str(request.source),
            "multipart": target.multipart is not None,
        },
    )
    repository.create_image(image, audit)
    return with_warnings(target, principal.clinic_id, request.sha256, cautions)


def with_warnings(
    target: UploadTarget, clinic_id: str, sha256: str | None, cautions: list[str]
) -> UploadTarget:
    """The target plus what the client should know before sending: size, and (the spec's
    rule 7) bytes the clinic already has."""
    existing = repository.first_with_sha256(clinic_id, sha256) if sha256 else None
    warnings = [*cautions, *([f"duplicate_of:{existing.image_id}"] if existing else [])]
    return target.model_copy(update={"warnings": warnings or None})
