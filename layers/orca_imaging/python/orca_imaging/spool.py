"""The DICOM service's spool: where a received object is made durable before the sender is
told Success, and where the drainer finds it.

An object is written to `incoming/` under a temporary name, fsynced, then renamed into
`ready/` with its sidecar (who sent it, when) beside it, and the directory fsynced: after
`put` returns, a crash or a killed task loses nothing, and a half-written object is never
in `ready/`. Storage that outlives the task (EFS in AWS, a directory locally) lets the next
task drain what the last one left. Leftovers in `incoming/` are partial writes of
associations that died before Success: the sender was never told the object was kept, so
they are removed at start.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from orca_imaging.errors import SpoolFullError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True)
class Arrival:
    """Who sent an object, and when: ids and network facts only, never patient data."""

    clinic_id: str
    image_id: str
    calling_ae: str
    source_address: str
    received_at: str  # ISO 8601, UTC
    sop_instance_uid: str


@dataclass(frozen=True)
class Spooled:
    path: Path
    arrival: Arrival

    @property
    def size(self) -> int:
        return self.path.stat().st_size


class Spool:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.ready = root / "ready"
        self.max_bytes = max_bytes
        for folder in (self.incoming, self.ready):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.incoming)  # partial writes nobody was told Success for
        self.incoming.mkdir()

    def depth(self) -> int:
        """Objects acknowledged to a device and not yet in S3."""
        return sum(1 for _ in self.ready.glob("*.dcm"))

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.ready.iterdir() if p.is_file())

    def put(self, encoded: bytes, arrival: Arrival) -> Spooled:
        """Make one object durable; SpoolFullError when it cannot be kept."""
        if self.used_bytes() + len(encoded) > self.max_bytes:
            raise SpoolFullError("the spool is full")
        name = arrival.image_id
        partial = self.incoming / f"{name}.{uuid.uuid4().hex}"
        try:
            _write_durably(partial.with_suffix(".json"), json.dumps(asdict(arrival)).encode())
            _write_durably(partial, encoded)
            # The sidecar first: an object in ready/ always has its sidecar.
            partial.with_suffix(".json").replace(self.ready / f"{name}.json")
            partial.replace(self.ready / f"{name}.dcm")
            _fsync_directory(self.ready)
        except OSError as e:
            for leftover in (partial, partial.with_suffix(".json")):
                leftover.unlink(missing_ok=True)
            raise SpoolFullError(f"the object could not be made durable: {e.strerror}") from e
        return Spooled(self.ready / f"{name}.dcm", arrival)

    def waiting(self) -> Iterator[Spooled]:
        """Objects ready to drain, oldest first."""
        objects = sorted(self.ready.glob("*.dcm"), key=lambda p: p.stat().st_mtime_ns)
        for path in objects:
            sidecar = path.with_suffix(".json")
            if sidecar.exists():
                yield Spooled(path, Arrival(**json.loads(sidecar.read_text())))

    def remove(self, spooled: Spooled) -> None:
        """Only once S3 has the object."""
        spooled.path.unlink(missing_ok=True)
        spooled.path.with_suffix(".json").unlink(missing_ok=True)
        _fsync_directory(self.ready)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
