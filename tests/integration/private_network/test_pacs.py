"""Query and retrieve against two real PACS: Debian's Orthanc and dcmtk's dcmqrscp, each
started here with a temporary configuration and archive. Our SCU finds studies by name, ID,
date range and modality, lists a study's series, and retrieves by C-MOVE (the PACS sends to
our DICOM service) and by C-GET (the objects come back on our association); what arrives is
ingested into the clinic that registered the PACS, and a second retrieve stores nothing new.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import requests
from pydicom import dcmread
from pydicom.uid import generate_uid

from orca_imaging import repository
from orca_imaging.auth import Role
from orca_imaging.local.stack import free_port
from tests.conftest import require_tool
from tests.fixtures.dental_dicom import dental_object
from tests.integration.conftest import ApiClient
from tests.integration.test_dicom_service import new_clinic_with_node, service_port, stored_objects
from tests.integration.test_pacs_retrieves import retrieved

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from orca_imaging.local.stack import LocalStack

ORTHANC, DCMQRSCP, DCMQRIDX = "/usr/sbin/Orthanc", "/usr/bin/dcmqrscp", "/usr/bin/dcmqridx"
NODELAY = {**os.environ, "TCP_NODELAY": "1"}


@dataclass
class Archive:
    """What each PACS holds: a panoramic of Jane Doe (2019), and an intraoral series of three
    of Richard Roe (2024)."""

    folder: Path
    pano_study: str = field(default_factory=generate_uid)
    intraoral_study: str = field(default_factory=generate_uid)
    intraoral_series: str = field(default_factory=generate_uid)
    files: list[Path] = field(default_factory=list)

    def write(self) -> Archive:
        self.folder.mkdir(parents=True)
        objects = [
            dental_object(
                "PX", StudyInstanceUID=self.pano_study, StudyDate="20190312", StudyDescription="Pano"
            ),
            *(
                dental_object(
                    "IO",
                    rows=120,
                    columns=160,
                    name="Roe^Richard",
                    patient_id="CHART-2",
                    StudyInstanceUID=self.intraoral_study,
                    SeriesInstanceUID=self.intraoral_series,
                    StudyDate="20240605",
                    SeriesNumber=1,
                    InstanceNumber=n + 1,
                )
                for n in range(3)
            ),
        ]
        for n, data in enumerate(objects):
            self.files.append(self.folder / f"{n}.dcm")
            self.files[-1].write_bytes(data)
        return self

    def sop_instances(self, study: str) -> list[str]:
        found = (dcmread(p, stop_before_pixels=True) for p in self.files)
        return sorted(str(ds.SOPInstanceUID) for ds in found if ds.StudyInstanceUID == study)


@dataclass
class Pacs:
    ae_title: str
    port: int
    archive: Archive
    admin: ApiClient

    def query(self, **body: Any) -> requests.Response:
        return self.admin.post("/dicom/query", {"node": self.ae_title, **body})

    def retrieve(self, study: str, method: str) -> dict[str, Any]:
        return retrieved(self.admin, {"node": self.ae_title, "studyInstanceUid": study, "method": method})


def register(stack: LocalStack, ae_title: str, port: int) -> ApiClient:
    """A clinic whose admin registers the PACS: a node with a host and port."""
    admin, _ = new_clinic_with_node(stack, aeTitle=ae_title, host="127.0.0.1", port=port)
    return admin


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the PACS never came up"
        time.sleep(0.1)


def answers(ae_title: str, port: int) -> bool:
    done = subprocess.run(
        ["/usr/bin/echoscu", "-aec", ae_title, "127.0.0.1", str(port)], capture_output=True, check=False
    )
    return done.returncode == 0


def orthanc(stack: LocalStack, folder: Path) -> Iterator[Pacs]:
    require_tool(ORTHANC)
    archive = Archive(folder / "objects").write()
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "orca-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "Plugins": [],
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        # Our AE title, where a C-MOVE to "ORCA" goes: what a PACS admin configures.
        "DicomModalities": {"orca": ["ORCA", "127.0.0.1", service_port(stack)]},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    with (folder / "orthanc.log").open("wb") as log:
        process = subprocess.Popen(
            [ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=log, env=NODELAY
        )
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: _http_ok(f"{base}/system"))
        for path in archive.files:
            requests.post(f"{base}/instances", data=path.read_bytes(), timeout=10).raise_for_status()
        yield Pacs("ORTHANC", dicom_port, archive, register(stack, "ORTHANC", dicom_port))
    finally:
        process.terminate()
        process.wait(30)


def dcmqrscp(stack: LocalStack, folder: Path) -> Iterator[Pacs]:
    require_tool(DCMQRSCP)
    archive = Archive(folder / "objects").write()
    database, port = folder / "database", free_port()
    database.mkdir()
    config = f"""
NetworkTCPPort = {port}
MaxPDUSize = 131072
MaxAssociations = 16
HostTable BEGIN
orca = (ORCA, 127.0.0.1, {service_port(stack)})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQR {database} RW (100, 1024mb) ANY
AETable END
"""
    (folder / "dcmqrscp.cfg").write_text(config)
    subprocess.run([DCMQRIDX, str(database), *map(str, archive.files)], check=True)
    with (folder / "dcmqrscp.log").open("wb") as log:
        process = subprocess.Popen(
            [DCMQRSCP, "-c", str(folder / "dcmqrscp.cfg"), str(port)], stdout=log, stderr=log, env=NODELAY
        )
    try:
        wait_for(lambda: answers("DCMQR", port))
        yield Pacs("DCMQR", port, archive, register(stack, "DCMQR", port))
    finally:
        process.terminate()
        process.wait(30)


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module", params=[orthanc, dcmqrscp], ids=["orthanc", "dcmqrscp"])
def pacs(
    request: pytest.FixtureRequest, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pacs]:
    yield from request.param(stack, tmp_path_factory.mktemp(request.param.__name__))


def studies(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(m["studyInstanceUid"] for m in response.json()["matches"])


def test_studies_are_found_by_name_id_date_range_and_modality(pacs: Pacs) -> None:
    archive = pacs.archive
    both = sorted([archive.pano_study, archive.intraoral_study])
    assert studies(pacs.query()) == both
    assert studies(pacs.query(patientName="doe")) == [archive.pano_study]  # a prefix, any case
    assert studies(pacs.query(patientId="CHART-2")) == [archive.intraoral_study]
    assert studies(pacs.query(**{"from": "2024-01-01"})) == [archive.intraoral_study]
    assert studies(pacs.query(**{"from": "2019-03-01", "to": "2019-03-31"})) == [archive.pano_study]
    assert studies(pacs.query(modality="IO")) == [archive.intraoral_study]
    (pano,) = pacs.query(patientId="CHART-1").json()["matches"]
    assert pano["patientName"] == "Doe^Jane" and pano["studyDate"] == "20190312"


def test_a_study_lists_its_series(pacs: Pacs) -> None:
    response = pacs.query(level="SERIES", studyInstanceUid=pacs.archive.intraoral_study)
    assert response.status_code == 200, response.text
    (series,) = response.json()["matches"]
    assert series["seriesInstanceUid"] == pacs.archive.intraoral_series
    assert series["modality"] == "IO"


def test_retrieved_studies_are_ingested_and_a_second_retrieve_stores_nothing_new(
    stack: LocalStack, pacs: Pacs
) -> None:
    archive, clinic = pacs.archive, pacs.admin.clinic

    def arrived(count: int) -> list[bytes] | None:
        found = stored_objects(stack, clinic)
        return found if len(found) == count else None

    moved = pacs.retrieve(archive.intraoral_study, "move")  # the PACS sends to our AE title
    assert (moved["status"], moved["method"]) == ("COMPLETED", "move")
    assert (moved["completed"], moved["failed"], moved["warning"]) == (3, 0, 0)
    objects = stack.wait_until(lambda: arrived(3), timeout=60)
    assert sorted(str(dcmread(io.BytesIO(o)).SOPInstanceUID) for o in objects) == archive.sop_instances(
        archive.intraoral_study
    )

    got = pacs.retrieve(archive.pano_study, "get")  # back on our own association
    assert (got["status"], got["method"]) == ("COMPLETED", "get")
    assert (got["completed"], got["failed"], got["warning"]) == (1, 0, 0)
    stack.wait_until(lambda: arrived(4), timeout=60)

    def ingested() -> list[dict[str, Any]] | None:
        items = pacs.admin.get("/dicom/pending", limit=50).json()["items"]
        return items if len(items) == 4 else None

    records = [
        pacs.admin.get(f"/images/{i['imageId']}").json() for i in stack.wait_until(ingested, timeout=90)
    ]
    assert {r["fileType"] for r in records} == {"XRAY"}

    again = pacs.retrieve(archive.intraoral_study, "move")
    assert again["completed"] == 3

    def audited() -> bool:
        trail = [e for i in records for e in repository.audit_trail(clinic, i["imageId"])]
        return sum(e.action == "DICOM_ALREADY_STORED" for e in trail) == 3

    stack.wait_until(audited, timeout=60)
    assert len(stored_objects(stack, clinic)) == 4  # the same bytes again: no second copy


def test_a_device_node_or_an_unreachable_pacs_is_a_clear_error(stack: LocalStack, pacs: Pacs) -> None:
    device = pacs.admin.post("/dicom/nodes", {"aeTitle": f"PANO{uuid.uuid4().hex[:6].upper()}"})
    assert pacs.admin.post("/dicom/query", {"node": device.json()["aeTitle"]}).status_code == 400
    assert pacs.admin.post("/dicom/query", {"node": "NOT-A-NODE"}).status_code == 404
    another_clinic = ApiClient(stack, f"clinic-{uuid.uuid4().hex[:10]}", Role.CLINIC_ADMIN)
    assert another_clinic.post("/dicom/query", {"node": pacs.ae_title}).status_code == 404
    gone = {"aeTitle": f"GONE{uuid.uuid4().hex[:6].upper()}", "host": "127.0.0.1", "port": free_port()}
    assert pacs.admin.post("/dicom/nodes", gone).status_code == 201
    unreachable = pacs.admin.post("/dicom/query", {"node": gone["aeTitle"]})
    assert unreachable.status_code == 502 and unreachable.json()["code"] == "remote_node_failed"
    # A retrieve is queued all the same, and ends FAILED with the reason on its record.
    failed = retrieved(pacs.admin, {"node": gone["aeTitle"], "studyInstanceUid": pacs.archive.pano_study})
    assert failed["status"] == "FAILED" and "could not be reached" in failed["reason"]
    assert "completed" not in failed
    device_retrieve = {"node": device.json()["aeTitle"], "studyInstanceUid": pacs.archive.pano_study}
    assert pacs.admin.post("/dicom/retrieve", device_retrieve).status_code == 400
    mine = pacs.admin.get(f"/dicom/retrieve/{failed['retrieveId']}")
    assert mine.status_code == 200
    assert another_clinic.get(f"/dicom/retrieve/{failed['retrieveId']}").status_code == 404
