"""S3 object keys. They are built from ids only, never a name, a filename or any PHI.

Originals and derived objects live in separate buckets so the originals bucket can notify
its intake queue on the `clinic/` prefix without hearing our own variants being written,
and so each bucket gets the retention its content needs (originals are never altered).
Quarantined originals stay in the originals bucket under a top-level prefix that the
intake notification does not match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orca_imaging.errors import InvalidObjectKeyError

INTAKE_PREFIX = "clinic/"
QUARANTINE_PREFIX = "quarantine/"
# Objects tagged so are expired by the originals bucket's lifecycle rule (a duplicate's
# bytes, uploads that arrive after their batch was cancelled).
ABANDONED_TAG = ("orca-abandoned", "true")

_ID = r"[a-z0-9][a-z0-9_-]{0,63}"
_CLINIC = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_ORIGINAL = re.compile(rf"^clinic/(?P<clinic>{_CLINIC})/original/(?P<image>{_ID})$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class OriginalRef:
    clinic_id: str
    image_id: str


def original_key(clinic_id: str, image_id: str) -> str:
    return f"clinic/{clinic_id}/original/{image_id}"


def derived_key(clinic_id: str, image_id: str, variant: str) -> str:
    if not _VARIANT.match(variant):
        raise ValueError(f"bad variant name {variant!r}")
    return f"clinic/{clinic_id}/derived/{image_id}/{variant}"


def quarantine_key(clinic_id: str, image_id: str) -> str:
    return f"{QUARANTINE_PREFIX}clinic/{clinic_id}/{image_id}"


def parse_original_key(key: str) -> OriginalRef:
    """The clinic and image an original's key names; anything else is not ours."""
    match = _ORIGINAL.match(key)
    if not match:
        raise InvalidObjectKeyError("object key is outside the originals layout")
    return OriginalRef(clinic_id=match["clinic"], image_id=match["image"])
