"""What happens to an original after it lands: receive it, then its kind's processing.

Each step is conditional on the record's state, so any delivery can be repeated: a file is
received once, finished once, and counted in its batch once. A rejected file keeps its
original (and a copy under the quarantine prefix) and gets a specific reason code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging import events as domain_events
from orca_imaging import photos, repository
from orca_imaging.errors import DependencyError, FileRejectedError
from orca_imaging.intake import ACTOR, ObjectCreated, Received, StoredObject, receive_original
from orca_imaging.keys import quarantine_key
from orca_imaging.models import ImageModel, ImageStatus
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

    from orca_imaging.settings import ConsumerSettings

# What a kind's processing returns: the record fields it sets on success.
Processor = Callable[[StoredObject], dict[str, Any]]


def _process_photo(stored: StoredObject) -> dict[str, Any]:
    if stored.body is None:
        raise FileRejectedError("too_large", "the photo is larger than the pipeline accepts")
    info = photos.decode_photo(stored.body)
    return {"width": info.width, "height": info.height, "color_space": info.mode}


PROCESSORS: dict[str, Processor] = {
    kind: _process_photo for kind in ("jpeg", "png", "tiff", "webp", "heic", "avif", "jp2", "j2c")
}
# Kinds recognised whose processing arrives with later work (DICOM ingest, 3D scans):
# they stay PROCESSING, received and counted as neither success nor failure yet.
AWAITING_PROCESSOR = {"dicom", "stl", "ply", "obj", "video", "pdf"}


def process_original(
    created: ObjectCreated,
    *,
    s3: S3Client,
    events: EventBridgeClient,
    settings: ConsumerSettings,
    message_id: str | None = None,
) -> Received:
    logger.set_correlation_id(message_id)
    received = receive_original(created, s3=s3, correlation_id=message_id)
    image = received.image
    logger.append_keys(clinic_id=image.clinic_id, image_id=image.image_id)
    if received.already_received or received.stored is None or received.sniffed is None:
        metrics.add_metric(name="DuplicateDeliveries", unit="Count", value=1)
        logger.info("nothing to do for this delivery", extra={"status": image.status})
        return received
    metrics.add_metric(name="OriginalsReceived", unit="Count", value=1)
    kind = received.sniffed.kind
    try:
        if image.declared_sha256 and image.declared_sha256 != received.stored.sha256:
            raise FileRejectedError(
                "checksum_mismatch", "the uploaded bytes do not match the sha256 declared with the upload"
            )
        processor = PROCESSORS.get(kind)
        if processor is None:
            if kind in AWAITING_PROCESSOR:
                logger.info("received; this kind's processing is not available yet", extra={"kind": kind})
                return received
            raise FileRejectedError("unsupported_format", "the file is not a format the system accepts")
        changes = processor(received.stored)
    except FileRejectedError as rejection:
        _reject(image, rejection, s3=s3, events=events, settings=settings)
        return received
    _finish(image, ImageStatus.ACTIVE, "IMAGE_PROCESSED", "succeeded", changes)
    metrics.add_metric(name="ImagesProcessed", unit="Count", value=1)
    _publish(events, settings, "ImageProcessed", image, {"status": image.status, "fileType": image.file_type})
    return received


def _finish(image: ImageModel, status: ImageStatus, action: str, count: str, changes: dict[str, Any]) -> bool:
    audit = repository.audit_event(
        clinic_id=image.clinic_id,
        action=action,
        actor=ACTOR,
        subject_type="image",
        subject_id=image.image_id,
        correlation_id=logger.get_correlation_id(),
        details={"code": changes.get("reject_code")} if changes.get("reject_code") else None,
    )
    done = repository.transition_image(
        image,
        audit,
        expected=ImageModel.status == ImageStatus.PROCESSING,
        count_in_batch=count,
        status=status,
        **changes,
    )
    if not done:
        logger.info("another delivery finished this file first")
    return done


def _reject(
    image: ImageModel,
    rejection: FileRejectedError,
    *,
    s3: S3Client,
    events: EventBridgeClient,
    settings: ConsumerSettings,
) -> None:
    _quarantine(s3, settings, image)
    changes = {"reject_code": rejection.reason, "reject_message": rejection.message}
    if _finish(image, ImageStatus.REJECTED, "IMAGE_REJECTED", "failed", changes):
        metrics.add_metric(name="ImagesRejected", unit="Count", value=1)
        logger.warning("file rejected", extra={"reason": rejection.reason})
        _publish(events, settings, "ImageRejected", image, {"code": rejection.reason})


def _quarantine(s3: S3Client, settings: ConsumerSettings, image: ImageModel) -> None:
    """Keep a copy of the rejected original where operators look (the original stays too)."""
    source: CopySourceTypeDef = {"Bucket": settings.originals_bucket, "Key": image.storage_key}
    if image.object_version:
        source["VersionId"] = image.object_version
    try:
        s3.copy_object(
            Bucket=settings.originals_bucket,
            Key=quarantine_key(image.clinic_id, image.image_id),
            CopySource=source,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=settings.kms_key_id,
        )
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("copying a rejected original to quarantine failed") from e


def _publish(
    events: EventBridgeClient,
    settings: ConsumerSettings,
    detail_type: str,
    image: ImageModel,
    extra: dict[str, Any],
) -> None:
    detail = {"clinicId": image.clinic_id, "imageId": image.image_id, "batchId": image.batch_id, **extra}
    domain_events.publish(events, settings.event_bus_name, detail_type, detail)
