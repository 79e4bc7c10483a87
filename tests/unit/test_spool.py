"""The DICOM spool: durable before Success, a restart keeps what was acknowledged and
clears partial writes, a full spool refuses."""

from __future__ import annotations

import os
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


def partial_writes(root: Path) -> list[str]:
    """What lies in any task's incoming folder, lock files aside."""
    return sorted(p.name for p in (root / "incoming").rglob("*") if p.is_file() and p.name != ".lock")


def test_an_object_is_ready_only_once_whole_and_a_dead_tasks_partial_writes_are_cleared(
    tmp_path: Path,
) -> None:
    first = Spool(tmp_path, max_bytes=10_000)
    spooled = first.put(b"DICM-bytes", arrival(1))
    assert spooled.object_bytes() == b"DICM-bytes"
    # One file per object, which holds its arrival: nothing in ready/ can lack the other half.
    assert [p.name for p in first.ready.iterdir()] == ["img_0001.spooled"]
    (first.incoming / "img_9999.partial").write_bytes(b"half")  # a write that died with its task
    first.close()  # the task is gone: its lock with it
    again = Spool(tmp_path, max_bytes=10_000)  # the next task
    assert [(s.arrival, s.object_bytes()) for s in again.waiting()] == [(arrival(1), b"DICM-bytes")]
    assert partial_writes(tmp_path) == []
    assert not first.incoming.exists()


def test_a_live_tasks_partial_writes_are_left_alone(tmp_path: Path) -> None:
    """Tasks share the spool on EFS: one starting must not clear another's writes in flight."""
    running = Spool(tmp_path, max_bytes=10_000)
    (running.incoming / "img_0001.inflight").write_bytes(b"half, still arriving")
    Spool(tmp_path, max_bytes=10_000)  # a second task starts beside it
    assert partial_writes(tmp_path) == ["img_0001.inflight"]


def test_a_full_spool_refuses_rather_than_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=15)
    spool.put(b"0123456789", arrival(1))
    with pytest.raises(SpoolFullError):
        spool.put(b"0123456789", arrival(2))
    assert [s.arrival.image_id for s in spool.waiting()] == ["img_0001"]


def test_a_file_whose_arrival_cannot_be_read_is_set_aside_not_retried_before_the_rest(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    damaged = spool.ready / "img_0000.spooled"
    damaged.write_bytes(b"orca-spool/1 {not json\nDICM")  # the oldest: first in every pass
    os.utime(damaged, ns=(0, 0))
    spool.put(b"DICM-bytes", arrival(1))

    assert [(s.arrival, s.object_bytes()) for s in spool.waiting()] == [(arrival(1), b"DICM-bytes")]
    assert [p.name for p in spool.damaged.iterdir()] == ["img_0000.spooled"]  # kept, for an operator
    assert (spool.damaged / "img_0000.spooled").read_bytes() == b"orca-spool/1 {not json\nDICM"
    assert spool.depth() == 1
