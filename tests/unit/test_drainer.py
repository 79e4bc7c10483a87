"""The drainer's sending pattern, with a stand-in for S3 that records what overlaps."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

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
