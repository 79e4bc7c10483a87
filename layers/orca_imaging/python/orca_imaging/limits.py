"""A clinic's limits on what it accepts, shared by the upload API and the pipeline.

Light on purpose: the API checks a declared size against these without importing the
imaging libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orca_imaging.errors import FileRejectedError

if TYPE_CHECKING:
    from orca_imaging.models import ClinicSettingsModel

PHOTO_CONTENT_PREFIX = "image/"
# What a consumer keeps in memory for processing; no photo limit may exceed it.
IN_MEMORY_MAX_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class PhotoLimits:
    """What a clinic accepts. The defaults take any real photo; a clinic tightens them."""

    # Above the soft limit a photo is kept with a `large_file` warning; above the hard
    # limit it is rejected. A 24 MP JPEG is 8-15 MB, a 16-bit TIFF scan of a film 150 MB.
    soft_limit_bytes: int = 50 * 1024**2
    hard_limit_bytes: int = 250 * 1024**2
    # The shortest edge a clinic accepts, in pixels; 1 accepts everything that decodes.
    min_edge_pixels: int = 1

    def check_size(self, size: int) -> list[str]:
        """Reject above the hard limit; the warnings for a size within it."""
        if size > self.hard_limit_bytes:
            raise FileRejectedError(
                "too_large", f"the photo is {size} bytes; the clinic accepts at most {self.hard_limit_bytes}"
            )
        return ["large_file"] if size > self.soft_limit_bytes else []

    def check_dimensions(self, width: int, height: int) -> None:
        if min(width, height) < self.min_edge_pixels:
            raise FileRejectedError(
                "too_small",
                f"the photo is {width}x{height}; the clinic needs at least {self.min_edge_pixels} px a side",
            )

    @classmethod
    def for_clinic(cls, settings: ClinicSettingsModel) -> PhotoLimits:
        """The clinic's own limits where its admin set them, the defaults elsewhere."""
        default = cls()
        return cls(
            soft_limit_bytes=int(settings.photo_soft_limit_bytes or default.soft_limit_bytes),
            hard_limit_bytes=int(settings.photo_hard_limit_bytes or default.hard_limit_bytes),
            min_edge_pixels=int(settings.min_photo_edge_pixels or default.min_edge_pixels),
        )
