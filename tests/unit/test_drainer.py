"""The drainer, with stand-ins for S3: its sending pattern, and what it does with an object
damaged in the spool."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from orca_imaging import observability
from orca_imaging.drainer import Drainer
from orca_imaging.spool import Spool
from tests.unit.test_spool import arrival

if TYPE_CHECKING:
    from pathlib import Path

    from orca_imaging.spool import Arrival

PARALLEL = 4


class OverlapRecorder:
    """Stands in for `ReceivedOriginals`: notes each send's start and end. After the first,
    sends wait for `PARALLEL` of them to be running at once (a barrier that breaks, failing
    the drain, if the drainer never gets there)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._together = threading.Barrier(PARALLEL, timeout=30)

    def keep(self, arrival: Arrival, body: bytes) -> None:
        with self._lock:
            first = not self.events
            self.events.append(("start", arrival.image_id))
        if not first:
            self._together.wait()
        with self._lock:
            self.events.append(("end", arrival.image_id))


def test_the_first_object_is_sent_alone_then_several_at_once(tmp_path: Path) -> None:
    # botocore and PynamoDB make their clients on first use; threads that first send at once
    # each made their own (eight DynamoDB clients at every start of the service).
    spool = Spool(tmp_path, max_bytes=1_000_000)
    for n in range(1 + 2 * PARALLEL):
        spool.put(f"object-{n}".encode(), arrival(n))
    recorder = OverlapRecorder()
    drainer = Drainer(spool, recorder, parallel=PARALLEL)  # type: ignore[arg-type]

    assert drainer.drain_once() == 1 + 2 * PARALLEL

    (first_start, first_end), rest = recorder.events[:2], recorder.events[2:]
    assert first_start[0] == "start" and first_end == ("end", first_start[1])
    assert len(rest) == 2 * 2 * PARALLEL  # every other send ran with PARALLEL - 1 others
    assert list(spool.waiting()) == []


class Recorder:
    """Stands in for `ReceivedOriginals`: keeps what it is given."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    def keep(self, arrival: Arrival, body: bytes) -> None:
        self.kept[arrival.image_id] = body


def test_an_object_damaged_in_the_spool_is_set_aside_and_the_rest_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[dict[str, str]] = []
    monkeypatch.setattr(observability.logger, "error", lambda _, extra: errors.append(extra))
    spool = Spool(tmp_path, max_bytes=1_000_000)
    damaged, whole = spool.put(b"DICM-first", arrival(1)), spool.put(b"DICM-second", arrival(2))
    damaged.path.write_bytes(damaged.path.read_bytes().replace(b"first", b"FIRST"))
    recorder = Recorder()

    assert Drainer(spool, recorder).drain_once() == 1  # type: ignore[arg-type]

    assert recorder.kept == {whole.arrival.image_id: b"DICM-second"}
    assert list(spool.waiting()) == []
    assert [p.name for p in spool.damaged.iterdir()] == [damaged.path.name]  # for an operator
    assert errors == [{"spooled_file": damaged.path.name, "reason": "its object does not match its CRC-32"}]
