"""The DICOM service's spool: where a received object is made durable before the sender is
told Success, and where the drainer finds it.

An object is written to the task's own folder in `incoming/` under a temporary name, as
one file, while it arrives (`Receiving`): a slot for a header line, then the object's bytes
as received. Once it is complete, the line saying who sent it and when (its `Arrival`, as
JSON, with the object's length and CRC-32, counted as it arrived) fills the slot, the file
is fsynced and renamed into `ready/`. After `keep` returns, a crash or a killed task loses
nothing, a half-written object is never in `ready/`, and no object is ever there without
its arrival.

The directory is not fsynced before the Success: a crash may undo the rename, but the
file itself is durable in the task's folder, and its header proves it whole, so the next
task to start moves it into `ready/` (`_recover_or_remove`); a file whose length or CRC
does not match its header, or that has none yet, was never acknowledged and is removed. On
ext4 each directory fsync was a journal commit of its own, and four devices' stores queued
behind each other's: in eight alternating rounds, four CT senders' rate against one's went
from 1.57x to 1.66x without it, the CRC included. The CRC is zlib-ng's, the same CRC-32 as
zlib's: CPython's zlib took ~0.2 ms of CPU per MB, 5% of a receiver's CPU under four CT
senders (perf), and zlib-ng's, with the CPU's carry-less multiply, ~0.01. One file, not
the object and a sidecar, saves a create, an fsync and a rename per store (about 1 ms of
the 3 a CT slice's store took here); writing as it arrives lets the disk start long before
the fsync (for an 8 MB radiograph here the fsync fell from ~6.5 to ~3 ms even when written
all at once; see `_WRITE_BACK_EVERY_BYTES`). Storage that outlives the task (EFS in AWS, a
directory locally) lets the next task drain what the last one left.

Several tasks share one spool (the service runs two or more, and a deployment starts new
ones beside the old). Each holds an advisory lock on its incoming folder (on EFS an NFS
lock, released when the task dies). What is left in a folder whose lock can be taken is a
dead task's: whole objects it had made durable go on to `ready/`, partial writes (the
sender was never told they were kept) are removed. A live task's folder is left alone.
Every task's drainer reads all of `ready/`; an object another one sent first is simply
skipped.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from zlib_ng import zlib_ng

from orca_imaging.errors import SpooledObjectDamagedError, SpoolFullError
from orca_imaging.ids import new_image_id
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Iterator

_LOCK = ".lock"
# How stale the spool's size may be when a store is checked against the limit: listing
# thousands of waiting objects on every store would cost more than the store.
_USED_BYTES_MAX_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class Arrival:
    """Who sent an object, and when: ids and network facts only, never patient data."""

    clinic_id: str
    image_id: str
    calling_ae: str
    source_address: str
    received_at: str  # ISO 8601, UTC
    sop_instance_uid: str

    @classmethod
    def now(cls, *, clinic_id: str, calling_ae: str, source_address: str, sop_instance_uid: str) -> Arrival:
        """An object arriving now, as a new image of the clinic."""
        return cls(
            clinic_id=clinic_id,
            image_id=new_image_id(),
            calling_ae=calling_ae,
            source_address=source_address,
            received_at=datetime.now(UTC).isoformat(),
            sop_instance_uid=sop_instance_uid,
        )


@dataclass(frozen=True)
class Spooled:
    path: Path
    arrival: Arrival
    header_bytes: int  # the arrival line before the object's own bytes
    # As counted while the object arrived; None in files from before they were kept.
    length: int | None = None
    crc32: int | None = None

    def object_bytes(self) -> bytes:
        """The object exactly as received: checked against its length and CRC-32, so that
        what goes to S3 is what the device sent (botocore's own CRC then covers the way
        there). SpooledObjectDamagedError when it no longer matches; FileNotFoundError once
        another task sent it."""
        with self.path.open("rb") as f:
            f.seek(self.header_bytes)
            body = f.read()
        if self.crc32 is not None and (len(body), zlib_ng.crc32(body)) != (self.length, self.crc32):
            raise SpooledObjectDamagedError(
                f"spooled object {self.arrival.image_id} does not match its CRC-32"
            )
        return body


_SUFFIX = ".spooled"
# The first line of a spooled file: this tag, then the arrival as JSON (which holds no raw
# newline), then a newline. The tag names the format, should it ever change.
_HEADER_TAG = b"orca-spool/1 "
# Beside the arrival's fields in the header: what proves the object whole after a crash.
_OBJECT_BYTES, _CRC32 = "object_bytes", "crc32"
# The line's longest. It is now padded to exactly this: a slot at the file's start, so the
# object's bytes can be written after it before the arrival is known. Files from earlier
# versions have it unpadded.
_HEADER_SLOT_BYTES = 4096
# While an object arrives, the disk is asked to start writing every this many bytes. Each
# PDU's worth (128 KiB) shortened a CT slice's durable tail by ~0.3 ms, but made four
# senders of 8 MB radiographs a quarter slower (82-96 -> 57-75 files/s, alternating runs):
# this disk takes a few large writes far better than many small ones.
_WRITE_BACK_EVERY_BYTES = 1 << 20


class Spool:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.ready = root / "ready"
        self.damaged = root / "damaged"
        self.max_bytes = max_bytes
        incoming = root / "incoming"
        for folder in (incoming, self.ready, self.damaged):
            folder.mkdir(parents=True, exist_ok=True)
        # Made and locked under a dotted name, then renamed: no other task ever sees this
        # folder unlocked and takes it for a dead task's.
        name = uuid.uuid4().hex
        (incoming / f".{name}").mkdir()
        self._lock = _try_lock(incoming / f".{name}" / _LOCK)
        (incoming / f".{name}").rename(incoming / name)
        self.incoming = incoming / name
        _clear_abandoned(incoming, keep=self.incoming, ready=self.ready)
        self._used: tuple[float, int] | None = None

    def close(self) -> None:
        """Let the lock go: from now on, whatever is left in this task's folder is clearable."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def depth(self) -> int:
        """Objects acknowledged to a device and not yet in S3."""
        return sum(1 for _ in self.ready.glob(f"*{_SUFFIX}"))

    def used_bytes(self) -> int:
        """Bytes waiting in `ready/` (every task's), at most a second old."""
        now = time.monotonic()
        if self._used is None or now - self._used[0] > _USED_BYTES_MAX_AGE_SECONDS:
            self._used = (now, _folder_bytes(self.ready))
        return self._used[1]

    def count_used(self, size: int) -> None:
        """An object just kept: counted until the next look at the folder."""
        if self._used is not None:
            self._used = (self._used[0], self._used[1] + size)

    def put(self, encoded: bytes, arrival: Arrival) -> Spooled:
        """Make one object durable; SpoolFullError when it cannot be kept."""
        return self.receive(encoded).keep(arrival)

    def receive(self, arrived: bytes = b"") -> Receiving:
        """A new object, starting with what has `arrived` of it, written as the rest arrives
        and made durable by `keep`."""
        full = SpoolFullError("the spool is full") if self.used_bytes() >= self.max_bytes else None
        receiving = Receiving(self, self.incoming / f"{uuid.uuid4().hex}.partial", refused=full)
        receiving.write(arrived)
        return receiving

    def waiting(self) -> Iterator[Spooled]:
        """Objects ready to drain, oldest first."""
        found = []
        with os.scandir(self.ready) as entries:
            for entry in entries:
                if entry.name.endswith(_SUFFIX):
                    try:
                        found.append((entry.stat().st_mtime_ns, Path(entry.path)))
                    except FileNotFoundError:  # another task's drainer sent it meanwhile
                        continue
        for _, path in sorted(found):
            try:
                with path.open("rb") as f:
                    header = f.readline(_HEADER_SLOT_BYTES)
            except FileNotFoundError:
                continue
            try:
                arrival, length, crc32 = _read_header(header)
            except (ValueError, TypeError):
                self.set_aside(path, "its arrival cannot be read")
                continue
            yield Spooled(path, arrival, len(header), length, crc32)

    def set_aside(self, path: Path, reason: str) -> None:
        """A damaged file (its arrival unreadable, its object not matching its CRC-32): kept
        in `damaged/` for an operator, not retried ahead of every object behind it."""
        try:
            path.replace(self.damaged / path.name)
        except FileNotFoundError:  # another task's drainer set it aside first
            return
        metrics.add_metric(name="DicomSpoolDamaged", unit="Count", value=1)
        logger.error("spooled file damaged: set aside", extra={"spooled_file": path.name, "reason": reason})

    def remove(self, spooled: Spooled) -> None:
        """Only once S3 has the object. Not fsynced: a removal lost in a crash only sends the
        object again, and its conditional write finds it already there."""
        spooled.path.unlink(missing_ok=True)


class Receiving:
    """One object on its way into the spool: its bytes are written to the task's incoming
    folder as they arrive, after a slot kept for the header, so that only the fsync is left
    when the last of them comes in, and the disk has been writing since the first.

    `keep` writes the arrival into the slot and makes the whole durable as `Spool.put` says;
    `discard` drops it. A write that fails (a full disk) is remembered, not raised: the
    sender is still sending, and is told when the object is complete."""

    def __init__(self, spool: Spool, path: Path, *, refused: SpoolFullError | None = None) -> None:
        self._spool = spool
        self.path = path
        self._failure = refused
        # Refused from the start (a full spool): nothing is created, for a store that a device
        # retrying against a backlog would otherwise make and unlink again and again.
        self._descriptor = None if refused else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = self._written_back = _HEADER_SLOT_BYTES  # written after the header's slot
        self._crc = 0  # of the object's bytes so far
        if self._descriptor is not None:
            os.lseek(self._descriptor, _HEADER_SLOT_BYTES, os.SEEK_SET)
        self._kept = False

    def refuse(self, failure: SpoolFullError) -> None:
        """Take nothing more; `keep` raises `failure`."""
        self._failure = self._failure or failure

    def write(self, data: bytes | memoryview) -> None:
        if self._failure is not None or self._descriptor is None:
            return
        try:
            view = memoryview(data)
            self._crc = zlib_ng.crc32(view, self._crc)
            while view:  # a regular file takes all at once but for a full disk or a signal
                count = os.write(self._descriptor, view)
                view, self._size = view[count:], self._size + count
        except OSError as e:
            self.refuse(SpoolFullError(f"the object could not be written: {e.strerror}"))
            return
        if self._size - self._written_back >= _WRITE_BACK_EVERY_BYTES:
            _start_write_back(self._descriptor, self._written_back, self._size - self._written_back)
            self._written_back = self._size

    def keep(self, arrival: Arrival) -> Spooled:
        """Make the object durable under its arrival; SpoolFullError when it cannot be kept."""
        spool, ready = self._spool, self._spool.ready / f"{arrival.image_id}{_SUFFIX}"
        length = self._size - _HEADER_SLOT_BYTES  # the object's, after the header's slot
        if spool.used_bytes() + length > spool.max_bytes:
            self.refuse(SpoolFullError("the spool is full"))
        try:
            if self._failure is not None:
                raise self._failure
            if self._descriptor is None:
                raise SpoolFullError("the object was discarded")
            os.pwrite(self._descriptor, _header(arrival, length, self._crc), 0)
            os.fsync(self._descriptor)
            self._close()
            self.path.replace(ready)  # not fsynced: the next task recovers it (see the module)
            self._kept = True
        except OSError as e:
            self.discard()
            raise SpoolFullError(f"the object could not be made durable: {e.strerror}") from e
        except SpoolFullError:
            self.discard()
            raise
        spool.count_used(self._size)
        return Spooled(ready, arrival, _HEADER_SLOT_BYTES, length, self._crc)

    def discard(self) -> None:
        """Drop what was written (nothing, once kept)."""
        self._close()
        if not self._kept:
            self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _header(arrival: Arrival, object_bytes: int, crc32: int) -> bytes:
    """The arrival line, with the object's length and CRC-32, padded with spaces (which JSON
    ignores) to fill the header slot."""
    fields = {**asdict(arrival), _OBJECT_BYTES: object_bytes, _CRC32: crc32}
    line = _HEADER_TAG + json.dumps(fields).encode()
    if len(line) >= _HEADER_SLOT_BYTES:
        raise SpoolFullError("the arrival does not fit its header slot")
    return line.ljust(_HEADER_SLOT_BYTES - 1) + b"\n"


def _read_header(header: bytes) -> tuple[Arrival, int | None, int | None]:
    """The arrival, the object's length and its CRC-32 (None in files from before they were
    written); ValueError or TypeError when the line is not a header."""
    if not header.startswith(_HEADER_TAG) or not header.endswith(b"\n"):
        raise ValueError("not a spool header")
    fields = json.loads(header.removeprefix(_HEADER_TAG))
    object_bytes, crc32 = fields.pop(_OBJECT_BYTES, None), fields.pop(_CRC32, None)
    return Arrival(**fields), object_bytes, crc32


def _try_lock(path: Path) -> TextIO | None:
    """The lock file, held exclusively; None when another live task holds it."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _clear_abandoned(incoming: Path, *, keep: Path, ready: Path) -> None:
    """What tasks that are gone left: folders whose lock can be taken, and files from before
    there were per-task folders (partial writes then). Dotted folders are being made; left
    alone. Our own folder is skipped by name: over NFS a lock is the process's, so this
    process could take its own lock a second time."""
    for entry in incoming.iterdir():
        if entry.name.startswith(".") or entry == keep:
            continue
        if not entry.is_dir():
            entry.unlink(missing_ok=True)
            continue
        lock = _try_lock(entry / _LOCK)
        if lock is None:
            continue  # its task is alive
        try:
            recovered = sum(_recover_or_remove(path, ready) for path in entry.glob("*.partial"))
            if recovered:
                _fsync_directory(ready)  # before the folder they were in is gone
                logger.info("whole objects of a stopped task recovered", extra={"objects": recovered})
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            lock.close()


def _recover_or_remove(path: Path, ready: Path) -> bool:
    """A dead task's file: moved into `ready/` when its header proves it whole (a store made
    durable whose rename a crash undid, or that the task died before renaming: its device
    may not have been told, and sends it again, which ingest finds already stored); else
    removed, as a partial write. True when moved."""
    try:
        with path.open("rb") as f:
            header = f.readline(_HEADER_SLOT_BYTES)
        arrival, length, crc32 = _read_header(header)
        Spooled(path, arrival, len(header), length, crc32).object_bytes()  # checks the CRC
        whole = crc32 is not None  # a header without one proves nothing
    except (OSError, ValueError, TypeError, SpooledObjectDamagedError):
        whole = False
    if whole:
        path.replace(ready / f"{arrival.image_id}{_SUFFIX}")
    else:
        path.unlink(missing_ok=True)
    return whole


def _folder_bytes(folder: Path) -> int:
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                total += entry.stat().st_size
            except FileNotFoundError:  # drained while counting
                continue
    return total


def _start_write_back(descriptor: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk, without waiting for it
    (sync_file_range(2) with SYNC_FILE_RANGE_WRITE, Linux only; Python has no binding)."""
    if _sync_file_range is not None:
        _sync_file_range(descriptor, offset, length, _SYNC_FILE_RANGE_WRITE)


def _linux_sync_file_range() -> Any:
    function = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = _linux_sync_file_range()


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
