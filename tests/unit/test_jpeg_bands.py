"""A full-size copy encoded in bands on several cores is the JPEG one encoder writes."""

from __future__ import annotations

import io
from typing import IO

import numpy as np
import pytest
from PIL import Image, ImageOps
from pillow_heif import open_heif

from orca_imaging import jpeg_bands, variants
from orca_imaging.jpeg_bands import encode_in_bands
from orca_imaging.variants import full_resolution, to_srgb, upright_rows
from tests.conftest import CORPUS


def noise(width: int, height: int, mode: str = "RGB", seed: int = 7) -> Image.Image:
    """Detail in every block, so any misplaced or misjoined band changes the bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def pillows_own(image: Image.Image, restart_interval: int | None, **options: object) -> bytes:
    out = io.BytesIO()
    if restart_interval:
        options["restart_marker_blocks"] = restart_interval
    image.save(out, "JPEG", quality=90, comment=b"", **options)
    return out.getvalue()


def in_bands(image: Image.Image, bands: int, **options: object) -> bytes:
    def save(band: Image.Image, out: IO[bytes]) -> None:
        band.save(out, "JPEG", quality=90, comment=b"", **options)

    return encode_in_bands(
        lambda top, bottom: image.crop((0, top, image.width, bottom)),
        image.width,
        image.height,
        save=save,
        bands=bands,
    )


def restart_interval(jpeg: bytes) -> int | None:
    at = jpeg.find(b"\xff\xdd\x00\x04")
    return int.from_bytes(jpeg[at + 4 : at + 6], "big") if at >= 0 else None


@pytest.mark.parametrize(
    ("mode", "subsampling", "mcu"),
    [("RGB", 2, (16, 16)), ("RGB", 1, (16, 8)), ("RGB", 0, (8, 8)), ("L", 0, (8, 8))],
    ids=["4:2:0", "4:2:2", "4:4:4", "grey"],
)
@pytest.mark.parametrize("bands", [2, 3, 7])
def test_bands_join_into_the_bytes_one_encoder_writes_with_restart_markers(
    mode: str, subsampling: int, mcu: tuple[int, int], bands: int
) -> None:
    image = noise(203, 157, mode)  # neither side a whole number of MCUs
    joined = in_bands(image, bands, subsampling=subsampling)
    band_rows = -(-157 // (bands * 16)) * 16
    interval = -(-203 // mcu[0]) * (band_rows // mcu[1])
    assert restart_interval(joined) == interval
    assert joined == pillows_own(image, interval, subsampling=subsampling)
    # And so it decodes to exactly the pixels of a plain encode of the whole.
    plain = Image.open(io.BytesIO(pillows_own(image, None, subsampling=subsampling)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(joined))), np.asarray(plain))


def test_a_very_wide_picture_gets_bands_short_enough_for_a_16_bit_restart_interval() -> None:
    # 40,000 px wide at 4:4:4 is 5,000 MCUs a row: two bands of 112 rows (14 MCU rows) would
    # need a restart interval of 70,000 MCUs, more than DRI's 16 bits hold. Bands of 96 rows
    # (60,000 MCUs) it is, three of them.
    image = noise(40_000, 224)
    joined = in_bands(image, 2, subsampling=0)
    assert restart_interval(joined) == 60_000
    assert joined == pillows_own(image, 60_000, subsampling=0)


@pytest.mark.parametrize("options", [{"progressive": True}, {"optimize": True}], ids=str)
def test_bands_that_cannot_join_fall_back_to_one_encode(options: dict[str, object]) -> None:
    # Progressive scans cannot take restart markers this way, and optimised Huffman tables
    # differ band to band: either way the whole is encoded once instead.
    image = noise(160, 160)
    made = in_bands(image, 4, **options)
    assert made == pillows_own(image, None, **options)


def test_one_band_is_a_plain_encode() -> None:
    image = noise(64, 64)
    assert in_bands(image, 1) == pillows_own(image, None)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_rows_are_those_rows_of_the_turned_picture(orientation: int) -> None:
    stored = noise(53, 37)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    upright = ImageOps.exif_transpose(stored, in_place=False)
    for top, bottom in [(0, 16), (16, 32), (32, upright.height), (0, upright.height)]:
        expected = upright.crop((0, top, upright.width, bottom))
        assert np.array_equal(
            np.asarray(upright_rows(stored, orientation, top, bottom)), np.asarray(expected)
        ), (top, bottom)


def test_a_turned_display_p3_full_size_in_bands_is_the_whole_turned_and_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each band is cut, turned and converted to sRGB on its own: the colour profile must go
    # with every band, and the bands must meet where the whole would.
    monkeypatch.setattr(jpeg_bands, "CORES", 2)
    monkeypatch.setattr(jpeg_bands, "MIN_BANDED_PIXELS", 0)
    stored = noise(1000, 900)  # over 800x800, where the full size is no longer optimised
    stored.info["icc_profile"] = open_heif(CORPUS / "photos" / "iphone13promax.heic").info["icc_profile"]
    full = full_resolution(stored, 6)
    assert restart_interval(full.data) is not None  # it was made in bands
    assert (full.width, full.height) == (900, 1000)
    turned = stored.transpose(Image.Transpose.ROTATE_270)
    expected = np.asarray(Image.open(io.BytesIO(variants._encode(to_srgb(turned), variants.FULL_QUALITY))))
    unconverted = np.asarray(Image.open(io.BytesIO(variants._encode(turned, variants.FULL_QUALITY))))
    assert not np.array_equal(expected, unconverted)  # so a band that lost its profile would show
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(full.data))), expected)


def test_where_in_memory_files_are_forbidden_a_temporary_file_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(name: str) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(jpeg_bands.os, "memfd_create", forbidden)
    image = noise(64, 64)
    assert in_bands(image, 1) == pillows_own(image, None)
