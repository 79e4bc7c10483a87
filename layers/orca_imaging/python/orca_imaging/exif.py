"""EXIF: the fields the record shows, the capture time, and the whole block as JSON.

Pure: takes a Pillow image, returns models. The full EXIF (GPS included) goes only into
the record's metadata, which lives in the KMS-encrypted table; variants carry none of it
and logs never see it.
"""

from __future__ import annotations

import math
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
    if seconds is None:
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
    color_space = {1: "sRGB", 0xFFFF: "Uncalibrated"}.get(int(sub.get(0xA001) or 0))
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
