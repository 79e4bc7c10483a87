"""Where DICOM objects received over the network are kept: the originals bucket, written
once. The DICOM service's drainer sends its spooled objects here, and a PACS retrieve by
C-GET sends each object here before acknowledging it.

Each object goes to its image's original key (`clinic/{clinicId}/original/{imageId}`, ids
only) with who sent it and when as object metadata; the intake consumer registers and
ingests it like any other original. The write is conditional (`If-None-Match: *`): an
original is never replaced, and a retry after an unanswered success finds the object there
and counts it as done.

Devices resend: after a failed association, or when someone pushes a study again. An object
whose exact bytes the clinic already has is "already stored": it gets an audit event on the
image that holds it, and no second original or record is made.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from orca_imaging import clients, repository
from orca_imaging.keys import original_key
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from orca_imaging.settings import StorageSettings
    from orca_imaging.spool import Arrival

SOURCE = "dicom_scp"


class ReceivedOriginals:
    def __init__(self, s3: S3Client, *, bucket: str, kms_key_id: str | None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id

    @classmethod
    def for_settings(cls, settings: StorageSettings) -> ReceivedOriginals:
        """The deployment's originals bucket and key."""
        return cls(clients.s3(), bucket=settings.originals_bucket, kms_key_id=settings.kms_key_id)

    def keep(self, arrival: Arrival, body: bytes) -> None:
        if not _already_stored(arrival, hashlib.sha256(body).hexdigest()):
            self._put(arrival, body)

    def _put(self, arrival: Arrival, body: bytes) -> None:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=original_key(arrival.clinic_id, arrival.image_id),
                Body=body,
                ContentType="application/dicom",
                IfNoneMatch="*",
                Metadata={
                    "source": SOURCE,
                    "calling-ae": arrival.calling_ae,
                    "source-address": arrival.source_address,
                    "received-at": arrival.received_at,
                },
                **extra,  # type: ignore[arg-type]
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
            # Already there: an earlier attempt succeeded but its answer was lost.
        metrics.add_metric(name="DicomObjectsStored", unit="Count", value=1)
        logger.info(
            "DICOM object in S3", extra={"image_id": arrival.image_id, "clinic_id": arrival.clinic_id}
        )


def _already_stored(arrival: Arrival, sha256: str) -> bool:
    """True (and audited on the image that holds them) when the clinic has these bytes."""
    image = repository.first_with_sha256(arrival.clinic_id, sha256)
    if image is None:
        return False
    details = {"callingAe": arrival.calling_ae, "receivedAt": arrival.received_at}
    repository.record_audit_event(
        repository.system_audit(
            arrival.clinic_id, image.image_id, "DICOM_ALREADY_STORED", SOURCE, None, details=details
        )
    )
    metrics.add_metric(name="DicomAlreadyStored", unit="Count", value=1)
    logger.info(
        "resent object already stored", extra={"image_id": image.image_id, "clinic_id": arrival.clinic_id}
    )
    return True
