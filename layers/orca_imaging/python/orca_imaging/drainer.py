"""Moves spooled DICOM objects to S3, and removes each from the spool only once S3 has it.

Each object goes to its image's original key (`clinic/{clinicId}/original/{imageId}`, ids
only) with who sent it and when as object metadata; the intake consumer registers and
ingests it like any other original. The write is conditional (`If-None-Match: *`): an
original is never replaced, and a retry after an unanswered success finds the object there
and counts it as done. When S3 fails, the drainer backs off (doubling, capped) and tries
again until S3 has the object: the spool fills, nothing is dropped.

Devices resend: after a failed association, or when someone pushes a study again. An object
whose exact bytes the clinic already has is "already stored": it leaves the spool with an
audit event on the image that holds it, and no second original or record is made.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging import repository
from orca_imaging.keys import original_key
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

    from orca_imaging.spool import Arrival, Spool

SOURCE = "dicom_scp"


def record_if_already_stored(arrival: Arrival, sha256: str) -> bool:
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


class Drainer:
    def __init__(
        self,
        spool: Spool,
        s3: S3Client,
        *,
        bucket: str,
        kms_key_id: str | None,
        already_stored: Callable[[Arrival, str], bool] | None = None,
        idle_seconds: float = 0.5,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self.spool = spool
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.already_stored = already_stored
        self.idle_seconds = idle_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicom-drainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def drain_once(self) -> int:
        """Send everything waiting; returns how many objects left the spool."""
        sent = 0
        for spooled in self.spool.waiting():
            if self._stop.is_set():
                break
            try:
                body = spooled.path.read_bytes()
                if not self._resent(spooled.arrival, body):
                    self._upload(spooled.arrival, body)
            except FileNotFoundError:  # another task's drainer sent it first
                continue
            self.spool.remove(spooled)
            sent += 1
        return sent

    def _run(self) -> None:
        backoff = self.idle_seconds
        while not self._stop.is_set():
            try:
                self.drain_once()
                backoff = self.idle_seconds
            except (BotoCoreError, ClientError):
                metrics.add_metric(name="DicomDrainFailures", unit="Count", value=1)
                logger.warning("S3 refused a spooled object; retrying", extra={"backoff_seconds": backoff})
                backoff = min(self.max_backoff_seconds, backoff * 2)
            except Exception:  # never let the drainer die: the spool is only safe if it runs
                logger.exception("drainer error; retrying")
                backoff = min(self.max_backoff_seconds, backoff * 2)
            self._stop.wait(backoff)

    def _resent(self, arrival: Arrival, body: bytes) -> bool:
        return self.already_stored is not None and self.already_stored(
            arrival, hashlib.sha256(body).hexdigest()
        )

    def _upload(self, arrival: Arrival, body: bytes) -> None:
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
        metrics.add_metric(name="DicomObjectsDrained", unit="Count", value=1)
        logger.info(
            "spooled object in S3", extra={"image_id": arrival.image_id, "clinic_id": arrival.clinic_id}
        )
