"""Receiving an original: the first step every consumer takes for an S3 object.

It is idempotent on (bucket, key, versionId). The record's transition out of
PENDING_UPLOAD and its audit event are one conditional transaction, so a redelivered
or duplicated S3 event finds the transition done and changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging import repository
from orca_imaging.errors import ConflictError, DependencyError
from orca_imaging.keys import parse_original_key
from orca_imaging.limits import IN_MEMORY_MAX_BYTES
from orca_imaging.models import FileType, ImageModel, ImageStatus, utcnow
from orca_imaging.observability import logger
from orca_imaging.sniff import SNIFF_BYTES, Sniffed, sniff

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACTOR = "system:intake"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    version_id: str | None
    size: int | None


def object_created_events(message: dict[str, Any]) -> list[ObjectCreated]:
    """The S3 ObjectCreated records in one SQS message body (none for s3:TestEvent)."""
    records = message.get("Records") or []
    found = []
    for record in records:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        found.append(
            ObjectCreated(
                bucket=s3["bucket"]["name"],
                # S3 (and moto, for '/') URL-encodes keys in notifications.
                key=unquote_plus(s3["object"]["key"]),
                version_id=s3["object"].get("versionId"),
                size=s3["object"].get("size"),
            )
        )
    return found


# Objects up to IN_MEMORY_MAX_BYTES are kept in memory for the processing step (photos,
# single DICOM instances); larger ones (CBCT archives, big scans) are streamed again.


@dataclass(frozen=True)
class StoredObject:
    version_id: str | None
    size: int
    sha256: str
    head: bytes
    metadata: dict[str, str]
    body: bytes | None


def read_object(s3: S3Client, obj: ObjectCreated) -> StoredObject:
    """Stream one object version once: its digest, true size, first bytes and metadata."""
    kwargs: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        kwargs["VersionId"] = obj.version_id
    try:
        response = s3.get_object(**kwargs)
        digest = hashlib.sha256()
        body: bytearray | None = bytearray()
        head = bytearray()
        size = 0
        for chunk in response["Body"].iter_chunks(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            if body is not None and size <= IN_MEMORY_MAX_BYTES:
                body += chunk
            else:
                body = None
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("reading the original from S3 failed") from e
    return StoredObject(
        version_id=response.get("VersionId") or obj.version_id,
        size=size,
        sha256=digest.hexdigest(),
        head=bytes(head),
        metadata=dict(response.get("Metadata") or {}),
        body=bytes(body) if body is not None else None,
    )


@dataclass(frozen=True)
class Received:
    image: ImageModel
    stored: StoredObject | None
    sniffed: Sniffed | None
    # True when this delivery found nothing to do (finished already, or a later version).
    already_received: bool


def _already(image: ImageModel) -> Received:
    return Received(image=image, stored=None, sniffed=None, already_received=True)


def _new_record(ref_clinic: str, ref_image: str, key: str, stored: StoredObject) -> ImageModel:
    """A record for an original that arrived with no upload request (e.g. a DICOM push)."""
    return ImageModel(
        clinic_id=ref_clinic,
        image_id=ref_image,
        file_type=FileType.DOCUMENT,
        storage_key=key,
        source=stored.metadata.get("source"),
        status=ImageStatus.PENDING_UPLOAD,
        created_by=ACTOR,
    )


def upload_correlation_id(stored: StoredObject, fallback: str | None) -> str | None:
    """The correlation id of the API request that issued the upload target, if any."""
    value = stored.metadata.get("correlation")
    return value if value and value != "none" else fallback


def receive_original(obj: ObjectCreated, *, s3: S3Client, correlation_id: str | None) -> Received:
    """Move an image from PENDING_UPLOAD to PROCESSING with its true size, sha256 and type.

    A delivery that finds the image already PROCESSING for the same object version resumes
    (the previous attempt died before finishing); one that finds it finished, or finds a
    later version of the object, changes nothing.
    """
    ref = parse_original_key(obj.key)
    image = repository.find_image(ref.clinic_id, ref.image_id)
    if image is not None and not _may_process(image, obj.version_id):
        return _already(image)

    stored = read_object(s3, obj)
    sniffed = sniff(stored.head, stored.size)
    correlation_id = upload_correlation_id(stored, correlation_id)
    logger.set_correlation_id(correlation_id)
    if image is None:
        image = _new_record(ref.clinic_id, ref.image_id, obj.key, stored)
        try:
            repository.create_image(
                image,
                repository.system_audit(
                    ref.clinic_id, ref.image_id, "IMAGE_REGISTERED", ACTOR, correlation_id
                ),
            )
        except ConflictError:
            image = repository.get_image(ref.clinic_id, ref.image_id)

    if image.status == ImageStatus.PENDING_UPLOAD:
        details = {"size": stored.size, "sha256": stored.sha256, "kind": sniffed.kind}
        audit = repository.system_audit(
            ref.clinic_id, ref.image_id, "IMAGE_RECEIVED", ACTOR, correlation_id, details=details
        )
        moved = repository.transition_image(
            image,
            audit,
            expected=ImageModel.status == ImageStatus.PENDING_UPLOAD,
            status=ImageStatus.PROCESSING,
            object_version=stored.version_id,
            original_size=stored.size,
            sha256=stored.sha256,
            mime_type=sniffed.mime_type,
            file_type=sniffed.file_type,
            received_at=utcnow(),
        )
        if not moved:  # another delivery got there first
            image = repository.get_image(ref.clinic_id, ref.image_id)
            if not _may_process(image, stored.version_id):
                return _already(image)
    return Received(image=image, stored=stored, sniffed=sniffed, already_received=False)


def _may_process(image: ImageModel, version_id: str | None) -> bool:
    if image.status == ImageStatus.PENDING_UPLOAD:
        return True
    if image.status != ImageStatus.PROCESSING:
        return False
    if version_id and image.object_version and version_id != image.object_version:
        # The bucket is versioned: the first version stays the original; a second POST to
        # the same target within its lifetime never replaces it.
        logger.warning("ignoring a later version of a received original")
        return False
    return True
