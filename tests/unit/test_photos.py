"""Every real photo: accepted, upright variants of the right size and aspect, no metadata
in any variant, the capture time the manifest records, and a lossless copy when possible."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat
from pillow_heif import open_heif

from orca_imaging import photos, variants
from orca_imaging.containers import cut_short
from orca_imaging.errors import FileRejectedError
from orca_imaging.photos import ProcessedPhoto, process_photo
from orca_imaging.variants import Variant, preview_size, strip_jpeg_metadata
from tests.conftest import CORPUS, corpus_files, damaged_copies

if TYPE_CHECKING:
    from collections.abc import Callable

UPLOADED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PHOTOS = corpus_files("photos")


@cache
def processed(path: Path) -> ProcessedPhoto:
    return process_photo(path.read_bytes(), UPLOADED)


@cache
def manifest() -> dict[str, str]:
    with (CORPUS / "MANIFEST.tsv").open() as f:
        return {row["relative_path"]: row["description"] for row in csv.DictReader(f, delimiter="\t")}


def segments(data: bytes) -> list[tuple[int, int]]:
    """(marker, offset) of each JPEG segment up to and including the first scan."""
    found, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        found.append((marker, i))
        if marker == 0xDA:
            break
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return found


def variant(photo: ProcessedPhoto, name: str) -> Image.Image:
    (found,) = [v for v in photo.variants if v.name == name]
    return Image.open(io.BytesIO(found.data))


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_variants_are_upright_sized_and_keep_the_aspect(path: Path) -> None:
    photo = processed(path)
    stored = Image.open(path)
    turned = photo.exif.orientation in (5, 6, 7, 8)
    assert (photo.width, photo.height) == ((stored.height, stored.width) if turned else stored.size)
    for name, limit in (
        ("thumb.jpg", 150),
        ("preview.jpg", 800),
        ("full.jpg", max(photo.width, photo.height)),
    ):
        image = variant(photo, name)
        assert image.format == "JPEG" and image.mode in ("RGB", "L")
        assert max(image.size) == min(limit, max(photo.width, photo.height))
        # Same aspect as the upright photo, to within a pixel of rounding.
        assert abs(image.width * photo.height - image.height * photo.width) <= max(photo.width, photo.height)


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_no_variant_carries_exif_or_gps(path: Path) -> None:
    for v in processed(path).variants:
        markers = {marker for marker, _ in segments(v.data)}
        assert 0xDA in markers  # the walk reached the scan
        assert not markers & {0xE1, 0xED, 0xFE}, v.name  # no EXIF/XMP, IPTC or comment segments
        assert not Image.open(io.BytesIO(v.data)).getexif()


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_capture_time_is_the_manifests_date_time_original(path: Path) -> None:
    description = manifest()[path.relative_to(CORPUS).as_posix()]
    match = re.search(r"DateTimeOriginal='([^']*)'", description)
    recorded = match.group(1) if match else ""
    photo = processed(path)
    if recorded and datetime.strptime(recorded, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC) < UPLOADED:
        assert photo.captured.source in ("exif", "exif_local")
        local = photo.captured.at
        if photo.captured.source == "exif" and photo.exif.offset_time_original:
            sign = 1 if photo.exif.offset_time_original[0] == "+" else -1
            hours, minutes = map(int, photo.exif.offset_time_original[1:].split(":"))
            local = local.astimezone(UTC).replace(tzinfo=None)
            local = local.replace(tzinfo=UTC) + sign * (datetime(1, 1, 1, hours, minutes) - datetime(1, 1, 1))
        assert local.strftime("%Y:%m:%d %H:%M:%S") == recorded
    else:  # blank, garbage, or in the future: the upload time, and the record says so
        assert (photo.captured.at, photo.captured.source) == (UPLOADED, "upload_time_fallback")


def test_all_eight_orientations_come_out_as_the_same_upright_picture() -> None:
    previews = {
        p.name: variant(processed(p), "preview.jpg").convert("RGB")
        for p in corpus_files("photos/orientation")
    }
    reference = previews.pop("landscape_1.jpg")
    assert len(previews) == 7
    for name, image in previews.items():
        assert image.size == reference.size, name
        difference = ImageStat.Stat(ImageChops.difference(image, reference)).mean
        assert max(difference) < 12, (name, difference)  # a wrong turn differs by ~60+


def test_an_untouched_jpeg_keeps_its_compressed_data() -> None:
    path = CORPUS / "photos" / "canon_eos1300d_18mp.jpg"
    (full,) = [v for v in processed(path).variants if v.name == "full.jpg"]
    assert full.lossless
    original = path.read_bytes()
    scan = segments(original)[-1][1]  # the main image's scan, not the EXIF thumbnail's
    kept = original[scan : original.index(b"\xff\xd9", scan) + 2]
    assert full.data.endswith(kept) and len(kept) > 0.9 * len(full.data)
    assert len(full.data) < len(original)  # the metadata (EXIF, maker notes, thumbnail) is gone


def test_a_turned_jpeg_is_re_encoded_upright() -> None:
    (full,) = [
        v for v in processed(CORPUS / "photos" / "canon_sx60_orient6.jpg").variants if v.name == "full.jpg"
    ]
    assert not full.lossless and (full.width, full.height) == (1536, 2048)


def test_a_turned_jpeg_cut_short_is_rejected_as_truncated() -> None:
    # Its small variants are decoded on another thread while the full size is: a failure in
    # either is the file's rejection, with its reason.
    data = (CORPUS / "photos" / "canon_sx60_orient6.jpg").read_bytes()
    for cut in (data[: len(data) // 2], data[: len(data) - 4096]):
        with pytest.raises(FileRejectedError) as rejected:
            process_photo(cut, UPLOADED)
        assert rejected.value.reason == "truncated"


def test_a_failure_decoding_the_small_variants_rejects_the_file_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_decode(_: bytes) -> list[Variant]:
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(photos, "small_variants_of_jpeg", cannot_decode)
    with pytest.raises(FileRejectedError) as rejected:
        process_photo((CORPUS / "photos" / "canon_sx60_orient6.jpg").read_bytes(), UPLOADED)
    assert rejected.value.reason == "corrupt_image"


def test_a_palette_photo_is_converted_once_for_all_its_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    picture = Image.new("RGB", (2000, 1200), (40, 120, 200)).convert("P")
    encoded = io.BytesIO()
    picture.save(encoded, "PNG")
    converted: list[str] = []
    original_to_srgb = variants.to_srgb

    def counting(image: Image.Image) -> Image.Image:
        converted.append(image.mode)
        return original_to_srgb(image)

    monkeypatch.setattr(photos, "to_srgb", counting)
    monkeypatch.setattr(variants, "to_srgb", counting)
    photo = process_photo(encoded.getvalue(), UPLOADED)
    assert converted.count("P") == 1  # the full-size frame, once; the small ones from its RGB
    assert variant(photo, "preview.jpg").convert("RGB").getpixel((400, 240)) == pytest.approx(
        (40, 120, 200), abs=3
    )


def test_the_preview_of_a_large_jpeg_is_decoded_at_the_smallest_scale_that_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 4240x2830 must decode at 1/4 (1060x708), not 1/2 as a square 800x800 request would.
    assert preview_size((4240, 2830)) == (800, 534)
    assert preview_size((2830, 4240)) == (534, 800)
    assert preview_size((640, 480)) == (640, 480)  # never enlarged
    encoded = io.BytesIO()
    Image.new("RGB", (4240, 2830), (90, 60, 30)).save(encoded, "JPEG")
    decoded: list[tuple[int, int]] = []
    made_from = variants.small_variants

    def recording(upright: Image.Image) -> list[Variant]:
        decoded.append(upright.size)
        return made_from(upright)

    monkeypatch.setattr(variants, "small_variants", recording)
    thumb, preview = variants.small_variants_of_jpeg(encoded.getvalue())
    assert decoded == [(1060, 708)]
    assert (preview.width, preview.height) == (800, 534) and thumb.width == 150


def test_cmyk_becomes_srgb_with_the_same_colours(tmp_path: Path) -> None:
    source = Image.open(CORPUS / "photos" / "ortho_intraoral_nikon_d90.jpg").convert("RGB")
    source.thumbnail((600, 600))
    cmyk = tmp_path / "cmyk.jpg"
    source.convert("CMYK").save(cmyk, "JPEG", quality=95)
    photo = process_photo(cmyk.read_bytes(), UPLOADED)
    preview = variant(photo, "preview.jpg")
    assert preview.mode == "RGB"
    expected = source.resize(preview.size)
    assert max(ImageStat.Stat(ImageChops.difference(preview.convert("RGB"), expected)).mean) < 12


def test_every_variant_of_a_display_p3_photo_has_its_srgb_colours(tmp_path: Path) -> None:
    # The small variants are resampled in Display P3 and converted after; the full size is
    # converted whole. Flat patches, so JPEG's own error stays out of the comparison.
    p3_icc = open_heif(CORPUS / "photos" / "iphone13promax.heic").info["icc_profile"]
    colours = [(200, 120, 60), (60, 160, 90), (70, 90, 200), (230, 200, 150)]
    picture = Image.new("RGB", (2400, 1600))
    for i, colour in enumerate(colours):  # one per quadrant
        picture.paste(colour, (i % 2 * 1200, i // 2 * 800, i % 2 * 1200 + 1200, i // 2 * 800 + 800))
    path = tmp_path / "p3.png"
    picture.save(path, icc_profile=p3_icc)
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(p3_icc))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    swatches = Image.new("RGB", (len(colours), 1))
    for i, colour in enumerate(colours):
        swatches.putpixel((i, 0), colour)
    expected = ImageCms.profileToProfile(swatches, p3, srgb, outputMode="RGB")
    assert expected is not None
    expected_colours = [expected.getpixel((i, 0)) for i in range(len(colours))]
    # Left unconverted, some channel would be off by more than the tolerance below.
    assert any(
        abs(a - b) > 6
        for c, e in zip(colours, expected_colours, strict=True)
        for a, b in zip(c, e, strict=True)
    )
    photo = process_photo(path.read_bytes(), UPLOADED)
    for name in ("thumb.jpg", "preview.jpg", "full.jpg"):
        image = variant(photo, name).convert("RGB")
        for i, want in enumerate(expected_colours):
            centre = ((2 * (i % 2) + 1) * image.width // 4, (2 * (i // 2) + 1) * image.height // 4)
            got = image.getpixel(centre)
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 3, (name, i, got, want)


def test_stripping_refuses_what_is_not_a_jpeg_stream() -> None:
    assert strip_jpeg_metadata(b"\x89PNG\r\n\x1a\n") is None
    assert strip_jpeg_metadata(b"\xff\xd8\xff\xe1\x00\x10Exif") is None


IPHONE_HEIC = CORPUS / "photos" / "iphone13promax.heic"


@pytest.mark.parametrize("kept", [0.1, 0.5, 0.9, 0.99])
def test_a_heic_cut_anywhere_is_rejected_as_truncated(kept: float) -> None:
    # libheif decodes these without an error, filling what is missing with one flat colour
    # (at 99% the picture is even whole: what is lost follows it); the container's sizes tell.
    data = IPHONE_HEIC.read_bytes()
    with pytest.raises(FileRejectedError) as rejected:
        process_photo(data[: int(len(data) * kept)], UPLOADED)
    assert rejected.value.reason == "truncated"


def open_ended(data: bytes) -> bytes:
    """The HEIC with its media data box's size set to 0, "to the end of the file" (legal, and
    it leaves the container nothing to measure a cut against)."""
    at = data.index(b"mdat") - 4
    return data[:at] + bytes(4) + data[at + 4 :]


@pytest.mark.parametrize("kept", [0.3, 0.9])
def test_a_heic_cut_short_that_the_container_cannot_tell_is_caught_by_its_missing_tiles(kept: float) -> None:
    data = IPHONE_HEIC.read_bytes()
    cut = open_ended(data[: int(len(data) * kept)])
    assert not cut_short(cut)
    with pytest.raises(FileRejectedError) as rejected:
        process_photo(cut, UPLOADED)
    assert (rejected.value.reason, "tiles" in str(rejected.value)) == ("truncated", True)
    assert process_photo(open_ended(data), UPLOADED).width == 3024  # open-ended and whole: accepted


def textured(size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    return Image.effect_noise(size, 40).convert("RGB")


def test_missing_tiles_are_a_tiles_worth_of_one_flat_colour_but_not_clipping_or_a_blank_frame() -> None:
    picture = textured()
    picture.paste((60, 128, 60), (600, 300, 1112, 812))  # one 512 px tile's worth, inside the frame
    assert photos._missing_tiles(picture)
    clipped = textured()
    clipped.paste((255, 255, 255), (0, 0, 1600, 600))  # a burnt-out sky: flat, but white
    clipped.paste((0, 0, 0), (0, 900, 1600, 1200))  # and crushed shadows
    assert not photos._missing_tiles(clipped)
    assert not photos._missing_tiles(Image.new("RGB", (1600, 1200), (128, 128, 128)))
    assert not photos._missing_tiles(textured())


@pytest.mark.parametrize(
    ("mode", "scale", "fmt"),
    [("F", 1 / 255, "TIFF"), ("F", 1.0, "TIFF"), ("I;16", 16, "PNG"), ("I;16", 257, "TIFF")],
    ids=["float 0-1", "float 0-255", "12-bit in 16", "full 16-bit"],
)
def test_deep_grey_photos_come_out_levelled_whatever_range_their_samples_use(
    mode: str, scale: float, fmt: str, tmp_path: Path
) -> None:
    # A float TIFF may hold 0-1 or 0-255 and a 16-bit scan only 12 bits: each must show the
    # picture, not a black or washed-out frame.
    grey = Image.open(CORPUS / "photos" / "ortho_intraoral_nikon_d90.jpg").convert("L").reduce(2)
    grey = ImageOps.autocontrast(grey)  # 0-255 used, so the levelled copy should match it
    samples = np.asarray(grey, dtype=np.float32) * scale
    deep = Image.fromarray(samples) if mode == "F" else Image.fromarray(samples.astype(np.uint16))
    path = tmp_path / f"deep.{fmt.lower()}"
    deep.save(path, fmt)
    preview = variant(process_photo(path.read_bytes(), UPLOADED), "preview.jpg").convert("L")
    expected = grey.resize(preview.size, Image.Resampling.LANCZOS)
    assert ImageStat.Stat(ImageChops.difference(preview, expected)).mean[0] < 3


@pytest.mark.parametrize("name", ["canon_eos1300d_18mp.jpg", "canon_sx60_orient6.jpg"])
def test_a_jpeg_missing_only_its_last_bytes_is_rejected_as_truncated(name: str) -> None:
    # libjpeg makes up a missing end marker: losing the last two bytes raised nothing on the
    # upright photo's reduced-scale decode, where the turned one's full decode did.
    data = (CORPUS / "photos" / name).read_bytes()
    with pytest.raises(FileRejectedError) as rejected:
        process_photo(data[:-2], UPLOADED)
    assert rejected.value.reason == "truncated"
    appended = process_photo(data + b"\x00" * 64 + b"trailer written by some phones", UPLOADED)
    assert appended.width > 0  # what follows a complete image is no cut


def encoded_as(fmt: str, **options: object) -> bytes:
    picture = Image.open(CORPUS / "photos" / "ortho_intraoral_nikon_d90.jpg").convert("RGB")
    picture.thumbnail((600, 600))
    out = io.BytesIO()
    picture.save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("WEBP", {}),
        ("WEBP", {"lossless": True}),
        ("JPEG2000", {}),
        ("JPEG2000", {"no_jp2": True}),
    ],
    ids=["png", "webp", "webp lossless", "jp2", "j2k codestream"],
)
@pytest.mark.parametrize("lost", [1, 12, 1000])
def test_every_photo_container_cut_short_is_rejected_as_truncated(
    fmt: str, options: dict[str, object], lost: int
) -> None:
    # A PNG that lost only its closing IEND chunk (12 bytes) decoded without a word; WebP and
    # JPEG 2000 cuts were reported as corrupt, not as cut short.
    data = encoded_as(fmt, **options)
    assert process_photo(data, UPLOADED).width == 600
    with pytest.raises(FileRejectedError) as rejected:
        process_photo(data[:-lost], UPLOADED)
    assert rejected.value.reason == "truncated"


def test_a_tiff_whose_structure_cannot_be_read_is_corrupt_not_an_unknown_format() -> None:
    data = encoded_as("TIFF", compression="tiff_lzw")  # Pillow writes its directory last
    with pytest.raises(FileRejectedError) as rejected:
        process_photo(data[:-1], UPLOADED)
    assert rejected.value.reason == "corrupt_image"


@pytest.mark.parametrize("size", [(1200, 800), (2400, 1600)])  # decoded whole; at reduced scale
def test_a_turned_photo_whose_exif_cannot_be_written_back_comes_out_upright(size: tuple[int, int]) -> None:
    # A damaged tag id: the Artist's text now under PhotometricInterpretation, a number
    # (from a real Canon file, one byte off). Pillow reads it, but cannot write the block
    # back, as `ImageOps.exif_transpose` does when it resets the orientation.
    exif = Image.Exif()
    exif[0x0112], exif[0x013B] = 6, "x"
    block = exif.tobytes()
    artist = b"\x01\x3b\x00\x02"  # tag 0x013B, type ASCII (Pillow writes big-endian)
    assert block.count(artist) == 1
    damaged = block.replace(artist, b"\x01\x06\x00\x02")
    stored = Image.new("RGB", size, (40, 40, 220))  # blue, with its left half red
    stored.paste((220, 40, 40), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=90, exif=damaged)
    photo = process_photo(out.getvalue(), UPLOADED)
    assert (photo.width, photo.height) == size[::-1]
    for name in ("thumb.jpg", "preview.jpg", "full.jpg"):
        image = variant(photo, name)
        assert image.height > image.width and not image.getexif(), name
        # Orientation 6 turns the stored frame a quarter clockwise: its left half on top.
        middle = image.width // 2
        top, bottom = image.getpixel((middle, 2)), image.getpixel((middle, image.height - 3))
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (name, top, bottom)


def test_exif_values_of_the_wrong_shape_are_left_out_not_an_error() -> None:
    # A damaged block can give any tag any type and count: ColorSpace as two SHORTs, an
    # exposure time so small that 1/x overflows.
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0xA001], sub[0x829A] = (1, 1), 5e-324
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(out, "JPEG", exif=exif)
    photo = process_photo(out.getvalue(), UPLOADED)
    assert (photo.exif.color_space, photo.exif.shutter_speed) == (None, None)
    assert photo.exif.full["ColorSpace"] == [1, 1]


def test_a_small_photo_whose_encoding_outgrows_pillows_optimising_buffer_is_still_encoded() -> None:
    # Black-and-white noise at high quality takes more than a byte a pixel (~1.2 here), the
    # buffer Pillow gives an optimised encode; a damaged file can decode to much the same.
    noise = np.random.default_rng(7).integers(0, 2, (450, 600, 3), dtype=np.uint8) * 255
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    photo = process_photo(out.getvalue(), UPLOADED)
    assert variant(photo, "full.jpg").size == (600, 450)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's, on every damaged EXIF block
@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_a_damaged_photo_is_taken_in_or_rejected_with_a_reason_never_crashes(path: Path) -> None:
    # Anything else escaping would fail the delivery again and again, to the dead-letter
    # queue, with no reason on the record. Larger sweeps of this kind (40 copies a photo)
    # found four ways it did, each with its own test: EXIF that Pillow cannot write back on
    # a turn, EXIF values of the wrong shape, an encode outgrowing Pillow's buffer, and
    # libheif's EOFError and RuntimeError.
    reasons = {"truncated", "corrupt_image", "too_many_pixels"}
    for data in damaged_copies(path.read_bytes(), path.name):
        try:
            photo = process_photo(data, UPLOADED)
        except FileRejectedError as rejection:
            assert rejection.reason in reasons and rejection.message
            continue
        json.dumps(photo.exif.full, allow_nan=False)  # the record's EXIF, as a browser must parse it


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # One byte of the item properties changed: libheif's RuntimeError (a size check).
        (lambda data: data[:441] + b"\x11" + data[442:], "corrupt_image"),
        # All but the header zeroed, as a copy that stopped writing leaves a file: EOFError.
        (lambda data: data[:1815] + bytes(len(data) - 1815), "truncated"),
    ],
)
def test_a_damaged_heif_is_rejected_whatever_libheif_raises(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    data = damage((CORPUS / "photos" / "samplefilehub.heif").read_bytes())
    with pytest.raises(FileRejectedError) as caught:
        process_photo(data, UPLOADED)
    assert caught.value.reason == reason
