"""Photo validation: a photo is accepted only if it fully decodes.

The photo pipeline (EXIF, variants, quality, duplicates) builds on this; here a file is
opened by its bytes with Pillow (and pillow-heif for HEIC/HEIF), decoded in full so a
truncated file is caught, and its dimensions are read.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from orca_imaging.errors import FileRejectedError

_HEIF_READY = False
# A decompression bomb guard: 200 MP is far above any dental or DSLR photo.
MAX_PIXELS = 200_000_000


def _register_heif() -> None:
    global _HEIF_READY
    if not _HEIF_READY:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _HEIF_READY = True


@dataclass(frozen=True)
class PhotoInfo:
    width: int
    height: int
    mode: str
    format: str


def decode_photo(data: bytes) -> PhotoInfo:
    """Open and fully decode a photo; raise FileRejectedError with a specific reason."""
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise FileRejectedError(
                    "too_many_pixels", f"{image.width}x{image.height} exceeds {MAX_PIXELS} pixels"
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FileRejectedError("too_many_pixels", "the image exceeds the pixel limit") from e
    except UnidentifiedImageError as e:
        raise FileRejectedError(
            "unsupported_format", "the file is not an image any decoder recognises"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt_image"
        raise FileRejectedError(reason, "the image could not be decoded in full") from e
    return PhotoInfo(width=image.width, height=image.height, mode=image.mode, format=image.format or "")
