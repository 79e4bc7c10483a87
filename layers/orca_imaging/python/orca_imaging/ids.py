"""Opaque, time-ordered ids. They carry no PHI and sort by creation time."""

from __future__ import annotations

from ulid import ULID

# What the API accepts as an id (ours, or a patient id from the practice-management system).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# A DICOM UID (PS3.5 9.1): dot-separated numbers.
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"


def new_id(prefix: str) -> str:
    """`img_01JD...`: a readable type prefix plus a ULID (lower case, S3-key safe)."""
    return f"{prefix}_{str(ULID()).lower()}"


def new_image_id() -> str:
    return new_id("img")


def new_event_id() -> str:
    return new_id("evt")
