"""EXIF: the fields the record shows, the capture time, and the whole block as JSON.

Pure: takes a Pillow image, returns models. The full EXIF (GPS included) goes only into
the record's metadata, which lives in the KMS-encrypted table; variants carry none of it
and logs never see it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from PIL import ExifTags, TiffImagePlugin

if TYPE_CHECKING:
    from PIL import Image

_IFD = ExifTags.IFD
_TAGS = ExifTags.TAGS
_GPS_TAGS = ExifTags.GPSTAGS
# Bytes values longer than this are summarised (MakerNote blobs run to tens of KB).
_MAX_BYTES = 64


@dataclass(frozen=True)
class ExifFields:
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    focal_length: float | None = None
    aperture: float | None = None
    shutter_speed: str | None = None
    iso: int | None = None
    orientation: int = 1
    color_space: str | None = None
    date_time_original: str | None = None
    offset_time_original: str | None = None
    full: dict[str, Any] = field(default_factory=dict)


# Cameras stop at 1/32000 s; anything far faster is a damaged value (and 1/x of the
# smallest floats overflows).
_FASTEST_SHUTTER_SECONDS = 1e-6


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _shutter(value: Any) -> str | None:
    seconds = _number(value)
    if seconds is None or seconds < _FASTEST_SHUTTER_SECONDS:
        return None
    if seconds >= 1:
        return f"{seconds:g}"
    return f"1/{round(1 / seconds)}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, TiffImagePlugin.IFDRational):
        return _number(value) if value.denominator else None
    if isinstance(value, bytes):
        if len(value) > _MAX_BYTES:
            return {"bytes": len(value)}
        return value.decode("ascii", "replace").replace("\x00", "")
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


def read_exif(image: Image.Image) -> ExifFields:
    """The EXIF of an opened image; damaged EXIF yields what can be read, never an error."""
    try:
        exif = image.getexif()
        main = dict(exif)
        sub = dict(exif.get_ifd(_IFD.Exif))
        gps = dict(exif.get_ifd(_IFD.GPSInfo))
    except Exception:  # a damaged EXIF block must not reject an image that decodes
        return ExifFields()
    full: dict[str, Any] = {}
    for tags in (main, sub):
        for tag, value in tags.items():
            if tag in (_IFD.Exif, _IFD.GPSInfo, _IFD.Interop):
                continue
            full[_TAGS.get(tag, f"0x{tag:04x}")] = _json_safe(value)
    if gps:
        full["GPSInfo"] = {_GPS_TAGS.get(tag, f"0x{tag:04x}"): _json_safe(v) for tag, v in gps.items()}
    orientation = main.get(0x0112)
    space = sub.get(0xA001)  # one SHORT, but a damaged block may hold anything there
    color_space = {1: "sRGB", 0xFFFF: "Uncalibrated"}.get(space) if isinstance(space, int) else None
    iso = sub.get(0x8827)
    if isinstance(iso, tuple | list):
        iso = iso[0] if iso else None
    return ExifFields(
        make=_text(main.get(0x010F)),
        model=_text(main.get(0x0110)),
        lens=_text(sub.get(0xA434)),
        focal_length=_number(sub.get(0x920A)),
        aperture=_number(sub.get(0x829D)),
        shutter_speed=_shutter(sub.get(0x829A)),
        iso=int(iso) if isinstance(iso, int | float) and iso > 0 else None,
        orientation=int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8 else 1,
        color_space=color_space,
        date_time_original=_text(sub.get(0x9003) or main.get(0x0132)),
        offset_time_original=_text(sub.get(0x9011) or sub.get(0x9010)),
        full=full,
    )


def _offset(text: str | None) -> timezone | None:
    if not text or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(delta if text[0] == "+" else -delta)


@dataclass(frozen=True)
class CaptureTime:
    at: datetime
    source: str  # "exif", "exif_local" (no offset: read as UTC), or "upload_time_fallback"


def capture_time(fields: ExifFields, uploaded_at: datetime) -> CaptureTime:
    """`DateTimeOriginal` plus its offset; the upload time when the date is blank or garbage.

    EXIF 2.32 section 4.6.6: DateTimeOriginal is "YYYY:MM:DD HH:MM:SS" in local time,
    OffsetTimeOriginal is "+HH:MM". Without an offset the time is read as UTC and the
    source says so.
    """
    text = fields.date_time_original
    if text:
        try:
            local = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            local = None
        if local is not None and local.year > 1900:
            offset = _offset(fields.offset_time_original)
            at = local.replace(tzinfo=offset or UTC).astimezone(UTC)
            # A photo cannot be taken after it is uploaded (a day's slack for clocks and
            # time zones): a later date is a wrong camera clock, not a capture time.
            if at <= uploaded_at + timedelta(days=1):
                return CaptureTime(at, "exif" if offset is not None else "exif_local")
    return CaptureTime(uploaded_at, "upload_time_fallback")


# ---------------------------------------------------------------- structural check
# Bytes per value of each TIFF field type (TIFF 6.0 section 2, EXIF 2.32 section 4.6.2).
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SUB_IFDS = {0x8769: "exif", 0x8825: "gps", 0xA005: "interop"}
_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0201, 0x0202


def exif_damage(raw: bytes | None) -> str | None:
    """What is structurally wrong with an EXIF block, or None when it is sound or absent.

    Readers (Pillow included) skip what they cannot parse, so a damaged block reads as
    fewer tags rather than an error. This walks the TIFF structure itself: the header,
    IFD0/IFD1 and the Exif, GPS and Interop IFDs, each entry's type, and that every value
    and the embedded thumbnail lie inside the block. MakerNotes are vendor formats and are
    not walked. The answer names a structure, never a value (values may be PHI).
    """
    if not raw:
        return None
    tiff = raw[6:] if raw.startswith(b"Exif\x00") else raw
    if len(tiff) < 8:
        return "header is cut short"
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return "header is not TIFF"
    pending = [("ifd0", struct.unpack(order + "I", tiff[4:8])[0])]
    seen: set[int] = set()
    while pending:
        name, offset = pending.pop()
        if offset in seen:
            return f"{name} points back into an earlier IFD"
        seen.add(offset)
        damage = _ifd_damage(tiff, order, name, offset, pending)
        if damage:
            return damage
    return None


def _ifd_damage(
    tiff: bytes, order: str, name: str, offset: int, pending: list[tuple[str, int]]
) -> str | None:
    """Check one IFD, queueing the IFDs it points to."""
    if offset < 8 or offset + 2 > len(tiff):
        return f"{name} lies outside the block"
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    end = offset + 2 + 12 * count
    if count == 0 or end + 4 > len(tiff):
        return f"{name} entries run past the block"
    thumbnail: dict[int, int] = {}
    for entry in range(offset + 2, end, 12):
        tag, kind, values = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        size = _TYPE_BYTES.get(kind)
        if size is None:
            return f"{name} has an entry of unknown type {kind}"
        (value,) = struct.unpack(order + "I", tiff[entry + 8 : entry + 12])
        if size * values > 4 and value + size * values > len(tiff):
            return f"{name} has a value outside the block"
        if tag in _SUB_IFDS and name in ("ifd0", "exif"):
            pending.append((_SUB_IFDS[tag], value))
        if tag in (_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH) and name == "ifd1":
            thumbnail[tag] = value
    if len(thumbnail) == 2 and sum(thumbnail.values()) > len(tiff):
        return "the embedded thumbnail lies outside the block"
    (following,) = struct.unpack(order + "I", tiff[end : end + 4])
    if name == "ifd0" and following:
        pending.append(("ifd1", following))
    return None
