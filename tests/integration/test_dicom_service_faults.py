"""The DICOM service as Fargate runs it (`services/dicom_scp/main.py`, its own process),
killed and stopped under a sending device: what was acknowledged is never lost, nothing
partial is ever kept, and the next task drains what the last one left."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from pydicom import dcmread
from pydicom.uid import generate_uid

from orca_imaging.local.stack import free_port
from tests.conftest import ROOT, require_tool
from tests.fixtures.dental_dicom import dental_object
from tests.integration.test_dicom_service import (
    STORESCU,
    _dcmtk,
    new_clinic_with_node,
    stored_keys,
    stored_objects,
)
from tests.integration.test_dicom_worklist import FINDSCU
from tests.unit.test_spool import partial_writes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orca_imaging.local.stack import LocalStack

__all__ = ["_dcmtk"]  # the autouse fixture that skips without dcmtk

SERVICE = ROOT / "services" / "dicom_scp" / "main.py"
OBJECTS = 30  # 4 MB each: long enough to be caught mid-association


class ServiceProcess:
    """One task of the DICOM service, on loopback ports, with its spool in `spool_dir`."""

    def __init__(self, spool_dir: Path, *, bucket: str | None = None, **settings: str) -> None:
        self.dicom_port, self.health_port, self.tls_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "ORCA_SPOOL_DIR": str(spool_dir),
            "ORCA_DICOM_PORT": str(self.dicom_port),
            "ORCA_HEALTH_PORT": str(self.health_port),
            "ORCA_TLS_PORT": str(self.tls_port),
            "ORCA_STOP_TIMEOUT_SECONDS": "60",
            # As the task's image runs it: each line in the log once it is logged, where the
            # tests read it while the service runs.
            "PYTHONUNBUFFERED": "1",
            **{f"ORCA_{name.upper()}": value for name, value in settings.items()},
        }
        if bucket is not None:
            env["ORCA_ORIGINALS_BUCKET"] = bucket
        # Its output goes to a file: a pipe nobody reads fills, and then blocks the service.
        self.log = spool_dir.parent / f"service-{self.dicom_port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, str(SERVICE)], env=env, stdout=log, stderr=log)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            try:
                if requests.get(f"http://127.0.0.1:{self.health_port}/health", timeout=5).ok:
                    return
            except requests.RequestException:  # not listening yet, or too busy starting to answer
                pass
            time.sleep(0.1)
        raise TimeoutError("the DICOM service never became healthy")

    def receivers(self) -> list[int]:
        """The task's receiving processes (children of the first)."""
        pid = self.process.pid
        try:
            return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:  # the first one is gone
            return []

    def send(self, ae_title: str, files: list[Path]) -> subprocess.Popen[str]:
        """dcmtk storescu, one association, verbose so each response is in its output."""
        command = [STORESCU, "-v", "-aet", ae_title, "-aec", "ORCA", "127.0.0.1", str(self.dicom_port)]
        return subprocess.Popen(
            [*command, *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def radiographs(tmp_path: Path) -> list[Path]:
    """Panoramic radiographs of 4 MB, each its own SOP instance."""
    template = dcmread(io.BytesIO(dental_object("PX", rows=1400, columns=1400)))
    folder = tmp_path / "device"
    folder.mkdir()
    paths = []
    for n in range(OBJECTS):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"px{n:02d}.dcm")
        template.save_as(paths[-1], enforce_file_format=True)
    return paths


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


def running(pid: int) -> bool:
    """Alive: neither gone nor a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def spooled(spool_dir: Path) -> int:
    """Objects waiting in a spool (read, not opened: opening a Spool starts a task of its own)."""
    return len(list((spool_dir / "ready").glob("*.spooled")))


def wait_for_spooled(spool_dir: Path, at_least: int, sender: subprocess.Popen[str]) -> None:
    while spooled(spool_dir) < at_least:
        assert sender.poll() is None, "the sender finished before it could be interrupted"
        time.sleep(0.01)


def acknowledged(output: str) -> int:
    return output.count("Received Store Response (Success)")


def sop_instances(objects: list[bytes]) -> list[str]:
    return sorted(str(dcmread(io.BytesIO(data)).SOPInstanceUID) for data in objects)


class Transfer:
    """A device's association in progress to a first task whose S3 refuses everything (no
    such bucket), so what it acknowledges stays spooled; three objects are in already."""

    def __init__(
        self, stack: LocalStack, spool_dir: Path, radiographs: list[Path], processes: list[ServiceProcess]
    ) -> None:
        self.admin, self.ae_title = new_clinic_with_node(stack)
        # Two receiving processes (as on Fargate's two cores): the sender's association is
        # in either, and the faults must reach both.
        self.first = ServiceProcess(spool_dir, bucket="no-such-bucket", receivers="2")
        processes.append(self.first)
        self.sender = self.first.send(self.ae_title, radiographs)
        wait_for_spooled(spool_dir, 3, self.sender)


def test_killed_mid_association_the_sender_sees_failure_and_the_next_task_drains_only_whole_objects(
    stack: LocalStack, tmp_path: Path, radiographs: list[Path], processes: list[ServiceProcess]
) -> None:
    spool_dir = tmp_path / "spool"
    transfer = Transfer(stack, spool_dir, radiographs, processes)
    admin, sender = transfer.admin, transfer.sender
    receivers = transfer.first.receivers()
    assert len(receivers) == 2
    transfer.first.process.send_signal(signal.SIGKILL)
    stack.wait_until(lambda: not any(map(running, receivers)), timeout=10)  # they died with it
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode != 0  # the device knows the transfer failed, and will resend
    told_success = acknowledged(output)
    assert told_success < OBJECTS

    processes.append(ServiceProcess(spool_dir))  # the replacement task, with S3 working
    stack.wait_until(lambda: spooled(spool_dir) == 0, timeout=60)
    kept = stored_objects(stack, admin.clinic)
    # Everything acknowledged is in S3; at most one more, whole on the spool just before the
    # kill but never acknowledged (renamed into ready/, or recovered by the next task from
    # the dead one's folder; the device resends it: same SOP instance, caught by ingest).
    assert told_success <= len(kept) <= told_success + 1
    assert len(kept) >= 3  # at least what was seen spooled before the kill
    originals = {str(dcmread(p).SOPInstanceUID): p for p in radiographs}
    for data in kept:  # whole objects only, with every pixel as sent
        received = dcmread(io.BytesIO(data))
        assert received.PixelData == dcmread(originals[str(received.SOPInstanceUID)]).PixelData
    assert partial_writes(spool_dir) == []  # the killed task's partial write was cleared


def test_sigterm_finishes_the_association_in_flight_refuses_new_ones_and_leaves_the_spool_for_the_next_task(
    stack: LocalStack, tmp_path: Path, radiographs: list[Path], processes: list[ServiceProcess]
) -> None:
    spool_dir = tmp_path / "spool"
    transfer = Transfer(stack, spool_dir, radiographs, processes)
    admin, ae_title, first, sender = transfer.admin, transfer.ae_title, transfer.first, transfer.sender
    # Read before the signal: once the sender is done, they and the first may have exited.
    receivers = first.receivers()
    first.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    late = first.send(ae_title, radiographs[:1])  # after SIGTERM: no new association
    late_output, _ = late.communicate(timeout=30)
    assert late.returncode != 0 and acknowledged(late_output) == 0

    output, _ = sender.communicate(timeout=120)
    assert sender.returncode == 0 and acknowledged(output) == OBJECTS  # the one in flight completed
    assert first.process.wait(60) == 0
    assert receivers and not any(map(running, receivers))  # stopped by the first
    assert spooled(spool_dir) == OBJECTS  # S3 refused; all kept

    processes.append(ServiceProcess(spool_dir))
    stack.wait_until(lambda: len(stored_objects(stack, admin.clinic)) == OBJECTS, timeout=120)
    assert sop_instances(stored_objects(stack, admin.clinic)) == sorted(
        str(dcmread(p).SOPInstanceUID) for p in radiographs
    )


def test_its_logs_name_the_images_and_never_the_patient_even_at_debug(
    stack: LocalStack, tmp_path: Path, processes: list[ServiceProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logs carry ids only: a device stores an object and asks the worklist by name, and the
    task's whole output (every receiver's, pynetdicom's included) holds neither the patient's
    name, chart number nor birth date, while it does name the image it kept."""
    require_tool(FINDSCU)
    admin, ae_title = new_clinic_with_node(stack)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    service = ServiceProcess(tmp_path / "spool", receivers="2")
    processes.append(service)
    device_file = tmp_path / "pano.dcm"
    device_file.write_bytes(
        dental_object(
            "PX",
            rows=64,
            columns=96,
            name="Quixote^Alonso",
            patient_id="CHART-7Q3Z",
            birth_date=date(1999, 12, 31),
        )
    )
    sender = service.send(ae_title, [device_file])
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode == 0 and acknowledged(output) == 1
    query = [FINDSCU, "-W", "-aet", ae_title, "-aec", "ORCA", "-k", "PatientName=Quixote*"]
    query += ["-k", "PatientID=CHART-7Q3Z", "127.0.0.1", str(service.dicom_port)]
    assert subprocess.run(query, capture_output=True, timeout=60).returncode == 0
    (kept,) = stack.wait_until(lambda: stored_keys(stack, admin.clinic) or None, timeout=60)

    service.process.send_signal(signal.SIGTERM)  # every process flushes and exits
    assert service.process.wait(60) == 0
    log = service.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    image_id = kept.rsplit("/", 1)[1]
    # The receiver that took it and the process that drained it both name the image.
    for message in ("object spooled", "DICOM object in S3"):
        assert [line["image_id"] for line in lines if line.get("message") == message] == [image_id]
    # Counted once, by the receiver that took it, after its response (`after_response`).
    received = [line["DicomObjectsReceived"] for line in lines if "DicomObjectsReceived" in line]
    assert sum(sum(value) if isinstance(value, list) else value for value in received) == 1
    for identifier in ("Quixote", "Alonso", "CHART-7Q3Z", "19991231", "1999-12-31"):
        assert identifier not in log


def test_a_full_spool_answers_out_of_resources_and_keeps_only_what_it_acknowledged(
    stack: LocalStack, tmp_path: Path, radiographs: list[Path], processes: list[ServiceProcess]
) -> None:
    """Room for two 4 MB radiographs and S3 refusing all, so nothing leaves: the third is
    refused (0xA700) once it has arrived whole, and nothing of it is left on the disk."""
    spool_dir = tmp_path / "spool"
    _, ae_title = new_clinic_with_node(stack)
    service = ServiceProcess(spool_dir, bucket="no-such-bucket", spool_max_bytes=str(9 << 20))
    processes.append(service)
    output, _ = service.send(ae_title, radiographs[:4]).communicate(timeout=60)

    assert acknowledged(output) == 2
    # storescu stops at the refusal
    assert output.count("Received Store Response (Refused: OutOfResources)") == 1
    assert spooled(spool_dir) == 2
    assert partial_writes(spool_dir) == []


def test_a_transfer_cut_off_mid_object_leaves_nothing_behind(
    stack: LocalStack, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """The device dies while a 72 MB object is arriving: the service, still running, drops
    what it had written of it, and goes on serving."""
    _, ae_title = new_clinic_with_node(stack)
    spool_dir = tmp_path / "spool"
    service = ServiceProcess(spool_dir, bucket="no-such-bucket", receivers="1")
    processes.append(service)
    large = tmp_path / "large.dcm"
    large.write_bytes(dental_object("PX", rows=6000, columns=6000))
    sender = service.send(ae_title, [large])

    def arriving() -> bool:
        return any(p.stat().st_size > 0 for p in (spool_dir / "incoming").rglob("*.partial"))

    while not arriving():
        assert sender.poll() is None, "the object arrived whole before it could be cut off"
        time.sleep(0.005)
    sender.kill()
    sender.communicate(timeout=10)

    stack.wait_until(lambda: partial_writes(spool_dir) == [], timeout=30)
    assert spooled(spool_dir) == 0
    output, _ = service.send(ae_title, [large]).communicate(timeout=60)  # and it still serves
    assert acknowledged(output) == 1 and spooled(spool_dir) == 1
