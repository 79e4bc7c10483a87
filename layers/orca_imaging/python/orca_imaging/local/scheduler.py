"""EventBridge schedules, in process: each `ScheduleSpec` invokes its function on its rate
with the same `Scheduled Event` payload EventBridge sends."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orca_imaging.observability import logger
from orca_imaging.resources import FunctionSpec, ScheduleSpec, function

if TYPE_CHECKING:
    from collections.abc import Callable

if TYPE_CHECKING:
    from orca_imaging.local.lambda_runtime import FunctionHost


def scheduled_event(schedule: ScheduleSpec, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:000000000000:rule/{schedule.construct_id}"],
        "detail": {},
    }


class Scheduler:
    def __init__(
        self,
        host: FunctionHost,
        schedules: tuple[ScheduleSpec, ...],
        region: str,
        resolve: Callable[[str], FunctionSpec] = function,
    ) -> None:
        self._host = host
        self._resolve = resolve
        self._schedules = schedules
        self._region = region
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"schedule-{s.construct_id}", daemon=True)
            for s in schedules
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, schedule: ScheduleSpec) -> None:
        while not self._stop.wait(schedule.rate_seconds):
            try:
                self._host.invoke(self._resolve(schedule.function), scheduled_event(schedule, self._region))
            except Exception:  # a failed run is logged; the next tick tries again, as EventBridge would
                logger.exception("scheduled run failed", extra={"schedule": schedule.construct_id})
