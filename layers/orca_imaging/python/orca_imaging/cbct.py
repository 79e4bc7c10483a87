"""CBCT series in the pipeline: note each slice on its series' volume record, and build the
volume once the series is complete (see `volumes` for the pure part).

The volume record is an image of its own (category CBCT, id derived from the series UID,
so every delivery finds the same one). Slices are appended to it atomically; a redelivered
slice is appended again and counted once. Building reads the slices one at a time from the
originals bucket and writes the plane previews as the volume's variants.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging import repository, volumes
from orca_imaging.errors import DependencyError, FileRejectedError
from orca_imaging.intake import ACTOR
from orca_imaging.models import FileType, ImageCategory, ImageModel, ImageStatus, utcnow
from orca_imaging.observability import item_keys, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client
    from pydicom.dataset import Dataset

    from orca_imaging.settings import ConsumerSettings

OPEN = "OPEN"


def volume_id(series_uid: str) -> str:
    return "vol_" + hashlib.sha256(series_uid.encode()).hexdigest()[:26]


def note_slice(
    clinic_id: str,
    image_id: str,
    dataset: Dataset,
    *,
    series_uid: str,
    study_uid: str | None,
    patient_id: str | None,
    captured_at: datetime | None,
) -> ImageModel:
    """Append this slice to its series' volume record (made on the first slice); return it."""
    volume = ImageModel(
        clinic_id=clinic_id,
        image_id=volume_id(series_uid),
        status=ImageStatus.PROCESSING,
        file_type=FileType.XRAY,
        category=ImageCategory.CBCT,
        modality="CT",
        modality_code="CBCT",
        mime_type="application/dicom",
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        captured_at=captured_at,
        created_by=ACTOR,
    )
    expected = dataset.get("ImagesInAcquisition")
    if isinstance(expected, int | float) and expected > 1:
        volume.expected_slices = int(expected)
    volume = repository.create_or_get_image(volume)
    placed = volumes.placement(dataset)
    entry = f"{image_id}|{'' if placed.position is None else placed.position}|{placed.instance or ''}"
    now = utcnow().isoformat()
    with repository.dynamodb("note a slice"):
        volume.update(
            actions=[
                ImageModel.volume_slices.set((ImageModel.volume_slices | []).append([entry])),
                ImageModel.series_open_key.set(OPEN),
                ImageModel.last_slice_at_key.set(now),
            ]
        )
    return volume


def slices_of(volume: ImageModel) -> dict[str, volumes.SlicePlacement]:
    found: dict[str, volumes.SlicePlacement] = {}
    for entry in volume.volume_slices or []:
        image_id, position, instance = entry.split("|")
        found[image_id] = volumes.SlicePlacement(
            float(position) if position else None, int(instance) if instance else None
        )
    return found


def is_complete_by_count(volume: ImageModel) -> bool:
    return bool(volume.expected_slices) and len(slices_of(volume)) >= int(volume.expected_slices or 0)


def build_series(volume: ImageModel, *, s3: S3Client, settings: ConsumerSettings, complete_by: str) -> None:
    """Read the slices in order, one at a time, and finish the volume record."""
    ordered = volumes.order(slices_of(volume))
    builder = volumes.PlaneBuilder(len(ordered.keys))
    first: Dataset | None = None
    window = None
    unreadable = 0
    for index, image_id in enumerate(ordered.keys):
        slice_image = repository.find_image(volume.clinic_id, image_id)
        if slice_image is None or not slice_image.storage_key:
            continue
        try:
            values, dataset = volumes.slice_values(_read(s3, settings, slice_image))
        except FileRejectedError as e:  # a gap in the planes, as for a slice that never came
            logger.warning("slice left out of its volume", extra={"slice_id": image_id, "reason": e.reason})
            metrics.add_metric(name="VolumeSlicesUnreadable", unit="Count", value=1)
            unreadable += 1
            continue
        if first is None:
            first, window = dataset, volumes.window_of(dataset)
        builder.add(index, values)
    if first is None:
        raise FileRejectedError("invalid_dicom", "none of the series' slices could be read")
    _finish(
        volume,
        builder,
        ordered,
        first,
        window,
        s3=s3,
        settings=settings,
        complete_by=complete_by,
        unreadable=unreadable,
    )


def build_enhanced(data: bytes, dataset: Dataset) -> tuple[dict[str, Any], list[Any]]:
    """An enhanced multi-frame CT: the object is the volume. Returns its record fields and
    the plane variants."""
    frames = {
        str(i): volumes.placement(dataset, frame=i) for i in range(int(dataset.get("NumberOfFrames") or 1))
    }
    ordered = volumes.order(frames)
    rank = {int(key): n for n, key in enumerate(ordered.keys)}
    builder = volumes.PlaneBuilder(len(ordered.keys))
    for index, values in volumes.enhanced_frames(data):
        if index in rank:  # stored order is the object's; the planes want spatial order
            builder.add(rank[index], values)
    pictures = builder.pictures(volumes.window_of(dataset))
    return (
        {"volume": volumes.summary(builder, ordered, dataset, complete_by="single_object")},
        volumes.plane_variants(pictures),
    )


def _read(s3: S3Client, settings: ConsumerSettings, image: ImageModel) -> bytes:
    kwargs: dict[str, Any] = {"Bucket": settings.originals_bucket, "Key": image.storage_key}
    if image.object_version:
        kwargs["VersionId"] = image.object_version
    try:
        return s3.get_object(**kwargs)["Body"].read()
    except (BotoCoreError, ClientError) as e:
        raise DependencyError("reading a CBCT slice failed") from e


def _finish(
    volume: ImageModel,
    builder: volumes.PlaneBuilder,
    ordered: volumes.Order,
    first: Dataset,
    window: tuple[float, float] | None,
    *,
    s3: S3Client,
    settings: ConsumerSettings,
    complete_by: str,
    unreadable: int,
) -> None:
    """The volume record finished: planes stored, the summary and the slices' warnings
    written."""
    from orca_imaging.pipeline import store_variants  # the pipeline imports this module

    keys = store_variants(s3, settings, volume, volumes.plane_variants(builder.pictures(window)))
    summary = volumes.summary(builder, ordered, first, complete_by=complete_by)
    current = repository.get_image(volume.clinic_id, volume.image_id)
    audit = repository.system_audit(
        current.clinic_id, current.image_id, "VOLUME_BUILT", ACTOR, logger.get_correlation_id()
    )
    repository.transition_image(
        current,
        audit,
        status=ImageStatus.ACTIVE if current.patient_id else ImageStatus.PENDING_MATCH,
        volume=summary,
        width=summary["dimensions"]["columns"],
        height=summary["dimensions"]["rows"],
        variant_keys=keys,
        thumbnail_key=keys["thumb"],
        preview_key=keys["preview"],
        warnings=_slice_warnings(ordered, unreadable),
        series_open_key=None,
        last_slice_at_key=None,
    )
    metrics.add_metric(name="VolumesBuilt", unit="Count", value=1)
    logger.info("volume built", extra={"volume_id": volume.image_id, "slices": builder.count})


def _slice_warnings(ordered: volumes.Order, unreadable: int) -> list[str] | None:
    """How the slices fell short, counted: missing, sent twice, or kept but not decodable."""
    counts = {
        "slices_missing": ordered.gaps,
        "slices_duplicated": ordered.duplicates,
        "slices_unreadable": unreadable,
    }
    return [f"{name}:{count}" for name, count in counts.items() if count] or None


def sweep(
    *,
    s3: S3Client,
    settings: ConsumerSettings,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Build every open series that has had no new slice for the quiet period."""
    quiet_since = (now() - timedelta(seconds=settings.series_stable_seconds)).isoformat()
    built = 0
    for volume in repository.quiet_open_series(OPEN, quiet_since):
        with item_keys(clinic_id=volume.clinic_id, image_id=volume.image_id):
            try:
                build_series(volume, s3=s3, settings=settings, complete_by="quiet_period")
                built += 1
            except FileRejectedError as e:
                logger.warning("volume could not be built", extra={"reason": e.reason})
                metrics.add_metric(name="VolumesFailed", unit="Count", value=1)
                repository.close_series(volume)
            except Exception:  # noqa: BLE001  # left open for the next sweep; the volumes after it go on
                # Its type and traceback; its message only if it cannot quote a value (a DICOM
                # library's may, and values are PHI: see `observability.PhiSafeFormatter`).
                logger.exception("volume build failed; retried at the next sweep")
                metrics.add_metric(name="VolumeBuildErrors", unit="Count", value=1)
    return built
