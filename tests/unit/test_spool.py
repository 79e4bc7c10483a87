"""The DICOM spool: durable before Success, a restart keeps what was acknowledged and
clears partial writes, a full spool refuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orca_imaging.errors import SpoolFullError
from orca_imaging.spool import Arrival, Spool

if TYPE_CHECKING:
    from pathlib import Path


def arrival(n: int) -> Arrival:
    return Arrival(
        clinic_id="clinic-a",
        image_id=f"img_{n:04d}",
        calling_ae="PANO1",
        source_address="10.0.0.5",
        received_at="2026-11-22T10:00:00+00:00",
        sop_instance_uid=f"1.2.3.{n}",
    )


def test_an_object_is_ready_only_once_whole_and_a_restart_clears_partial_writes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spooled = spool.put(b"DICM-bytes", arrival(1))
    assert spooled.path.read_bytes() == b"DICM-bytes"
    (tmp_path / "incoming" / "img_9999.partial").write_bytes(b"half")  # a write that died
    again = Spool(tmp_path, max_bytes=10_000)  # the next task
    assert [s.arrival for s in again.waiting()] == [arrival(1)]
    assert list((tmp_path / "incoming").iterdir()) == []


def test_a_full_spool_refuses_rather_than_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=15)
    spool.put(b"0123456789", arrival(1))
    with pytest.raises(SpoolFullError):
        spool.put(b"0123456789", arrival(2))
    assert [s.arrival.image_id for s in spool.waiting()] == ["img_0001"]
