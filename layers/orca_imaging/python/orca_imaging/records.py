"""Reading records back: the image as the API shows it, with short-lived view URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orca_imaging import repository
from orca_imaging.api import image_view
from orca_imaging.models import ImageModel, ImageStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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
        repository.record_audit(
            clinic_id=principal.clinic_id,
            action="VIEW_URLS_ISSUED",
            actor=principal.user_id,
            subject_type="image",
            subject_id=image_id,
            correlation_id=correlation_id,
            details={"variants": sorted(urls)},
        )
    view["urls"] = urls
    return view
