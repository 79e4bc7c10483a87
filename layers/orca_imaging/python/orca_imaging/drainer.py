"""Moves spooled DICOM objects to S3 (see `originals.py`), and removes each from the spool
only once S3 has it. When S3 fails, the drainer backs off (doubling, capped) and tries again
until S3 has the object: the spool fills, nothing is dropped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from orca_imaging.originals import ReceivedOriginals
    from orca_imaging.spool import Spool


class Drainer:
    def __init__(
        self,
        spool: Spool,
        originals: ReceivedOriginals,
        *,
        idle_seconds: float = 0.5,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self.spool = spool
        self.originals = originals
        self.idle_seconds = idle_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicom-drainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def drain_once(self) -> int:
        """Send everything waiting; returns how many objects left the spool."""
        sent = 0
        for spooled in self.spool.waiting():
            if self._stop.is_set():
                break
            try:
                self.originals.keep(spooled.arrival, spooled.path.read_bytes())
            except FileNotFoundError:  # another task's drainer sent it first
                continue
            self.spool.remove(spooled)
            sent += 1
        return sent

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
