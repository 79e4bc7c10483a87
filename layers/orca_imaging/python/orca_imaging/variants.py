"""Variants of a photo: a 150 px thumbnail, an 800 px preview and a full-resolution web copy.

All are sRGB JPEGs with the EXIF orientation applied and no metadata (no EXIF, no GPS).
The original is never touched. The full-resolution copy avoids needless loss: a baseline
or progressive JPEG that needs no pixel change (upright, sRGB or untagged, RGB or grey)
keeps its compressed data as is, with only the metadata segments removed; anything else
is re-encoded once at high quality, in bands on every core (`jpeg_bands`). Small variants
decode JPEGs at reduced scale (DCT scaling, `Image.draft`), which is several times cheaper
than a full decode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageCms

from orca_imaging.containers import segments_to_scan
from orca_imaging.jpeg_bands import encode_in_bands, encoded

THUMBNAIL_PX = 150
PREVIEW_PX = 800
SMALL_QUALITY = 85
FULL_QUALITY = 92

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# JPEG markers kept when metadata is stripped: JFIF (APP0), ICC (APP2, only when sRGB),
# Adobe (APP14, which says how to read the colour channels). Everything else in APP1-APP15
# and COM is metadata: EXIF and its GPS, XMP, IPTC, maker notes, comments.
_KEEP_APP = {0xE0, 0xE2, 0xEE}


@dataclass(frozen=True)
class Variant:
    name: str  # the derived object's name: thumb.jpg, preview.jpg, full.jpg
    data: bytes
    width: int
    height: int
    lossless: bool = False
    content_type: str = "image/jpeg"


def _is_srgb(image: Image.Image) -> bool:
    icc = image.info.get("icc_profile")
    if not icc:
        return True  # untagged is taken as sRGB, as browsers do
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError):
        return False
    return "srgb" in description.lower()


def to_srgb(image: Image.Image) -> Image.Image:
    """RGB (or L) pixels in sRGB, converting CMYK and ICC-tagged images through their profile."""
    icc = image.info.get("icc_profile")
    if icc and image.mode != "L" and not _is_srgb(image):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            base = image if image.mode in ("RGB", "CMYK") else image.convert("RGB")
            converted = ImageCms.profileToProfile(base, source, _SRGB, outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unreadable profile: fall back to a plain conversion
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _stretched_grey(image)
    return image.convert("RGB")


def _stretched_grey(image: Image.Image) -> Image.Image:
    """8-bit grey from 16-bit, 32-bit or floating-point samples: their range, whatever it is
    (a float TIFF may hold 0-1 or 0-255, a 16-bit scan only part of 0-65535), stretched to
    0-255, as the eye would see it levelled."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    scale = 255 / (high - low) if high > low else 0.0
    return Image.fromarray(((values - low) * scale + 0.5).astype(np.uint8))


def _save(image: Image.Image, out: IO[bytes], quality: int, *, optimize: bool) -> None:
    # Pillow would carry the source's JPEG comment over (scanners write names there).
    if optimize:
        start = out.tell()
        try:
            image.save(out, "JPEG", quality=quality, optimize=True, comment=b"")
            return
        except OSError:
            # Pillow gives an optimised encode one byte a pixel of buffer, and fails ("broken
            # data stream") on a picture that takes more: noise, or a damaged file decoding
            # as noise. Standard tables need no such buffer.
            out.seek(start)
            out.truncate()
    image.save(out, "JPEG", quality=quality, comment=b"")


def _optimized(width: int, height: int) -> bool:
    """Huffman tables fitted to the picture: a few percent smaller, but a second pass, so
    only up to preview size."""
    return width * height <= PREVIEW_PX**2


def _encode(image: Image.Image, quality: int) -> bytes:
    return encoded(image, lambda image, out: _save(image, out, quality, optimize=_optimized(*image.size)))


def _scaled(image: Image.Image, name: str, size: int) -> tuple[Variant, Image.Image]:
    """The image with its long edge at most `size` (never enlarged): encoded, and its pixels."""
    scale = min(1.0, size / max(image.size))
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # A gap of 2.5 lets Pillow box-reduce a 12 MP frame by 2 before Lanczos, which halves the
    # time (about 150 -> 60 ms); the preview differs from an exact Lanczos by under 1/255 on
    # average (52 dB PSNR, measured on the corpus's iPhone HEIC).
    resized = to_srgb(
        image if target == image.size else image.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.5)
    )
    return Variant(name, _encode(resized, SMALL_QUALITY), resized.width, resized.height), resized


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """The JPEG with its metadata segments removed and its compressed data untouched.

    Keeps the segments before the first scan that are not metadata, then the scan data
    through EOI; bytes after EOI (appended data) are dropped. Returns None for a stream it
    cannot walk, or one with no EOI.
    """
    segments = segments_to_scan(data)
    if segments is None:
        return None
    scan = segments[-1][1]
    end = data.find(b"\xff\xd9", scan)
    if end < 0:
        return None
    kept = b"".join(
        data[start:stop]
        for marker, start, stop in segments[:-1]
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE) or marker in _KEEP_APP
    )
    return b"\xff\xd8" + kept + data[scan : end + 2]


def keeps_compressed_data(image: Image.Image, orientation: int) -> bool:
    """Whether the full-size copy can be the original JPEG's own compressed data: no
    pixel change is needed (upright, RGB or grey, sRGB or untagged)."""
    return image.format == "JPEG" and orientation == 1 and image.mode in ("RGB", "L") and _is_srgb(image)


# How each EXIF orientation is undone, and the quarter turns among them (their displayed
# width is their stored height).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
QUARTER_TURNS = {5, 6, 7, 8}


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation, 1 (upright) when it is missing, out of range or unreadable."""
    try:
        value = image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001  # damaged EXIF: taken as upright (photos flags it)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(stored: Image.Image, orientation: int) -> Image.Image:
    """The picture as displayed. Unlike `ImageOps.exif_transpose` it leaves the EXIF alone:
    that writes the block back with the orientation reset, and a damaged block cannot be
    written (variants carry no metadata anyway)."""
    return stored.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else stored


def upright_rows(stored: Image.Image, orientation: int, top: int, bottom: int) -> Image.Image:
    """Rows `top` to `bottom` of the picture as displayed, from its stored pixels: the part
    of the stored frame they come from (a band of rows, or of columns for a quarter turn),
    cut out and turned."""
    width, height = stored.size
    turned = orientation in QUARTER_TURNS
    extent = width if turned else height
    # Orientations 3, 4, 7 and 8 show the stored frame's far end first.
    start, end = (top, bottom) if orientation in (1, 2, 5, 6) else (extent - bottom, extent - top)
    part = stored.crop((start, 0, end, height) if turned else (0, start, width, end))
    return part.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else part


def full_resolution(stored: Image.Image, orientation: int = 1) -> Variant:
    """The full-size copy when pixels must change: turned upright, converted to sRGB and
    encoded once at high quality, band by band on every core (see `jpeg_bands`). The
    conversion is pixel by pixel for the modes that reach it (RGB, L, CMYK), so band by band
    is the same as all at once."""
    width, height = stored.size[::-1] if orientation in QUARTER_TURNS else stored.size
    data = encode_in_bands(
        lambda top, bottom: to_srgb(upright_rows(stored, orientation, top, bottom)),
        width,
        height,
        save=lambda band, out: _save(band, out, FULL_QUALITY, optimize=_optimized(width, height)),
    )
    return Variant("full.jpg", data, width, height)


def preview_size(size: tuple[int, int]) -> tuple[int, int]:
    """The preview's size for a picture of `size`, rounded up: what a reduced-scale JPEG
    decode (`Image.draft`) must keep at least. Asking for the preview's own shape rather
    than a square lets a 4240x2830 photo decode at 1/4 scale instead of 1/2."""
    long_edge = max(size)
    if long_edge <= PREVIEW_PX:
        return size
    width, height = (-(-side * PREVIEW_PX // long_edge) for side in size)  # in whole numbers: exact
    return width, height


def small_variants(upright: Image.Image) -> list[Variant]:
    """Thumbnail and preview from the upright pixels. RGB is resampled in its own colour
    space and converted to sRGB after: for an iPhone's Display P3 photo, 800 px convert in a
    sliver of the ~200 ms its 12 MP take. Other modes are converted first (see `to_srgb`)."""
    source = upright if upright.mode == "RGB" else to_srgb(upright)
    preview, preview_pixels = _scaled(source, "preview.jpg", PREVIEW_PX)
    thumb, _ = _scaled(preview_pixels, "thumb.jpg", THUMBNAIL_PX)  # 800 px hold all 150 px need
    return [thumb, preview]


def small_variants_of_jpeg(original: bytes) -> list[Variant]:
    """Thumbnail and preview of a large JPEG, from a decode of its own at reduced scale: far
    cheaper than resampling the full-size pixels down, and needing nothing from them."""
    image = Image.open(io.BytesIO(original))
    image.draft("RGB" if image.mode != "L" else "L", preview_size(image.size))
    return small_variants(upright(image, orientation_of(image)))
