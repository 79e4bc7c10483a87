"""One baseline JPEG encoded in horizontal bands on every core, joined with restart markers.

A restart marker (ISO/IEC 10918-1, F.1.2.3) ends a run of MCUs: the coder pads to a whole
byte and every DC prediction starts again from zero, exactly as at the start of a scan. So
bands whose height is a whole number of MCU rows, each encoded as a JPEG of its own with the
same quality (and so the same quantisation and standard Huffman tables), hold between their
SOS header and EOI exactly the data one encoder would write between restart markers. Their
scans joined with RSTn between them, under one header giving the full height and the restart
interval, are byte for byte what Pillow writes for the whole picture with
`restart_marker_blocks` set to that interval (a test holds it to that).

Why: Pillow's JPEG encoder is one thread, and a 24 MP full-size copy's turn, colour
conversion and encode are ~100 ms in a row after its decode. Pillow lets go of the GIL while
it turns, converts colour and encodes into a file, so bands go through all three on every
core at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, NamedTuple

from orca_imaging.containers import segments_to_scan

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_BAND_WORKERS = ThreadPoolExecutor(CORES, thread_name_prefix="jpeg-band")
# Below this a picture is one band: joining would cost more than the second core saves.
MIN_BANDED_PIXELS = 4_000_000
# About this many pixels a band: a 24 MP photo is 8 bands, so a core that finishes early
# takes another, and each band in flight holds its rows twice (cut, then turned) in ~24 MB.
# Measured on the turned 24 MP JPEG with two cores: 4 bands 157-168 ms and 249 MB peak,
# 8 bands 143-147 ms and 204 MB, 12 bands 146-153 ms and 190 MB.
BAND_PIXELS = 3_000_000
# The tallest MCU (4:2:0 sampling): a band of a multiple of this is whole MCU rows under any
# sampling Pillow writes.
_MCU_ROWS = 16
_MAX_RESTART_INTERVAL = 0xFFFF  # the DRI segment holds it in 16 bits


def encode_in_bands(
    rows: Callable[[int, int], Image.Image],
    width: int,
    height: int,
    *,
    save: Callable[[Image.Image, IO[bytes]], None],
    bands: int | None = None,
) -> bytes:
    """The JPEG of a `width` x `height` picture whose rows `rows(top, bottom)` makes.

    `save` writes one band's JPEG (baseline, the same options for every band). `bands`
    defaults to one per `BAND_PIXELS` (at least one per core) for a large picture on more
    than one core, and one otherwise. Bands that do not join (a progressive or optimised
    coding, or headers that differ) fall back to one encode.
    """
    if bands is None:
        large = CORES > 1 and width * height >= MIN_BANDED_PIXELS
        bands = max(CORES, -(-width * height // BAND_PIXELS)) if large else 1
    band_rows = _band_rows(width, height, bands)
    if band_rows >= height:
        return encoded(rows(0, height), save)
    spans = [(top, min(height, top + band_rows)) for top in range(0, height, band_rows)]
    parts = [
        future.result()
        for future in [_BAND_WORKERS.submit(lambda s: encoded(rows(*s), save), span) for span in spans]
    ]
    joined = _joined(parts, height, band_rows)
    return joined if joined is not None else encoded(rows(0, height), save)


def _band_rows(width: int, height: int, bands: int) -> int:
    """Rows per band: whole MCU rows, and few enough MCUs for a restart interval (counted at
    8x8 MCUs, the smallest, which makes the most: a very wide picture gets more bands)."""
    if bands <= 1:
        return height
    wanted = -(-height // (bands * _MCU_ROWS)) * _MCU_ROWS
    most = _MAX_RESTART_INTERVAL // -(-width // 8) * 8 // _MCU_ROWS * _MCU_ROWS
    return max(_MCU_ROWS, min(wanted, most))


def encoded(image: Image.Image, save: Callable[[Image.Image, IO[bytes]], None]) -> bytes:
    """What `save` writes for `image`, written into a file held in memory (see `_in_memory_file`)."""
    with _in_memory_file() as out:
        save(image, out)
        out.seek(0)
        return out.read()


def _in_memory_file() -> IO[bytes]:
    """A real file held in memory: Pillow holds the GIL while it encodes into a BytesIO but
    lets go of it while it encodes into a file (measured: two 24 MP encodes in two threads
    took 60 ms into files and 120 ms into BytesIO, against 50 ms for one)."""
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):  # a sandbox that forbids it: a temporary file does
            return os.fdopen(os.memfd_create("jpeg"), "w+b")
    return tempfile.TemporaryFile()


_SOF_BASELINE, _DRI, _RST0, _EOI = 0xC0, 0xDD, 0xD0, b"\xff\xd9"
# Every other start-of-frame marker: extended, progressive, lossless, arithmetic coding.
_OTHER_SOF = set(range(0xC1, 0xD0)) - {0xC4, 0xC8, 0xCC}


class _Coded(NamedTuple):
    header: bytes  # SOI through the SOS segment
    sof_at: int
    sos_at: int
    scan: bytes  # the entropy-coded data, without EOI

    def without_height(self) -> bytes:
        return self.header[: self.sof_at + 5] + self.header[self.sof_at + 7 :]


def _joined(parts: list[bytes], height: int, band_rows: int) -> bytes | None:
    """The bands' scans under one header, or None where they are not bands of one JPEG."""
    bands = [band for band in map(_coded, parts) if band is not None]
    first = bands[0] if len(bands) == len(parts) else None
    if first is None or any(band.without_height() != first.without_height() for band in bands[1:]):
        return None
    header, sof_at, sos_at = first.header, first.sof_at, first.sos_at
    mcu_width, mcu_height = _mcu(header, sof_at)
    width = int.from_bytes(header[sof_at + 7 : sof_at + 9], "big")
    interval = -(-width // mcu_width) * (band_rows // mcu_height)
    if band_rows % mcu_height or interval > _MAX_RESTART_INTERVAL:
        return None
    out = bytearray(header[: sof_at + 5]) + height.to_bytes(2, "big") + header[sof_at + 7 : sos_at]
    out += bytes((0xFF, _DRI, 0, 4)) + interval.to_bytes(2, "big") + header[sos_at:] + first.scan
    for index, band in enumerate(bands[1:]):
        out += bytes((0xFF, _RST0 + index % 8)) + band.scan
    return bytes(out + _EOI)


def _coded(jpeg: bytes) -> _Coded | None:
    """A single-scan baseline JPEG's parts; None for anything else (another coding process,
    or a restart interval of its own)."""
    segments = segments_to_scan(jpeg)
    if segments is None or not jpeg.endswith(_EOI):
        return None
    markers = {marker for marker, _, _ in segments}
    if _SOF_BASELINE not in markers or markers & _OTHER_SOF or _DRI in markers:
        return None
    sof_at = next(start for marker, start, _ in segments if marker == _SOF_BASELINE)
    _, sos_at, scan_at = segments[-1]
    return _Coded(jpeg[:scan_at], sof_at, sos_at, jpeg[scan_at:-2])


def _mcu(header: bytes, sof_at: int) -> tuple[int, int]:
    """The MCU's width and height in pixels: 8x8 for one component (a non-interleaved scan),
    else from the largest sampling factors in SOF."""
    components = header[sof_at + 9]
    if components == 1:
        return 8, 8
    factors = [header[sof_at + 11 + 3 * i] for i in range(components)]
    return 8 * max(f >> 4 for f in factors), 8 * max(f & 0x0F for f in factors)
