"""What happens to an original after it lands: receive it, then its kind's processing.

Each step is conditional on the record's state, so any delivery can be repeated: a file is
received once, finished once, and counted in its batch once. A rejected file keeps its
original (and a copy under the quarantine prefix) and gets a specific reason code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging import candidates, cbct, dicom, photos, repository, worklist_scp
from orca_imaging import events as domain_events
from orca_imaging.errors import DependencyError, FileRejectedError
from orca_imaging.fingerprint import NEAR_DUPLICATE_BITS, distance
from orca_imaging.intake import ACTOR, ObjectCreated, Received, StoredObject, receive_original
from orca_imaging.keys import ABANDONED_TAG, derived_key, original_key, quarantine_key
from orca_imaging.limits import PhotoLimits
from orca_imaging.models import ExifSummary, FileType, ImageCategory, ImageModel, ImageStatus
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

    from orca_imaging.settings import ConsumerSettings
    from orca_imaging.variants import Variant

# A kind's processing: the record fields it sets on success (or FileRejectedError).
Processor = Callable[[ImageModel, StoredObject, "S3Client", "ConsumerSettings"], dict[str, Any]]

# Uploads the service stopped waiting for; bytes that still arrive are left to expire.
EXPIRED_UPLOADS = {"upload_cancelled", "upload_timeout", "upload_aborted"}

# Variants are immutable once written (a new original gets a new image id).
VARIANT_CACHE_CONTROL = "private, max-age=31536000, immutable"


def _process_photo(
    image: ImageModel, stored: StoredObject, s3: S3Client, settings: ConsumerSettings
) -> dict[str, Any]:
    limits = PhotoLimits.for_clinic(repository.clinic_settings(image.clinic_id))
    if stored.body is None:  # over what a consumer holds in memory, so over any hard limit
        limits.check_size(stored.size)
        raise FileRejectedError("too_large", "the photo is larger than the pipeline accepts")
    photo = photos.process_photo(stored.body, image.received_at or image.created_at, limits=limits)
    keys = store_variants(s3, settings, image, photo.variants)
    fields = photo.exif
    near = _nearest_photo(image, photo.fingerprint)
    warnings = [
        *(image.warnings or []),
        *photo.warnings,
        *([f"possible_duplicate_of:{near}"] if near else []),
    ]
    return {
        "perceptual_hash": photo.fingerprint,
        "possible_duplicate_of": near,
        "warnings": warnings or None,
        "file_type": FileType.PHOTO,
        "width": photo.width,
        "height": photo.height,
        "color_space": photo.color_space,
        "bit_depth": photo.bit_depth,
        "captured_at": photo.captured.at,
        "captured_at_source": photo.captured.source,
        "device_name": " ".join(v for v in (fields.make, fields.model) if v) or None,
        "exif": ExifSummary(
            make=fields.make,
            model=fields.model,
            lens=fields.lens,
            focal_length=fields.focal_length,
            aperture=fields.aperture,
            shutter_speed=fields.shutter_speed,
            iso=fields.iso,
            orientation=fields.orientation,
        ),
        "metadata": fields.full or None,
        "variant_keys": keys,
        "thumbnail_key": keys["thumb"],
        "preview_key": keys["preview"],
        "quality_score": photo.quality.score,
        "quality_notes": photo.quality.notes or None,
        "needs_retake": photo.quality.score < settings.retake_threshold,
    }


def _nearest_photo(image: ImageModel, fingerprint: str | None) -> str | None:
    """The patient's closest earlier photo within the near-duplicate distance, if any."""
    if not fingerprint or not image.patient_id:
        return None
    candidates = repository.patient_fingerprints(image.clinic_id, image.patient_id)
    scored = sorted(
        (distance(fingerprint, other), other_id)
        for other_id, other in candidates.items()
        if other_id != image.image_id
    )
    return scored[0][1] if scored and scored[0][0] <= NEAR_DUPLICATE_BITS else None


def store_variants(
    s3: S3Client, settings: ConsumerSettings, image: ImageModel, variants: list[Variant]
) -> dict[str, str]:
    """Write each variant to the derived bucket; their keys by name ("thumb", "preview"...)."""
    keys = {}
    for variant in variants:
        key = derived_key(image.clinic_id, image.image_id, variant.name)
        _put_derived(s3, settings, key, variant.data, variant.content_type)
        keys[variant.name.removesuffix(".jpg")] = key
    return keys


def _put_derived(s3: S3Client, settings: ConsumerSettings, key: str, data: bytes, content_type: str) -> None:
    try:
        s3.put_object(
            Bucket=settings.derived_bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=VARIANT_CACHE_CONTROL,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=settings.kms_key_id,
        )
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("writing a variant failed") from e


def _process_dicom(
    image: ImageModel, stored: StoredObject, s3: S3Client, settings: ConsumerSettings
) -> dict[str, Any]:
    if stored.body is None:
        raise FileRejectedError("too_large", "the object is larger than the pipeline accepts")
    dataset = dicom.read_dicom(stored.body)
    summary = dicom.describe(dataset)
    clinic = repository.clinic_settings(image.clinic_id)
    rules = tuple(dicom.CategoryRule.from_json(r) for r in clinic.dicom_category_rules or [])
    category, code = dicom.categorise(dataset, rules + dicom.CATEGORY_RULES)
    uids, geometry = summary["uids"], summary["geometry"]
    volume_fields: dict[str, Any] = {}
    variants: list[Variant] = []
    preview_unavailable: str | None = None
    if category == ImageCategory.CBCT and (geometry.get("frames") or 1) > 1:
        # An enhanced (multi-frame) CT is a whole volume in one object.
        try:
            volume_fields, variants = cbct.build_enhanced(stored.body, dataset)
        except FileRejectedError as e:  # frames that cannot be decoded: kept, without planes
            preview_unavailable = e.message
    else:
        preview = dicom.render_preview(stored.body, dataset)
        variants, preview_unavailable = preview.variants, preview.unavailable
    keys = store_variants(s3, settings, image, variants)
    warnings = list(image.warnings or [])
    for other in repository.images_with_sop_instance(
        image.clinic_id, uids["instance"], excluding=image.image_id
    ):
        # Same UID, other bytes (same bytes were found a duplicate before this): keep both,
        # flag both, tell someone. Never overwrite, never delete.
        warnings.append(f"sop_conflict:{other.image_id}")
        repository.add_warning(other, f"sop_conflict:{image.image_id}")
        metrics.add_metric(name="DicomConflicts", unit="Count", value=1)
    patient = dicom.patient_of(dataset)
    captured = dicom.capture_time(dataset)
    patient_id, match_candidates = _link_patient(
        image,
        patient,
        uids.get("study"),
        accession=str(dataset.get("AccessionNumber") or "").strip() or None,
        captured=captured,
        auto_link=clinic.dicom_auto_link or "exact",
    )
    if category == ImageCategory.CBCT and not volume_fields and uids.get("series"):
        # One slice of a series: its volume is built once the series is complete.
        volume = cbct.note_slice(
            image.clinic_id,
            image.image_id,
            dataset,
            series_uid=uids["series"],
            study_uid=uids.get("study"),
            patient_id=patient_id,
            captured_at=captured,
        )
        volume_fields = {"volume_id": volume.image_id}
        if cbct.is_complete_by_count(volume):
            cbct.build_series(volume, s3=s3, settings=settings, complete_by="expected_count")
    return volume_fields | {
        "file_type": FileType.XRAY,
        "patient_id": patient_id,
        "match_candidates": match_candidates,
        "category": category,
        "modality": summary["acquisition"].get("modality"),
        "modality_code": code,
        "study_uid": uids.get("study"),
        "series_uid": uids.get("series"),
        "instance_uid": uids["instance"],
        "width": geometry.get("columns"),
        "height": geometry.get("rows"),
        "bit_depth": geometry.get("bitsStored"),
        "captured_at": captured or image.received_at or image.created_at,
        "captured_at_source": "dicom" if captured else "upload_time_fallback",
        "device_name": " ".join(
            v for v in (summary["equipment"].get("manufacturer"), summary["equipment"].get("model")) if v
        )
        or None,
        "dicom_summary": summary
        | {
            "patient": {
                "name": patient.name,
                "id": patient.patient_id,
                "birthDate": patient.birth_date.isoformat() if patient.birth_date else None,
                "sex": patient.sex,
            }
        },
        "dicom_data": dicom.dicom_json(dataset),
        "radiation_dose": dicom.radiation_dose(dataset),
        "variant_keys": keys or None,
        "thumbnail_key": keys.get("thumb"),
        "preview_key": keys.get("preview"),
        "preview_unavailable": preview_unavailable,
        "warnings": warnings or None,
    }


def _link_patient(
    image: ImageModel,
    patient: dicom.DicomPatient,
    study_uid: str | None,
    *,
    accession: str | None,
    captured: datetime | None,
    auto_link: str,
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The patient to link, or None and the scored candidates a person chooses from.

    The uploader's choice stands; then a study a person already verified; then a worklist
    step's study or accession number, the step booked by staff for a patient (a device took
    the patient from the list); then, unless the clinic verifies everything by hand, the
    one registry patient whose chart number is the PatientID and whose birth date agrees.
    Anything less is never a guess.
    """
    if image.patient_id:
        return image.patient_id, None
    if study_uid and (verified := repository.verified_patient_of_study(image.clinic_id, study_uid)):
        return verified, None
    around = captured or datetime.now(UTC)
    booked = worklist_scp.booked_patient(
        image.clinic_id, study_uid=study_uid, accession=accession, around=around
    )
    if booked:
        return booked, None
    if auto_link == "exact" and patient.patient_id and patient.birth_date:
        charted = repository.patient_with_chart(image.clinic_id, patient.patient_id)
        if charted and charted.birth_date == patient.birth_date.isoformat():
            return charted.patient_id, None
    registry = repository.clinic_patients(image.clinic_id)  # only to propose candidates
    dicom_person = candidates.Person(
        family=(patient.name or {}).get("family"),
        given=(patient.name or {}).get("given"),
        birth_date=patient.birth_date,
        sex=patient.sex,
    )
    people = {
        p.patient_id: candidates.Person(p.family_name, p.given_name, _date(p.birth_date), p.sex)
        for p in registry
    }
    ranked = candidates.rank(dicom_person, people)
    return None, [{"patientId": c.patient_id, "score": c.score} for c in ranked]


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


PROCESSORS: dict[str, Processor] = {
    **{kind: _process_photo for kind in ("jpeg", "png", "tiff", "webp", "heic", "avif", "jp2", "j2c")},
    "dicom": _process_dicom,
}
# Kinds recognised whose processing arrives with later work (3D scans, video, documents):
# they stay PROCESSING, received and counted as neither success nor failure yet.
AWAITING_PROCESSOR = {"stl", "ply", "obj", "video", "pdf"}
DICOM_MIME = "application/dicom"


def process_original(
    created: ObjectCreated,
    *,
    s3: S3Client,
    events: EventBridgeClient,
    settings: ConsumerSettings,
    message_id: str | None = None,
    last_attempt: bool = False,
) -> Received:
    """Receive one original and process it. A failure other than a rejection is raised, so
    that SQS delivers the file again; on its `last_attempt` the file is rejected instead
    (`processing_failed`), with its original quarantined."""
    logger.set_correlation_id(message_id)
    received = receive_original(created, s3=s3, correlation_id=message_id)
    image = received.image
    logger.append_keys(clinic_id=image.clinic_id, image_id=image.image_id)
    if received.already_received or received.stored is None or received.sniffed is None:
        metrics.add_metric(name="DuplicateDeliveries", unit="Count", value=1)
        logger.info("nothing to do for this delivery", extra={"status": image.status})
        if image.reject_code in EXPIRED_UPLOADS:
            _tag_abandoned(s3, settings, image)  # arrived after its batch gave up on it
        return received
    metrics.add_metric(name="OriginalsReceived", unit="Count", value=1)
    kind = received.sniffed.kind
    try:
        if image.declared_sha256 and image.declared_sha256 != received.stored.sha256:
            raise FileRejectedError(
                "checksum_mismatch", "the uploaded bytes do not match the sha256 declared with the upload"
            )
        original = repository.first_with_sha256(
            image.clinic_id, received.stored.sha256, excluding=image.image_id
        )
        if original is not None:
            _finish_duplicate(image, original, s=s3, settings=settings, events=events)
            return received
        if image.declared_mime_type == DICOM_MIME and kind != "dicom":
            raise FileRejectedError("not_dicom", f"sent as DICOM, but the file is {kind}")
        processor = PROCESSORS.get(kind)
        if processor is None:
            if kind in AWAITING_PROCESSOR:
                logger.info("received; this kind's processing is not available yet", extra={"kind": kind})
                return received
            raise FileRejectedError("unsupported_format", "the file is not a format the system accepts")
        changes = processor(image, received.stored, s3, settings)
    except FileRejectedError as rejection:
        _reject(image, rejection, s3=s3, events=events, settings=settings)
        return received
    except Exception:
        if not last_attempt:
            raise
        # Dead-lettered, the file would stay PROCESSING for good and its batch never
        # complete: the clinic is told instead, and an operator alarmed (the metric).
        logger.exception("processing failed on the last attempt: the file is rejected")
        metrics.add_metric(name="ProcessingFailed", unit="Count", value=1)
        failed = FileRejectedError(
            "processing_failed",
            "the file could not be processed; its original is kept, and operators were alerted",
        )
        _reject(image, failed, s3=s3, events=events, settings=settings)
        return received
    status = _processed_status(changes.get("patient_id") or image.patient_id)
    if not _finish(image, status, "IMAGE_PROCESSED", "succeeded", changes):
        return received
    metrics.add_metric(name="ImagesProcessed", unit="Count", value=1)
    _publish(events, settings, "ImageProcessed", image, {"status": image.status, "fileType": image.file_type})
    conflicts = [w.split(":", 1)[1] for w in image.warnings or [] if w.startswith("sop_conflict:")]
    if conflicts:  # one SOP Instance UID, other bytes: both kept, someone must look
        _publish(events, settings, "DicomConflict", image, {"conflictsWith": conflicts})
    if image.needs_retake:
        metrics.add_metric(name="RetakesNeeded", unit="Count", value=1)
        retake = {"qualityScore": image.quality_score, "notes": list(image.quality_notes or [])}
        _publish(events, settings, "RetakeNeeded", image, retake)
    return received


def _processed_status(patient_id: str | None) -> ImageStatus:
    """Processed files with no patient wait for a person to match them; never a guess."""
    return ImageStatus.ACTIVE if patient_id else ImageStatus.PENDING_MATCH


def _finish_duplicate(
    image: ImageModel,
    original: ImageModel,
    *,
    s: S3Client,
    settings: ConsumerSettings,
    events: EventBridgeClient,
) -> None:
    """Same bytes as a file the clinic already has: point at it and keep no second copy.

    The record stays (it is what the user uploaded, with its own patient and slot) and
    warns; its storage is the first original's, and its own object is tagged so the
    bucket's lifecycle rule expires it. Nothing is deleted by the service.
    """
    changes: dict[str, Any] = {
        "duplicate_of": original.image_id,
        "warnings": [*(image.warnings or []), f"duplicate_of:{original.image_id}"],
        "storage_key": original.storage_key,
        "object_version": original.object_version,
        "file_type": original.file_type,
        "width": original.width,
        "height": original.height,
        "color_space": original.color_space,
        "bit_depth": original.bit_depth,
        "variant_keys": original.variant_keys,
        "thumbnail_key": original.thumbnail_key,
        "preview_key": original.preview_key,
        "captured_at": original.captured_at,
        "captured_at_source": original.captured_at_source,
        "exif": original.exif,
        "metadata": original.metadata,
        "quality_score": original.quality_score,
        "quality_notes": original.quality_notes,
        "needs_retake": original.needs_retake,
    }
    _tag_abandoned(s, settings, image)
    if _finish(image, _processed_status(image.patient_id), "IMAGE_DUPLICATE", "succeeded", changes):
        metrics.add_metric(name="DuplicatesFound", unit="Count", value=1)
        extra = {"status": image.status, "fileType": image.file_type, "duplicateOf": original.image_id}
        _publish(events, settings, "ImageProcessed", image, extra)


def _tag_abandoned(s3: S3Client, settings: ConsumerSettings, image: ImageModel) -> None:
    """Mark this image's own object for the lifecycle rule that expires abandoned uploads."""
    own_key = original_key(image.clinic_id, image.image_id)
    try:
        s3.put_object_tagging(
            Bucket=settings.originals_bucket,
            Key=own_key,
            Tagging={"TagSet": [{"Key": ABANDONED_TAG[0], "Value": ABANDONED_TAG[1]}]},
        )
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("tagging a duplicate original failed") from e


def _finish(image: ImageModel, status: ImageStatus, action: str, count: str, changes: dict[str, Any]) -> bool:
    code = changes.get("reject_code")
    audit = repository.system_audit(
        image.clinic_id,
        image.image_id,
        action,
        ACTOR,
        logger.get_correlation_id(),
        details={"code": code} if code else None,
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
