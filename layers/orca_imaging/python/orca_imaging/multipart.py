"""Multipart uploads for large files: resume, re-sign, complete, abort.

A part URL may expire on a slow link; the client lists what S3 already has, asks for
fresh URLs for the rest and carries on. Completion checks the parts add up to exactly the
declared size before S3 assembles the object: S3 cannot enforce that for parts itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from orca_imaging import repository
from orca_imaging.batches import expire_pending_upload
from orca_imaging.bodies import RequestBody
from orca_imaging.errors import ConflictError, DependencyError, RequestValidationError
from orca_imaging.models import ImageModel, ImageStatus
from orca_imaging.uploads import PartUrl, UploadSigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from orca_imaging.auth import Principal
    from orca_imaging.settings import ApiSettings


class ResignRequest(RequestBody):
    part_numbers: list[int] = Field(alias="partNumbers", min_length=1, max_length=10000)


class CompletedPart(RequestBody):
    part_number: int = Field(alias="partNumber", ge=1, le=10000)
    etag: str = Field(alias="etag", min_length=1, max_length=128)


class CompleteRequest(RequestBody):
    parts: list[CompletedPart] = Field(min_length=1, max_length=10000)


def _pending_multipart(principal: Principal, image_id: str) -> ImageModel:
    image = repository.get_image(principal.clinic_id, image_id)
    if image.status != ImageStatus.PENDING_UPLOAD or not image.multipart_upload_id:
        raise ConflictError("this image has no multipart upload in progress")
    return image


def list_parts(principal: Principal, image_id: str, *, s3: S3Client, settings: ApiSettings) -> dict[str, Any]:
    image = _pending_multipart(principal, image_id)
    parts = _uploaded_parts(s3, settings, image)
    policy = UploadSigner(s3, settings, principal, None).policy
    expected = policy.part_count(int(image.declared_size or 0))
    return {
        "imageId": image_id,
        "uploadId": image.multipart_upload_id,
        "partSize": policy.part_bytes,
        "parts": parts,
        "missing": sorted(set(range(1, expected + 1)) - {p["partNumber"] for p in parts}),
    }


def resign_parts(
    principal: Principal, image_id: str, request: ResignRequest, *, s3: S3Client, settings: ApiSettings
) -> list[PartUrl]:
    image = _pending_multipart(principal, image_id)
    signer = UploadSigner(s3, settings, principal, None)
    count = signer.policy.part_count(int(image.declared_size or 0))
    if any(not 1 <= n <= count for n in request.part_numbers):
        raise RequestValidationError(f"part numbers run from 1 to {count} for this file")
    return signer.part_urls(
        image, sorted(set(request.part_numbers)), signer.policy.expiry_seconds(signer.policy.part_bytes)
    )


def complete(
    principal: Principal, image_id: str, request: CompleteRequest, *, s3: S3Client, settings: ApiSettings
) -> dict[str, Any]:
    image = _pending_multipart(principal, image_id)
    uploaded = {p["partNumber"]: p for p in _uploaded_parts(s3, settings, image)}
    named = sorted(request.parts, key=lambda p: p.part_number)
    if {p.part_number for p in named} != set(uploaded):
        raise RequestValidationError("the parts named are not the parts uploaded")
    total = sum(p["size"] for p in uploaded.values())
    if total != image.declared_size:
        raise RequestValidationError(
            f"the parts hold {total} bytes; the file was declared as {image.declared_size}"
        )
    try:
        s3.complete_multipart_upload(
            Bucket=settings.originals_bucket,
            Key=image.storage_key,
            UploadId=str(image.multipart_upload_id),
            MultipartUpload={"Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in named]},
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
            raise RequestValidationError("S3 refused the parts: check each part's ETag") from e
        raise DependencyError("completing the multipart upload failed") from e
    return {"imageId": image_id, "status": "UPLOADED", "size": total}


def abort(
    principal: Principal, image_id: str, *, s3: S3Client, settings: ApiSettings, correlation_id: str | None
) -> None:
    image = _pending_multipart(principal, image_id)
    expire_pending_upload(
        image,
        "upload_aborted",
        "the client aborted the upload",
        principal,
        s3,
        settings,
        correlation_id,
        count_in_batch="failed",
    )


def _uploaded_parts(s3: S3Client, settings: ApiSettings, image: ImageModel) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    marker = 0
    try:
        while True:
            page = s3.list_parts(
                Bucket=settings.originals_bucket,
                Key=image.storage_key,
                UploadId=str(image.multipart_upload_id),
                PartNumberMarker=marker,
            )
            parts += [
                {"partNumber": p["PartNumber"], "size": p["Size"], "etag": p["ETag"]}
                for p in page.get("Parts", [])
            ]
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("listing the uploaded parts failed") from e
