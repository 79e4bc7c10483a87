"""`orca-imaging inspect`: the pipeline's processing run locally on files, with no AWS.

Useful before a migration: it says, file by file, what the pipeline would accept or
reject and why, what it reads from each file, and what it would store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
