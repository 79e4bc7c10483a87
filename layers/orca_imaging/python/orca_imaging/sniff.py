"""What a file really is, from its first bytes. Names and declared types are never trusted.

`sniff(head)` needs only the first `SNIFF_BYTES` of a file, so the consumer can decide
where a file goes from one ranged read.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from orca_imaging.models import FileType

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Sniffed:
    mime_type: str
    file_type: FileType
    kind: str  # short name used in reasons and metrics: jpeg, png, dicom, stl, ...


UNKNOWN = Sniffed("application/octet-stream", FileType.DOCUMENT, "unknown")

_HEVC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {*_HEVC_BRANDS, b"mif1", b"msf1"}  # mif1, msf1: HEIF, of any codec
_AVIF_BRANDS = {b"avif", b"avis"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"avc1"}
_DICOM_VRS = {
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"SV",
    b"TM",
    b"UC",
    b"UI",
    b"UL",
    b"UN",
    b"UR",
    b"US",
    b"UT",
    b"UV",
}
_OBJ_LINE = re.compile(rb"^\s*(#|(v|vt|vn|vp|f|o|g|s|l|p|mtllib|usemtl)(\s|$))")


def _ftyp(head: bytes) -> Sniffed | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
    # An AVIF lists the generic HEIF brand (mif1) too: it is AVIF unless an HEVC brand says
    # otherwise, and then the major brand decides.
    if brands & _AVIF_BRANDS and (major in _AVIF_BRANDS or not brands & _HEVC_BRANDS):
        return Sniffed("image/avif", FileType.PHOTO, "avif")
    if brands & _HEIF_BRANDS:
        return Sniffed("image/heic", FileType.PHOTO, "heic")
    if head[8:12] in _VIDEO_BRANDS:
        mime = "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
        return Sniffed(mime, FileType.VIDEO, "video")
    return None


def _looks_like_headless_dicom(head: bytes) -> bool:
    """A DICOM stream without the 128-byte preamble, or without file meta at all.

    The first element is then a group 0002 or 0008 tag, little or big endian, either
    followed by a VR (explicit) or by a plausible 32-bit length (implicit). See PS3.10 7.1.
    """
    if len(head) < 12:
        return False
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0200:
            continue
        if head[4:6] in _DICOM_VRS:
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if length < 1024:
            return True
    return False


def _is_binary_stl(head: bytes, size: int | None) -> bool:
    if len(head) < 84 or size is None:
        return False
    (triangles,) = struct.unpack("<I", head[80:84])
    return size == 84 + 50 * int(triangles)


def sniff(head: bytes, size: int | None = None) -> Sniffed:  # noqa: C901 - a flat table of magics
    """Identify a file from its first bytes (and total size, which binary STL needs)."""
    # First: a Part-10 preamble may itself hold another format's magic (TIFF/DICOM dual files).
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Sniffed("application/dicom", FileType.XRAY, "dicom")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image/jpeg", FileType.PHOTO, "jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image/png", FileType.PHOTO, "png")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed("image/tiff", FileType.PHOTO, "tiff")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image/webp", FileType.PHOTO, "webp")
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return Sniffed("image/jp2", FileType.PHOTO, "jp2")
    if head.startswith(b"\xff\x4f\xff\x51"):
        return Sniffed("image/j2c", FileType.PHOTO, "j2c")
    if (boxed := _ftyp(head)) is not None:
        return boxed
    if head.startswith(b"%PDF-"):
        return Sniffed("application/pdf", FileType.DOCUMENT, "pdf")
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        return Sniffed("model/ply", FileType.SCAN_3D, "ply")
    if _is_binary_stl(head, size):
        return Sniffed("model/stl", FileType.SCAN_3D, "stl")
    if head.lstrip().lower().startswith(b"solid"):
        return Sniffed("model/stl", FileType.SCAN_3D, "stl")
    if _looks_like_headless_dicom(head):
        return Sniffed("application/dicom", FileType.XRAY, "dicom")
    lines = [ln for ln in head.splitlines()[:-1] if ln.strip()]
    if lines and all(_OBJ_LINE.match(ln) for ln in lines[:40]) and any(ln.startswith(b"v ") for ln in lines):
        return Sniffed("model/obj", FileType.SCAN_3D, "obj")
    return UNKNOWN
