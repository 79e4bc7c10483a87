"""`orca-imaging inspect`: the pipeline's processing run locally on files, with no AWS.

Useful before a migration: it says, file by file, what the pipeline would accept or
reject and why, what it reads from each file, and what it would store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orca_imaging import dicom
from orca_imaging.errors import FileRejectedError
from orca_imaging.limits import PhotoLimits
from orca_imaging.photos import process_photo
from orca_imaging.pipeline import AWAITING_PROCESSOR, PROCESSORS
from orca_imaging.sniff import SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given, folders walked in name order (hidden files skipped)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield path


def inspect_file(
    path: Path, *, now: datetime | None = None, limits: PhotoLimits | None = None
) -> dict[str, Any]:
    data = path.read_bytes()
    kind = sniff(data[:SNIFF_BYTES], len(data))
    report: dict[str, Any] = {
        "file": str(path),
        "size": len(data),
        "kind": kind.kind,
        "mimeType": kind.mime_type,
    }
    if kind.kind == "dicom":
        return report | _inspect_dicom(data)
    if kind.kind in AWAITING_PROCESSOR:
        return report | {
            "outcome": "accepted",
            "note": f"{kind.kind} is received; its processing is not in this version",
        }
    if kind.kind not in PROCESSORS:
        return report | {"outcome": "rejected", "reason": "unsupported_format"}
    try:
        photo = process_photo(data, now or datetime.now(UTC), limits=limits or PhotoLimits())
    except FileRejectedError as e:
        return report | {"outcome": "rejected", "reason": e.reason, "message": e.message}
    fields = photo.exif
    return report | {
        "outcome": "accepted",
        "width": photo.width,
        "height": photo.height,
        "capturedAt": photo.captured.at.isoformat(),
        "capturedAtSource": photo.captured.source,
        "exif": {
            "make": fields.make,
            "model": fields.model,
            "lens": fields.lens,
            "focalLength": fields.focal_length,
            "aperture": fields.aperture,
            "shutterSpeed": fields.shutter_speed,
            "iso": fields.iso,
            "orientation": fields.orientation,
        },
        "quality": {"score": photo.quality.score, "notes": photo.quality.notes},
        "warnings": photo.warnings,
        "variants": {
            v.name: {"bytes": len(v.data), "width": v.width, "height": v.height} for v in photo.variants
        },
    }


def _inspect_dicom(data: bytes) -> dict[str, Any]:
    """What the DICOM ingest would read: UIDs, modality, category, dose, patient, preview.

    The patient-match outcome needs the clinic's registry, so locally it says what the
    match would be keyed on: the PatientID and whether a birth date is there to confirm it.
    """
    try:
        dataset = dicom.read_dicom(data)
    except FileRejectedError as e:
        return {"outcome": "rejected", "reason": e.reason, "message": e.message}
    summary = dicom.describe(dataset)
    category, code = dicom.categorise(dataset)
    preview = dicom.render_preview(data, dataset)
    patient = dicom.patient_of(dataset)
    return {
        "outcome": "accepted",
        "uids": summary["uids"],
        "modality": summary["acquisition"].get("modality"),
        "category": str(category),
        "modalityCode": code,
        "transferSyntax": summary["transferSyntax"],
        "geometry": summary["geometry"],
        "radiationDose": dicom.radiation_dose(dataset),
        "patientMatch": {
            "on": "chart number = PatientID, birth date agreeing",
            "hasPatientId": patient.patient_id is not None,
            "hasBirthDate": patient.birth_date is not None,
        },
        "previews": {
            v.name: {"bytes": len(v.data), "width": v.width, "height": v.height} for v in preview.variants
        },
        "previewUnavailable": preview.unavailable,
    }
