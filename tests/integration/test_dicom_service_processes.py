"""How one task of the DICOM service shares its two cores (`services/dicom_scp/main.py`, run
as Fargate runs it): devices connecting one after another, or all at once, are spread over
the receiving processes, and the draining process gives way to them. (How a receiver
leaves a connection to one serving fewer is unit-tested in
`tests/unit/test_dicom_association_setup.py`.)"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from threading import Barrier
from typing import TYPE_CHECKING

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from services.dicom_scp.main import DRAIN_NICENESS
from tests.integration.test_dicom_service import new_clinic_with_node
from tests.integration.test_dicom_service_faults import ServiceProcess, processes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pynetdicom.association import Association

    from orca_imaging.local.stack import LocalStack

__all__ = ["processes"]  # the fixture that stops every service a test started


def niceness(pid: int) -> set[int]:
    """The CPU niceness of each of a process's threads (nice(2): higher yields more)."""
    threads = Path(f"/proc/{pid}/task").iterdir()
    return {int((thread / "stat").read_text().rsplit(")", 1)[1].split()[16]) for thread in threads}


def connections_on(port: int) -> set[str]:
    """The socket inodes of established IPv4 connections to local `port` (/proc/net/tcp)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {row[9] for row in rows if int(row[1].split(":")[1], 16) == port and row[3] == "01"}


def sockets_of(pid: int) -> set[str]:
    """The socket inodes a process holds open."""
    links = (str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}


@contextmanager
def busy_cores() -> Iterator[None]:
    """Every core kept busy by another process, as devices' own traffic and the stack's
    consumers keep a task's: a receiver then waits its turn to be scheduled."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(len(os.sched_getaffinity(0)))
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_devices_are_spread_evenly_over_the_receiving_processes(
    stack: LocalStack, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    _, ae_title = new_clinic_with_node(stack)
    service = ServiceProcess(tmp_path / "spool", receivers="2")
    processes.append(service)
    receivers = service.receivers()
    assert len(receivers) == 2

    def associate() -> Association:
        device = AE(ae_title=ae_title)
        device.add_requested_context(Verification)
        return device.associate("127.0.0.1", service.dicom_port, ae_title="ORCA")

    def served() -> list[int]:
        connections = connections_on(service.dicom_port)
        return [len(connections & sockets_of(receiver)) for receiver in receivers]

    # One after another, each association up before the next; then four more all at once,
    # as devices starting together do (before the receivers posted their loads on a board,
    # a process not scheduled within a fixed wait lost its turn: 1 and 3 once in the suite).
    at_once = Barrier(4)

    def associate_with_the_others() -> Association:
        at_once.wait()
        return associate()

    associations = [associate() for _ in range(4)]
    try:
        assert all(association.is_established for association in associations)
        assert served() == [2, 2]
        with busy_cores(), ThreadPoolExecutor(4) as pool:
            associations += pool.map(lambda _: associate_with_the_others(), range(4))
        assert all(association.is_established for association in associations)
        assert served() == [4, 4]
    finally:
        for association in associations:
            association.release()


def test_the_draining_process_yields_the_cores_to_the_receivers(
    stack: LocalStack, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Every thread of the first process (the drainer's, `/health`'s, and any a library
    started) runs at a lower priority; the receivers, which a waiting device's next object
    depends on, keep the task's own."""
    service = ServiceProcess(tmp_path / "spool", receivers="2")
    processes.append(service)
    started_at = os.nice(0)
    receivers = service.receivers()
    assert len(receivers) == 2
    (draining,) = niceness(service.process.pid)  # one priority for all its threads
    assert draining == started_at + DRAIN_NICENESS > started_at
    for receiver in receivers:
        assert niceness(receiver) == {started_at}
