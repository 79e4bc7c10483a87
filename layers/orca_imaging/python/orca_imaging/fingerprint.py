"""Perceptual fingerprints for near-duplicate photos.

A difference hash (dHash): the upright image in grey at 9x8, one bit per horizontal
neighbour pair saying which is brighter. A re-export of the same photo at another size or
quality lands within a few bits; different photos differ in about half of the 64.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64
# Re-exports of one photo measured 0-4 bits apart on the corpus; distinct photos 20+.
NEAR_DUPLICATE_BITS = 8


def dhash(image: Image.Image) -> str:
    """64-bit difference hash as 16 hex digits."""
    small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    grey = np.asarray(small, dtype=np.int16)
    bits = 0
    for brighter in (grey[:, :-1] > grey[:, 1:]).flat:  # row by row, left to right
        bits = (bits << 1) | int(brighter)
    return f"{bits:016x}"


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
