"""Where each photo container says it ends, so a file cut short is caught before decoding.

Decoders make a missing end up: libjpeg invents an EOI, Pillow's PNG reader never needs
IEND, libheif fills tiles it has no data for with one flat colour. So an upload that lost
only its last bytes could decode without a word. Each container states its own end (a
marker, a closing chunk, its boxes' sizes), and that is what is checked here.
"""

from __future__ import annotations

_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"  # the chunk type and its CRC, which never vary
_J2K_START = b"\xff\x4f\xff\x51"  # a bare JPEG 2000 codestream: SOC, then SIZ


def segments_to_scan(data: bytes) -> list[tuple[int, int, int]] | None:
    """(marker, start, end) of each JPEG marker segment through the first SOS (ISO/IEC
    10918-1, B.1.1); None for a stream that cannot be walked that far."""
    if not data.startswith(b"\xff\xd8"):
        return None
    found, at = [], 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        found.append((marker, at, end))
        if marker == 0xDA:  # start of scan: entropy-coded data follows, up to EOI
            return found
        at = end
    return None


def cut_short(data: bytes) -> bool:
    """Whether a photo ends before its container (told by its signature) says it does.
    False where the container cannot tell: the decoder then has the last word."""
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if data[:4] == b"RIFF":
        return _riff(data)
    if data.startswith(_J2K_START):
        return not data.endswith(_JPEG_EOI)  # a bare JPEG 2000 codestream ends with EOC
    if data[4:8] in (b"ftyp", b"jP  "):
        return _boxes(data)
    return False


def _jpeg(data: bytes) -> bool:
    """No EOI after the first scan (what follows EOI, as some phones append, is no cut)."""
    segments = segments_to_scan(data)
    return segments is not None and data.find(_JPEG_EOI, segments[-1][1]) < 0


def _png(data: bytes) -> bool:
    return data.find(_PNG_IEND, 8) < 0


def _riff(data: bytes) -> bool:
    """WebP: the RIFF header states the file's length (less its first 8 bytes)."""
    return len(data) < 8 + int.from_bytes(data[4:8], "little")


def _boxes(data: bytes) -> bool:
    """ISO BMFF (HEIF, AVIF) and JP2: a top-level box's stated size runs past the end of the
    file (ISO/IEC 14496-12, 4.2; ISO/IEC 15444-1, I.4)."""
    at = 0
    while at + 8 <= len(data):
        size, header = int.from_bytes(data[at : at + 4], "big"), 8
        if size == 1:  # a 64-bit size follows the type
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:  # the last box, running to the end of the file: no size to hold it to
            return False
        if size < header:
            return False  # not a structure this can follow
        at += size
    return at > len(data)
