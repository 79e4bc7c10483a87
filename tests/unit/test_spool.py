"""The DICOM spool: durable before Success, a restart keeps what was acknowledged and
clears partial writes, a full spool refuses."""

from __future__ import annotations

import errno
import os
import zlib
from typing import TYPE_CHECKING

import pytest

from orca_imaging import spool as spool_module
from orca_imaging.errors import SpooledObjectDamagedError, SpoolFullError
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


def test_an_object_written_as_it_arrives_is_kept_whole_after_its_arrival(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10 << 20)
    receiving = spool.receive()
    pieces = [os.urandom(128 * 1024) for _ in range(20)]  # past the point where write-back starts
    for piece in pieces:
        receiving.write(piece)
    assert spool.depth() == 0 and len(partial_writes(tmp_path)) == 1  # not ready before `keep`
    receiving.keep(arrival(1))
    receiving.discard()  # what pynetdicom does after every store: nothing, once kept

    (kept,) = spool.waiting()
    assert kept.arrival == arrival(1) and kept.object_bytes() == b"".join(pieces)
    assert partial_writes(tmp_path) == []


def test_the_disk_starts_writing_as_the_object_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what came after the last full step, and the header, are left to the fsync."""
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(
        spool_module, "_start_write_back", lambda _fd, offset, length: started.append((offset, length))
    )
    step, slot = spool_module._WRITE_BACK_EVERY_BYTES, spool_module._HEADER_SLOT_BYTES
    receiving = Spool(tmp_path, max_bytes=10 << 20).receive()
    for size in (step // 2, step // 2 + 10, step - 20, 100):  # PDUs as a device might cut them
        receiving.write(os.urandom(size))
    assert started == [(slot, step + 10), (slot + step + 10, step + 80)]
    receiving.keep(arrival(1))


def test_an_object_discarded_or_whose_write_failed_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=10 << 20)
    dropped = spool.receive()
    dropped.write(b"half an object")
    dropped.discard()  # the association ended before it was complete

    failing = spool.receive()
    failing.write(b"the start")

    def disk_full(descriptor: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_full)
    failing.write(b"the rest")  # remembered, not raised: the sender is still sending
    monkeypatch.undo()
    failing.write(b"never written")
    with pytest.raises(SpoolFullError, match="could not be written: No space left on device"):
        failing.keep(arrival(2))
    assert list(spool.waiting()) == [] and partial_writes(tmp_path) == []


def test_a_spool_already_full_takes_nothing_more_of_an_object(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=15)
    spool.put(b"0123456789", arrival(1))
    receiving = spool.receive()
    receiving.write(b"x" * 1000)
    assert partial_writes(tmp_path) == []  # not even a file made for it
    with pytest.raises(SpoolFullError, match="full"):
        receiving.keep(arrival(2))
    assert partial_writes(tmp_path) == []


def test_a_file_spooled_before_the_header_slot_is_still_read(tmp_path: Path) -> None:
    """An unpadded arrival line, as the task before this version wrote it, on the spool it left."""
    spool = Spool(tmp_path, max_bytes=10_000)
    line = b'orca-spool/1 {"clinic_id": "clinic-a", "image_id": "img_0001", "calling_ae": "PANO1", '
    line += b'"source_address": "10.0.0.5", "received_at": "2026-11-22T10:00:00+00:00", '
    line += b'"sop_instance_uid": "1.2.3.1"}\n'
    (spool.ready / "img_0001.spooled").write_bytes(line + b"DICM-bytes\n")

    (left,) = spool.waiting()
    assert left.arrival == arrival(1) and left.object_bytes() == b"DICM-bytes\n"


class CrashBeforeRename(Exception):
    """Stands for a crash after a store's fsync that undid (or came before) its rename."""


def durable_but_not_renamed(spool: Spool, data: bytes, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object kept up to its rename, which never lands: as after a crash that undid a
    rename the directory's fsync no longer makes durable before the Success."""
    receiving = spool.receive()
    receiving.write(data)
    with monkeypatch.context() as patched:

        def crash(*_: object) -> None:
            raise CrashBeforeRename

        patched.setattr(spool_module.Path, "replace", crash)
        with pytest.raises(CrashBeforeRename):
            receiving.keep(arrival(n))


def test_a_whole_object_whose_rename_a_crash_undid_is_recovered_by_the_next_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = Spool(tmp_path, max_bytes=1 << 20)
    whole = os.urandom(300_000)  # across several read chunks' worth of the CRC
    durable_but_not_renamed(crashed, whole, 1, monkeypatch)
    crashed.close()

    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [(s.arrival, s.object_bytes()) for s in again.waiting()] == [(arrival(1), whole)]
    assert partial_writes(tmp_path) == []


DAMAGES = ["cut short", "a byte changed", "grown"]


def spoil(path: Path, damage: str) -> None:
    """Damage a spooled file's object as a disk or a crash might."""
    data = bytearray(path.read_bytes())
    if damage == "cut short":
        del data[-100:]
    elif damage == "a byte changed":
        data[-100] ^= 0xFF
    else:
        data += b"\0" * 100
    path.write_bytes(data)


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_dead_tasks_file_that_its_header_does_not_prove_whole_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A crash can leave a file whose header was written but whose bytes were not all on
    disk: the length and CRC-32 in its header say so, and it was never acknowledged."""
    crashed = Spool(tmp_path, max_bytes=1 << 20)
    durable_but_not_renamed(crashed, b"DICM" + bytes(range(256)) * 100, 1, monkeypatch)
    (left,) = crashed.incoming.glob("*.partial")
    spoil(left, damage)
    crashed.close()

    again = Spool(tmp_path, max_bytes=1 << 20)
    assert list(again.waiting()) == []
    assert partial_writes(tmp_path) == []


def test_a_kept_objects_header_holds_its_length_and_crc(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    receiving = spool.receive(b"DICM-")
    receiving.write(b"bytes")
    spooled = receiving.keep(arrival(1))
    header = spooled.path.read_bytes()[: spooled.header_bytes]
    assert spool_module._read_header(header) == (arrival(1), 10, zlib.crc32(b"DICM-bytes"))  # noqa: SLF001


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_ready_object_that_no_longer_matches_its_crc_is_never_read_as_the_devices(
    tmp_path: Path, damage: str
) -> None:
    """Acknowledged, then damaged on disk: reading it says so, rather than giving S3 bytes
    the device never sent."""
    spool = Spool(tmp_path, max_bytes=1 << 20)
    kept = spool.put(b"DICM" + bytes(range(256)) * 100, arrival(1))
    spoil(kept.path, damage)

    (waiting,) = spool.waiting()
    with pytest.raises(SpooledObjectDamagedError, match="img_0001"):
        waiting.object_bytes()
