"""What happens to an original after it lands: receive it, then hand it to its kind's path.

The photo, DICOM and 3D paths hang off `process_original`; each is idempotent because the
receive step is, and each later step is conditional on the record's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca_imaging import events as domain_events
from orca_imaging.intake import ObjectCreated, receive_original
from orca_imaging.models import ImageStatus
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client

    from orca_imaging.intake import Received
    from orca_imaging.settings import ConsumerSettings


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
    if received.already_received:
        metrics.add_metric(name="DuplicateDeliveries", unit="Count", value=1)
        logger.info("original already received", extra={"status": image.status})
        return received
    metrics.add_metric(name="OriginalsReceived", unit="Count", value=1)
    logger.info(
        "original received",
        extra={
            "status": image.status,
            "size": image.original_size,
            "kind": received.sniffed and received.sniffed.kind,
        },
    )
    if image.status == ImageStatus.REJECTED:
        metrics.add_metric(name="ImagesRejected", unit="Count", value=1)
        domain_events.publish(
            events,
            settings.event_bus_name,
            "ImageRejected",
            {"clinicId": image.clinic_id, "imageId": image.image_id, "code": image.reject_code},
        )
    return received
