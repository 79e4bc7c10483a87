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

from orca_imaging import clients, repository, worklist
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.drainer import Drainer
from orca_imaging.observability import logger, metrics
from orca_imaging.settings import ScpSettings, load
from orca_imaging.spool import Spool


def main() -> int:
    settings = load(ScpSettings)
    repository.bind_tables(settings)
    spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
    service = DicomService(
        ServiceConfig(
            ae_title=settings.ae_title,
            host="0.0.0.0",  # noqa: S104 (in a private subnet, behind an NLB reachable only from the VPN)
            port=settings.dicom_port,
            max_associations=settings.max_associations,
            max_pdu_bytes=settings.max_pdu_bytes,
        ),
        spool,
        nodes=repository.dicom_nodes,
        worklist=worklist.find,
    )
    drainer = Drainer(spool, clients.s3(), bucket=settings.originals_bucket, kms_key_id=settings.kms_key_id)
    health = ThreadingHTTPServer(("0.0.0.0", settings.health_port), _health_handler(service))  # noqa: S104
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    service.start()
    drainer.start()
    threading.Thread(target=health.serve_forever, name="health", daemon=True).start()
    threading.Thread(target=publish_metrics, args=(spool, stopping), name="metrics", daemon=True).start()
    stopping.wait()
    logger.info("stopping: no new associations; finishing those in flight")
    service.stop(timeout=settings.stop_timeout_seconds)
    drainer.stop(timeout=5)
    health.shutdown()
    metrics.flush_metrics()
    return 0


def publish_metrics(spool: Spool, stopping: threading.Event, every_seconds: float = 60) -> None:
    """Outside Lambda nothing flushes Powertools' metrics: once a minute, add the spool's
    depth (the backlog alarm's metric) and write everything counted as one EMF line."""
    while not stopping.wait(every_seconds):
        metrics.add_metric(name="DicomSpoolDepth", unit="Count", value=spool.depth())
        metrics.add_metric(name="DicomSpoolBytes", unit="Bytes", value=spool.used_bytes())
        metrics.flush_metrics()


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


if __name__ == "__main__":
    raise SystemExit(main())
