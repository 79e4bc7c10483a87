"""A clinic's photo limits and the EXIF structure check, on real files and on blocks
damaged in each way the check names."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from PIL import Image

from orca_imaging.errors import FileRejectedError
from orca_imaging.exif import exif_damage
from orca_imaging.limits import PhotoLimits
from orca_imaging.photos import _prepare_pillow, process_photo
from tests.conftest import CORPUS, corpus_files

UPLOADED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DSLR = CORPUS / "photos" / "canon_eos1300d_18mp.jpg"  # 5184x3456, 2.1 MB
SMALL = CORPUS / "photos" / "Canon_40D.jpg"  # 100x68


def test_a_photo_over_the_hard_limit_is_rejected_before_it_is_decoded() -> None:
    size = DSLR.stat().st_size
    limits = PhotoLimits(soft_limit_bytes=1, hard_limit_bytes=size - 1)
    with pytest.raises(FileRejectedError) as caught:
        process_photo(DSLR.read_bytes(), UPLOADED, limits=limits)
    assert caught.value.reason == "too_large" and str(size) in caught.value.message
    # Bytes no decoder would accept are still refused for their size: nothing was opened.
    with pytest.raises(FileRejectedError) as unopened:
        process_photo(bytes(size), UPLOADED, limits=limits)
    assert unopened.value.reason == "too_large"


def test_a_photo_over_the_soft_limit_is_kept_with_a_warning() -> None:
    size = DSLR.stat().st_size
    kept = process_photo(DSLR.read_bytes(), UPLOADED, limits=PhotoLimits(soft_limit_bytes=size - 1))
    assert kept.warnings == ["large_file"] and kept.width == 5184
    exact = process_photo(DSLR.read_bytes(), UPLOADED, limits=PhotoLimits(soft_limit_bytes=size))
    assert exact.warnings == []


def test_the_shortest_edge_is_held_to_the_clinic_minimum() -> None:
    with pytest.raises(FileRejectedError) as caught:
        process_photo(SMALL.read_bytes(), UPLOADED, limits=PhotoLimits(min_edge_pixels=69))
    assert caught.value.reason == "too_small" and "100x68" in caught.value.message
    assert process_photo(SMALL.read_bytes(), UPLOADED, limits=PhotoLimits(min_edge_pixels=68)).height == 68


@pytest.mark.parametrize("path", corpus_files("photos"), ids=lambda p: p.name)
def test_every_real_photos_exif_is_structurally_sound(path: object) -> None:
    _prepare_pillow()
    with Image.open(path) as image:  # type: ignore[call-overload]
        image.load()
        assert exif_damage(image.info.get("exif")) is None


def test_a_real_photo_with_a_damaged_gps_ifd_is_kept_and_flagged() -> None:
    photo = process_photo((CORPUS / "bad" / "jpeg_broken_exif_canon30d.jpg").read_bytes(), UPLOADED)
    assert photo.warnings == ["exif_damaged"]
    assert photo.exif.model == "Canon EOS 30D"  # what could be read still is


def tiff_block(entries: list[tuple[int, int, int, int]], *, next_ifd: int = 0, tail: bytes = b"") -> bytes:
    """A little-endian EXIF block with one IFD0 at offset 8."""
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd) + tail


MAKE = (0x010F, 2, 4, 0x6E6F6358)  # "Xcon" fits in the entry itself


@pytest.mark.parametrize(
    ("block", "named"),
    [
        (b"Exif\x00\x00II*\x00", "cut short"),
        (b"Exif\x00\x00XX*\x00\x08\x00\x00\x00", "not TIFF"),
        (b"Exif\x00\x00II*\x00" + struct.pack("<I", 4000), "ifd0 lies outside"),
        (b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + struct.pack("<H", 300), "entries run past"),
        (tiff_block([MAKE, (0x0110, 2, 64, 9000)]), "value outside"),
        (tiff_block([MAKE, (0x0110, 99, 1, 0)]), "unknown type 99"),
        (tiff_block([MAKE, (0x8769, 4, 1, 8)]), "points back"),
        (tiff_block([MAKE, (0x8825, 4, 1, 5000)]), "gps lies outside"),
        (
            tiff_block(
                [MAKE],
                next_ifd=26,
                tail=struct.pack("<H", 2)
                + struct.pack("<HHII", 0x0201, 4, 1, 40)
                + struct.pack("<HHII", 0x0202, 4, 1, 10_000)
                + b"\x00" * 4,
            ),
            "thumbnail lies outside",
        ),
    ],
)
def test_each_kind_of_structural_damage_is_named(block: bytes, named: str) -> None:
    found = exif_damage(block)
    assert found is not None and named in found


def test_a_sound_block_and_no_block_are_not_damage() -> None:
    assert exif_damage(tiff_block([MAKE])) is None
    assert exif_damage(None) is None and exif_damage(b"") is None
