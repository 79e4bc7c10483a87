"""The DICOM service's entry point on Fargate: the SCP, the drainer and `/health`.

Wiring only (see `orca_imaging.dicom_service`, `drainer`, `spool`). Settings come from the
environment (the task definition, with values from SSM).

pynetdicom holds the GIL for most of a transfer, so one process receives on one core. The
task therefore runs `ORCA_RECEIVERS` receiving processes (default: one per core), started
as this command with `--receiver`. This process opens the DICOM ports and each receiver
inherits them; a connection goes to the receiver serving the fewest associations (see
`orca_imaging.dicom_transport`). This process drains the spool and answers
`/health`: the drainer's work (hashing, signing, sending) never competes for a receiver's
GIL, and it yields the cores to them. A receiver dies with this process; one that exits on
its own makes `/health` fail, so ECS replaces the task (gracefully: what the others are
receiving still finishes).

On SIGTERM every process stops accepting, lets in-flight associations finish within the
stop timeout, and leaves the spool as it is: whatever was acknowledged is on EFS, and the
next task drains it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from orca_imaging import repository
from orca_imaging.dicom_service import echo
from orca_imaging.dicom_task import DicomTask, yield_cores
from orca_imaging.dicom_transport import LoadBoard, shared_listener
from orca_imaging.observability import log_uncaught_thread_exceptions, logger, metrics, write_whole_lines
from orca_imaging.settings import ScpSettings, load

if TYPE_CHECKING:
    from collections.abc import Callable

    from orca_imaging.spool import Spool

# In a private subnet, behind an NLB reachable only from the VPN.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
RECEIVER, LISTENING, BOARD = "--receiver", "--listening", "--board"
# A device waits for each Success before it sends its next object; S3 only waits for what
# the spool already keeps safe. So when the cores are busy the receivers come first: this
# process (the drainer and `/health`) runs at a lower CPU priority, and catches up when
# they are idle. Kept busy for long, they fill the spool (its backlog alarm fires) until a
# full one refuses stores and the drain catches up. On two busy cores this took one
# sender's CT stores from ~135 to ~155 a second here, and panoramics from ~25 to ~35.
DRAIN_NICENESS = 10
_PR_SET_PDEATHSIG = 1  # prctl(2)


def main(argv: list[str]) -> int:
    write_whole_lines()  # every process of the task writes to the same output
    log_uncaught_thread_exceptions()
    settings = load(ScpSettings)
    repository.bind_tables(settings)
    if RECEIVER in argv:
        given = {flag: argv[argv.index(flag) + 1] for flag in (RECEIVER, LISTENING, BOARD)}
        return receive(
            settings,
            parent=int(given[RECEIVER]),
            descriptors=[int(d) for d in given[LISTENING].split(",")],
            board=LoadBoard.joined(given[BOARD]),
        )
    return serve(settings)


def serve(settings: ScpSettings) -> int:
    """The task's first process: runs the receivers, drains the spool, answers `/health`."""
    stopping = _stop_on_signals()
    count = settings.receivers or len(os.sched_getaffinity(0))
    # The DICOM ports, opened here and inherited by every receiver.
    ports = [settings.dicom_port, *([settings.tls_port] if settings.tls_certificate else [])]
    listening = [shared_listener(ALL_INTERFACES, port) for port in ports]
    descriptors = [listener.fileno() for listener in listening]
    board = LoadBoard.create(count)  # where the receivers post their loads, to spread devices
    # The same command line, marked as a receiver of this process.
    command = [sys.executable, *sys.orig_argv[1:], RECEIVER, str(os.getpid())]
    command += [LISTENING, ",".join(map(str, descriptors))]
    receivers = [
        subprocess.Popen([*command, BOARD, board.handed_to(slot)], pass_fds=[*descriptors, board.descriptor])
        for slot in range(count)
    ]
    for listener in listening:  # theirs alone: with every receiver gone, connections are refused
        listener.close()
    yield_cores(DRAIN_NICENESS)  # after the receivers started: they keep the task's priority
    task = DicomTask(settings, receives=False)
    task.start()

    def healthy() -> bool:
        exited = [receiver.pid for receiver in receivers if receiver.poll() is not None]
        if exited:
            logger.error("a receiving process exited", extra={"pids": exited})
        return not exited and echo(settings.dicom_port, settings.ae_title)

    health = ThreadingHTTPServer((ALL_INTERFACES, settings.health_port), _health_handler(healthy))
    threading.Thread(target=health.serve_forever, name="health", daemon=True).start()
    threading.Thread(target=publish_metrics, args=(stopping, task.spool), name="metrics", daemon=True).start()
    logger.info("DICOM service started", extra={"receivers": count})
    stopping.wait()
    logger.info("stopping: no new associations; finishing those in flight")
    for receiver in receivers:
        receiver.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.stop_timeout_seconds + 5
    for receiver in receivers:
        try:
            receiver.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            receiver.kill()
    task.stop(timeout=0)  # the drainer, once nothing more can arrive
    health.shutdown()
    metrics.flush_metrics()
    return 0


def receive(settings: ScpSettings, *, parent: int, descriptors: list[int], board: LoadBoard) -> int:
    """A receiving process: receives only, on the listening sockets it inherited, and dies
    with the first one."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the first one died before we asked to die with it
        return 1
    stopping = _stop_on_signals()
    inherited = [socket.socket(fileno=descriptor) for descriptor in descriptors]
    listening = {listener.getsockname()[1]: listener for listener in inherited}
    task = DicomTask(settings, host=ALL_INTERFACES, listening=listening, board=board, drains=False)
    task.start()
    threading.Thread(target=publish_metrics, args=(stopping,), name="metrics", daemon=True).start()
    stopping.wait()
    task.stop(timeout=settings.stop_timeout_seconds)
    metrics.flush_metrics()
    return 0


def _stop_on_signals() -> threading.Event:
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    return stopping


def _health_handler(healthy: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            ok = self.path == "/health" and healthy()
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"unhealthy")

        def log_message(self, *args: object) -> None:  # the access log is noise here
            pass

    return Health


def publish_metrics(stopping: threading.Event, spool: Spool | None = None, every_seconds: float = 60) -> None:
    """Outside Lambda nothing flushes Powertools' metrics: once a minute, write everything
    this process counted as one EMF line; the draining process adds the spool's depth (the
    backlog alarm's metric)."""
    while not stopping.wait(every_seconds):
        if spool is not None:
            metrics.add_metric(name="DicomSpoolDepth", unit="Count", value=spool.depth())
            metrics.add_metric(name="DicomSpoolBytes", unit="Bytes", value=spool.used_bytes())
        metrics.flush_metrics()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
