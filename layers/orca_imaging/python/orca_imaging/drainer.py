"""Moves spooled DICOM objects to S3 (see `originals.py`), and removes each from the spool
only once S3 has it. When S3 fails, the drainer backs off (doubling, capped) and tries again
until S3 has the object: the spool fills, nothing is dropped.

Several objects are sent at once: each send waits mostly on the network (a DynamoDB lookup
for an already-stored copy, then the PUT), so one at a time would drain a CBCT series of
hundreds of slices far slower than a device sends it.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging.errors import SpooledObjectDamagedError
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from orca_imaging.originals import ReceivedOriginals
    from orca_imaging.spool import Spool, Spooled


class Drainer:
    def __init__(
        self,
        spool: Spool,
        originals: ReceivedOriginals,
        *,
        idle_seconds: float = 0.5,
        max_backoff_seconds: float = 60.0,
        parallel: int = 8,  # within botocore's default pool of 10 connections
    ) -> None:
        self.spool = spool
        self.parallel = parallel
        self._sending = ThreadPoolExecutor(parallel, thread_name_prefix="dicom-drain")
        self.originals = originals
        self.idle_seconds = idle_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._stop = threading.Event()
        # Until one object has been sent, one at a time: botocore and PynamoDB make their
        # clients and per-operation caches on first use, and threads that first send at once
        # each make their own. Eight did at every start (eight DynamoDB clients): a new
        # task's first 40 objects took 2.3 s to drain here, and 0.95 s with the first alone.
        self._warm = False
        self._thread = threading.Thread(target=self._run, name="dicom-drainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._sending.shutdown(wait=False)

    def drain_once(self) -> int:
        """Send everything waiting, oldest first and `parallel` at a time; returns how many
        objects left the spool. A failure ends the pass once the sends in flight are done,
        and is raised: S3 being down is not met with every object waiting."""
        sent, in_flight = 0, set[Future[int]]()
        waiting = self.spool.waiting()
        while True:
            if not self._stop.is_set():
                width = self.parallel if self._warm else 1
                for spooled in itertools.islice(waiting, width - len(in_flight)):
                    in_flight.add(self._sending.submit(self._send, spooled))
            if not in_flight:
                return sent
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                if (error := future.exception()) is not None:
                    wait(in_flight)
                    raise error
                sent += future.result()

    def _send(self, spooled: Spooled) -> int:
        try:
            self.originals.keep(spooled.arrival, spooled.object_bytes())
        except FileNotFoundError:  # another task's drainer sent it first
            return 0
        except SpooledObjectDamagedError:  # never sent as the device's original
            self.spool.set_aside(spooled.path, "its object does not match its CRC-32")
            return 0
        self.spool.remove(spooled)
        self._warm = True
        return 1

    def _run(self) -> None:
        backoff = self.idle_seconds
        while not self._stop.is_set():
            try:
                self.drain_once()
                backoff = self.idle_seconds
            except (BotoCoreError, ClientError):
                metrics.add_metric(name="DicomDrainFailures", unit="Count", value=1)
                logger.warning("S3 refused a spooled object; retrying", extra={"backoff_seconds": backoff})
                backoff = min(self.max_backoff_seconds, backoff * 2)
            except Exception:  # never let the drainer die: the spool is only safe if it runs
                logger.exception("drainer error; retrying")
                backoff = min(self.max_backoff_seconds, backoff * 2)
            self._stop.wait(backoff)
