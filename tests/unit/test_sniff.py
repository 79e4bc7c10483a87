"""Every corpus file is identified by its bytes, whatever its name says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orca_imaging.models import FileType
from orca_imaging.sniff import SNIFF_BYTES, sniff
from tests.conftest import CORPUS, corpus_files

if TYPE_CHECKING:
    from pathlib import Path


def sniff_file(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        return sniff(f.read(SNIFF_BYTES), path.stat().st_size)


@pytest.mark.parametrize("path", corpus_files("photos"), ids=lambda p: p.name)
def test_photos_are_photos_of_their_real_format(path: Path) -> None:
    found = sniff_file(path)
    assert found.file_type == FileType.PHOTO
    expected = {".jpg": "jpeg", ".png": "png", ".heic": "heic", ".heif": "heic"}.get(path.suffix.lower())
    if expected:
        assert found.kind == expected


@pytest.mark.parametrize("path", corpus_files("dicom"), ids=lambda p: p.name)
def test_dicom_files_are_dicom_with_or_without_preamble(path: Path) -> None:
    assert sniff_file(path).kind == "dicom"


@pytest.mark.parametrize(
    "path", [p for p in corpus_files("scans") if p.suffix.lower() != ".mtl"], ids=lambda p: p.name
)
def test_meshes_are_3d_scans(path: Path) -> None:
    found = sniff_file(path)
    assert found.file_type == FileType.SCAN_3D
    assert found.kind == path.suffix.lower().lstrip(".")


def test_a_jpeg_named_dcm_is_a_jpeg() -> None:
    assert sniff_file(CORPUS / "bad" / "not_dicom_jpeg_renamed.dcm").kind == "jpeg"


def test_unknown_bytes_are_unknown() -> None:
    assert sniff(b"hello world, not an image").kind == "unknown"


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    brands = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + b"\0\0\0\x08meta"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (ftyp(b"avif", b"avif", b"mif1", b"miaf", b"MA1B"), "avif"),  # as Pillow and libavif write it
        (ftyp(b"mif1", b"mif1", b"avif"), "avif"),
        (ftyp(b"heic", b"mif1", b"heic"), "heic"),  # an iPhone's
        (ftyp(b"mif1", b"mif1", b"heic"), "heic"),
        (ftyp(b"heic", b"mif1", b"heic", b"avif"), "heic"),  # both codecs: the major brand says
    ],
)
def test_avif_and_heic_are_told_apart_by_their_brands(head: bytes, kind: str) -> None:
    found = sniff(head)
    assert (found.kind, found.mime_type) == (kind, f"image/{kind}")
