"""Photos: validation, metadata and variants, from bytes to a `ProcessedPhoto`.

A file is first held to the end its container states (see `containers`), then opened by
its bytes with Pillow (and pillow-heif for HEIC/HEIF) and decoded in full, so a file cut
short or corrupt is caught; then its EXIF is read and its variants made. Pure: no AWS here.
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError, _imaging

from orca_imaging.containers import cut_short
from orca_imaging.errors import FileRejectedError
from orca_imaging.exif import CaptureTime, ExifFields, capture_time, exif_damage, read_exif
from orca_imaging.fingerprint import dhash
from orca_imaging.limits import PhotoLimits
from orca_imaging.quality import Quality, assess
from orca_imaging.variants import (
    PREVIEW_PX,
    QUARTER_TURNS,
    Variant,
    full_resolution,
    keeps_compressed_data,
    orientation_of,
    preview_size,
    small_variants,
    small_variants_of_jpeg,
    strip_jpeg_metadata,
    to_srgb,
    upright,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

_Source = TypeVar("_Source")
_PILLOW_READY = False
# A decompression bomb guard: 200 MP is far above any dental or DSLR photo.
MAX_PIXELS = 200_000_000
# Pillow hands a freed frame's memory back to the system, so the next frame faults in every
# page again: about a sixth of a turned 24 MP JPEG's time here. A warm Lambda (or a CLI
# migration) processes photo after photo, so up to 32 of Pillow's 16 MB blocks are kept for
# reuse (its PILLOW_BLOCKS_MAX): at most 512 MB of the function's 1769 MB.
_PIXEL_BLOCKS_KEPT = 32
# Where a photo's small variants are made while its full size is decoded, turned, converted
# and encoded (see process_photo). One worker: a Lambda at 1769 MB has one vCPU, where the
# two threads merely take turns (measured: the README's photo benchmark).
_SECOND_CORE = ThreadPoolExecutor(1, thread_name_prefix="photo-small-variants")


def _prepare_pillow() -> None:
    """Once per process: HEIC/HEIF decoding, and freed pixel memory kept for the next photo."""
    global _PILLOW_READY
    if not _PILLOW_READY:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _imaging.set_blocks_max(_PIXEL_BLOCKS_KEPT)
        _PILLOW_READY = True


_BIT_DEPTH = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}


@dataclass(frozen=True)
class ProcessedPhoto:
    width: int  # as displayed: after the EXIF orientation
    height: int
    format: str
    mode: str
    bit_depth: int
    color_space: str
    exif: ExifFields
    captured: CaptureTime
    variants: list[Variant]
    quality: Quality
    fingerprint: str | None  # dHash of the upright preview; None for a frame with no detail
    warnings: list[str]  # what was accepted but is worth a look, e.g. "large_file"


def process_photo(
    data: bytes,
    uploaded_at: datetime,
    *,
    limits: PhotoLimits = PhotoLimits(),  # noqa: B008 (frozen, so one shared default is safe)
) -> ProcessedPhoto:
    """Validate, read EXIF and capture time, make the three variants and score quality."""
    cautions = limits.check_size(len(data))
    if cut_short(data):  # before decoding: decoders make a missing end up (see containers)
        raise FileRejectedError("truncated", "the end of the image is missing (the file was cut short)")
    image = _open(data)
    limits.check_dimensions(image.width, image.height)
    stored_size, orientation = image.size, orientation_of(image)
    stripped = strip_jpeg_metadata(data) if keeps_compressed_data(image, orientation) else None
    large_jpeg = image.format == "JPEG" and max(image.size) > 2 * PREVIEW_PX
    pixels = image.width * image.height
    small_ahead: Future[_Small] | None = None
    if large_jpeg and stripped is not None:
        # The full-size copy needs no pixels, so decode at reduced scale (DCT scaling):
        # every entropy-coded byte is still decoded, so corruption is caught as in a full
        # decode (a cut, before it: see containers), for a fraction of the time and memory.
        image.draft(image.mode, preview_size(image.size))
    elif large_jpeg:
        # Its pixels must change (turned, or not sRGB). The small variants need nothing
        # from the full size: a reduced-scale decode of their own makes them on a second
        # core while this one decodes, turns and encodes it (Pillow lets go of the GIL
        # while it decodes, turns and resamples).
        small_ahead = _SECOND_CORE.submit(_scored, small_variants_of_jpeg, data, pixels)
    _decode(image)
    if exif_damage(image.info.get("exif")):
        # The pixels are sound; the camera's metadata cannot all be trusted (capture time
        # included), so say so rather than lose a clinical photo over it.
        cautions.append("exif_damaged")
    fields = read_exif(image)
    source_format, mode, icc = image.format or "", image.mode, image.info.get("icc_profile")
    if stripped is not None:
        full = Variant("full.jpg", stripped, *stored_size, lossless=True)
        small = _scored(small_variants, image, pixels)
    elif small_ahead is not None:
        # The full size is turned band by band from the stored frame, never as a whole.
        full = full_resolution(image, orientation)
        image.close()
        with _undecodable_rejected():
            small = small_ahead.result()
    else:
        displayed = image
        if orientation != 1:
            displayed = upright(image, orientation)
            image.close()  # frees the stored orientation's pixels: peak memory is one full frame less
        if displayed.mode not in ("RGB", "L"):  # CMYK, palette, alpha, 16-bit: once, for all three
            displayed = to_srgb(displayed)
        # The small variants from these pixels, beside the full size's colour and encode.
        small_ahead = _SECOND_CORE.submit(_scored, small_variants, displayed, pixels)
        full = full_resolution(displayed)
        small = small_ahead.result()
    width, height = stored_size[::-1] if orientation in QUARTER_TURNS else stored_size
    return ProcessedPhoto(
        width=width,
        height=height,
        format=source_format,
        mode=mode,
        bit_depth=_BIT_DEPTH.get(mode, 8),
        color_space=fields.color_space or ("ICC" if icc else mode),
        exif=fields,
        captured=capture_time(fields, uploaded_at),
        variants=[*small.variants, full],
        quality=small.quality,
        fingerprint=small.fingerprint,
        warnings=cautions,
    )


@dataclass(frozen=True)
class _Small:
    variants: list[Variant]  # thumbnail and preview
    quality: Quality
    fingerprint: str | None


def _scored(make: Callable[[_Source], list[Variant]], source: _Source, pixels: int) -> _Small:
    """The small variants, with the quality score and the fingerprint taken from the
    preview: all on the same core, beside the full size where there is a second."""
    variants = make(source)
    preview = next(v for v in variants if v.name == "preview.jpg")
    image = Image.open(io.BytesIO(preview.data))
    quality = assess(image, pixels=pixels)
    return _Small(variants, quality, None if "no_detail" in quality.notes else dhash(image))


def _open(data: bytes) -> Image.Image:
    """Identify the photo and guard its size, without decoding it."""
    _prepare_pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FileRejectedError("too_many_pixels", "the image exceeds the pixel limit") from e
    except UnidentifiedImageError as e:
        # Only files with a photo format's signature come here: one that no decoder can
        # follow from there is damaged (an LZW TIFF cut short loses its directory at the end).
        raise FileRejectedError(
            "corrupt_image", "the file has an image format's signature but its structure cannot be read"
        ) from e
    except _DECODER_ERRORS as e:
        raise FileRejectedError(_decode_failure(e), "the image could not be decoded in full") from e
    if image.width * image.height > MAX_PIXELS:
        raise FileRejectedError(
            "too_many_pixels", f"{image.width}x{image.height} exceeds {MAX_PIXELS} pixels"
        )
    return image


def _decode(image: Image.Image) -> None:
    """Decode every byte of the image data, so a file cut short or corrupt is caught."""
    with _undecodable_rejected():
        image.load()
    if image.format in ("HEIF", "AVIF") and _missing_tiles(image):
        raise FileRejectedError("truncated", "tiles of the image are missing (the file was cut short)")


@contextmanager
def _undecodable_rejected() -> Iterator[None]:
    """A decoder's failure inside becomes the file's rejection, with its reason."""
    try:
        yield
    except _DECODER_ERRORS as e:
        raise FileRejectedError(_decode_failure(e), "the image could not be decoded in full") from e


# What decoders raise on damaged data: Pillow's OSError, SyntaxError and ValueError, and
# pillow-heif's EOFError (data ending early) and RuntimeError (any other libheif error).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError)


def _decode_failure(error: Exception) -> str:
    ended_early = isinstance(error, EOFError) or "truncated" in str(error).lower()
    return "truncated" if ended_early else "corrupt_image"


# A HEIC or AVIF cut short can decode without an error: libheif fills the tiles it has no
# data for with one flat colour (grey or green, by version). The container's own sizes
# catch that first, before decoding (see `containers`); where the writer left the media
# box open-ended, the picture is looked at: a tile's worth of blocks (3x3 at 128 px, what
# any 512 px tile holds however the grid is cropped) each of one exact colour, the same in
# all, which a real photo's noise never makes. Black and white are left out (clipped
# shadows and highlights are flat), and so is a frame of one colour throughout (a blank
# frame is the quality score's business).
_BLOCK_PX = 128
_MISSING_TILE_BLOCKS = 9


def _missing_tiles(image: Image.Image) -> bool:
    reduction = 4  # reduced first: a sixteenth of the pixels to look at
    grey = np.asarray(image.reduce(reduction).convert("L"))
    side = _BLOCK_PX // reduction
    rows, columns = grey.shape[0] // side, grey.shape[1] // side
    blocks = grey[: rows * side, : columns * side].reshape(rows, side, columns, side)
    low, high = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    flat = low == high
    if flat.all():
        return False
    values = low[flat & (low > 0) & (low < 255)]
    return values.size > 0 and int(np.bincount(values).max()) >= _MISSING_TILE_BLOCKS
