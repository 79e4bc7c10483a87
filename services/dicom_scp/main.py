"""The DICOM service's entry point on Fargate: the SCP, the drainer and `/health`.

Wiring only (see `orca_imaging.dicom_service`, `drainer`, `spool`). Settings come from the
environment (the task definition, with values from SSM). On SIGTERM the service stops
accepting, lets in-flight associations finish within the stop timeout, and leaves the
spool as it is: whatever was acknowledged is on EFS, and the next task drains it.
"""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from orca_imaging import repository
from orca_imaging.dicom_task import DicomTask
from orca_imaging.observability import logger, metrics
from orca_imaging.settings import ScpSettings, load

if TYPE_CHECKING:
    from orca_imaging.dicom_service import DicomService
    from orca_imaging.spool import Spool


def main() -> int:
    settings = load(ScpSettings)
    repository.bind_tables(settings)
    # In a private subnet, behind an NLB reachable only from the VPN.
    task = DicomTask(settings, host="0.0.0.0")  # noqa: S104
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    task.start()
    # Bound only once the SCP is up: a port that accepts but never answers would look
    # like a hung task to the health check rather than one still starting.
    health = ThreadingHTTPServer(("0.0.0.0", settings.health_port), _health_handler(task.service))  # noqa: S104
    threading.Thread(target=health.serve_forever, name="health", daemon=True).start()
    threading.Thread(target=publish_metrics, args=(task.spool, stopping), name="metrics", daemon=True).start()
    stopping.wait()
    logger.info("stopping: no new associations; finishing those in flight")
    task.stop(timeout=settings.stop_timeout_seconds)
    health.shutdown()
    metrics.flush_metrics()
    return 0


def _health_handler(service: DicomService) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            healthy = self.path == "/health" and service.echo_self()
            self.send_response(200 if healthy else 503)
            self.end_headers()
            self.wfile.write(b"ok" if healthy else b"unhealthy")

        def log_message(self, *args: object) -> None:  # the access log is noise here
            pass

    return Health


def publish_metrics(spool: Spool, stopping: threading.Event, every_seconds: float = 60) -> None:
    """Outside Lambda nothing flushes Powertools' metrics: once a minute, add the spool's
    depth (the backlog alarm's metric) and write everything counted as one EMF line."""
    while not stopping.wait(every_seconds):
        metrics.add_metric(name="DicomSpoolDepth", unit="Count", value=spool.depth())
        metrics.add_metric(name="DicomSpoolBytes", unit="Bytes", value=spool.used_bytes())
        metrics.flush_metrics()


if __name__ == "__main__":
    raise SystemExit(main())
