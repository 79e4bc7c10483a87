"""The DICOM service on the local stack, with dcmtk as the device: echo, every corpus
object pushed and ingested, refusals at association."""

from __future__ import annotations

import base64
import io
import logging
import socket
import struct
import subprocess
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import EndpointConnectionError
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]  # made at import

from orca_imaging import observability, repository
from orca_imaging.auth import Role
from orca_imaging.drainer import Drainer
from orca_imaging.keys import original_key
from orca_imaging.originals import ReceivedOriginals
from orca_imaging.spool import Spool
from tests.conftest import CORPUS, corpus_files, require_tool
from tests.fixtures.dental_dicom import dental_object
from tests.integration.conftest import ApiClient
from tests.unit.test_dicom_streamed_store import ct_slice, send_raw, store_in_p_datas
from tests.unit.test_spool import arrival

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from orca_imaging.local.stack import LocalStack

# dcmtk's tools by full path: pynetdicom installs its own `storescu` into the venv.
ECHOSCU, STORESCU = "/usr/bin/echoscu", "/usr/bin/storescu"
# Every corpus object dcmtk can send as a file (it needs file meta to know what it sends).
SENDABLE = [p for p in corpus_files("dicom") if p.read_bytes()[128:132] == b"DICM"]


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_tool(STORESCU)
    require_tool(ECHOSCU)


def service_port(stack: LocalStack) -> int:
    (url,) = [u for name, u in stack.urls() if name == "DICOM service"]
    return int(url.rsplit(":", 1)[1])


def new_clinic_with_node(stack: LocalStack, **node: Any) -> tuple[ApiClient, str]:
    """A new clinic whose admin registers a node: `node` is the request's other fields (and
    its `aeTitle`, when the test needs a particular one)."""
    clinic = f"clinic-{uuid.uuid4().hex[:10]}"
    ae_title = node.pop("aeTitle", f"DEV{uuid.uuid4().hex[:8].upper()}")
    admin = ApiClient(stack, clinic, Role.CLINIC_ADMIN)
    response = admin.post("/dicom/nodes", {"aeTitle": ae_title, **node})
    assert response.status_code == 201, response.text
    repository.forget_dicom_nodes()  # the service reads nodes through a short cache
    return admin, ae_title


def run(
    tool: str,
    stack: LocalStack,
    calling: str,
    *files: Path,
    called: str = "ORCA",
    options: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    address = ["127.0.0.1", str(service_port(stack))]
    command = [tool, *(options or []), "-aet", calling, "-aec", called, *address, *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def sop_instance(data: bytes) -> str:
    return str(dcmread(io.BytesIO(data), force=True, stop_before_pixels=True).SOPInstanceUID)


def stored_keys(stack: LocalStack, clinic: str) -> list[str]:
    """The keys of every original the clinic has in S3."""
    assert stack.resources is not None
    bucket = stack.resources.values["originals_bucket"]
    listed = stack.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"clinic/{clinic}/original/")
    return [item["Key"] for item in listed.get("Contents", [])]


def stored_objects(stack: LocalStack, clinic: str) -> list[bytes]:
    """Every original the clinic has in S3."""
    assert stack.resources is not None
    bucket, s3 = stack.resources.values["originals_bucket"], stack.client("s3")
    return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in stored_keys(stack, clinic)]


def assert_sent_with_their_crc(stack: LocalStack, clinic: str) -> None:
    assert stack.resources is not None
    bucket, s3 = stack.resources.values["originals_bucket"], stack.client("s3")
    for key in stored_keys(stack, clinic):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        checksum = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["ChecksumCRC32"]
        assert base64.b64decode(checksum) == zlib.crc32(data).to_bytes(4, "big")


def test_a_registered_device_echoes(stack: LocalStack) -> None:
    _, ae_title = new_clinic_with_node(stack)
    done = run(ECHOSCU, stack, ae_title)
    assert done.returncode == 0, done.stderr


# storescu's option proposing each transfer syntax, so every file goes as it is encoded.
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def test_every_corpus_object_is_acknowledged_stored_and_ingested(stack: LocalStack) -> None:
    admin, ae_title = new_clinic_with_node(stack)
    by_syntax: dict[str, list[Path]] = {}
    for path in SENDABLE:
        syntax = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        by_syntax.setdefault(syntax, []).append(path)
    assert set(by_syntax) <= set(PROPOSE), set(by_syntax) - set(PROPOSE)
    for syntax, files in by_syntax.items():  # one association per transfer syntax, as devices send
        done = run(STORESCU, stack, ae_title, *files, options=[PROPOSE[syntax]])
        assert done.returncode == 0, done.stderr

    def all_in() -> list[bytes] | None:
        found = stored_objects(stack, admin.clinic)
        return found if len(found) == len(SENDABLE) else None

    # Every object arrived (several corpus files share a SOP Instance UID, so as a multiset).
    # dcmtk re-encodes as it sends (group lengths, explicit sequence lengths, padding), so
    # the file's bytes are not what arrives; the service keeps what arrived, verbatim.
    arrived = sorted(sop_instance(data) for data in stack.wait_until(all_in, timeout=60))
    assert arrived == sorted(sop_instance(p.read_bytes()) for p in SENDABLE)
    # Each went to S3 with a CRC-32 of its bytes, for S3 to check them by (botocore's
    # default), once the drainer had checked them against the CRC-32 counted as they arrived.
    assert_sent_with_their_crc(stack, admin.clinic)

    def ingested() -> list[dict[str, Any]] | None:
        items = admin.get("/dicom/pending", limit=200).json()["items"]
        pending = [i for i in items if i["imageId"].startswith("img_")]  # not the CT volumes
        return pending if len(pending) == len(SENDABLE) else None

    # No patient was named and none matches: each waits for a person, described and previewed.
    pending = stack.wait_until(ingested, timeout=120, interval=1)
    records = [admin.get(f"/images/{item['imageId']}").json() for item in pending]
    assert {r["source"] for r in records} == {"dicom_scp"}
    assert {r["fileType"] for r in records} == {"XRAY"}


def test_an_object_sent_in_the_same_pdu_as_its_command_is_kept_exactly_as_sent(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dcmtk and pynetdicom send a dataset in PDUs of its own, and the service writes it to
    the spool as it arrives; a device may also pack a small one in with its command (PS3.8
    allows several PDVs in one PDU), which arrives whole and is kept the same way."""
    admin, ae_title = new_clinic_with_node(stack)
    sent = dcmread(io.BytesIO(dental_object("PX", rows=64, columns=96)))
    scu = AE(ae_title=ae_title)
    scu.add_requested_context(sent.SOPClassUID, ExplicitVRLittleEndian)
    association = scu.associate("127.0.0.1", service_port(stack), ae_title="ORCA")
    assert association.is_established
    datasets: list[bytes] = []

    def send_in_one_pdu(request: C_STORE, context_id: int) -> None:
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        parts = message.encode_msg(context_id, association.acceptor.maximum_length)
        packed = P_DATA()
        packed.presentation_data_value_list = [
            list(pdv) for part in parts for pdv in part.presentation_data_value_list
        ]
        assert len(packed.presentation_data_value_list) == 2  # the command's and the dataset's
        datasets.append(request.DataSet.getvalue())  # type: ignore[union-attr]
        association.dul.send_pdu(packed)

    monkeypatch.setattr(association.dimse, "send_msg", send_in_one_pdu)
    try:
        status = association.send_c_store(sent)
    finally:
        association.release()
    assert status.Status == 0

    (kept,) = stack.wait_until(lambda: stored_objects(stack, admin.clinic) or None, timeout=60)
    (dataset,) = datasets
    assert kept.endswith(dataset)  # after the file meta, every byte as sent
    assert dcmread(io.BytesIO(kept)).file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
    # and ingested like any other: described, waiting for a person to name the patient
    stack.wait_until(lambda: admin.get("/dicom/pending", limit=200).json()["items"] or None, timeout=60)


class ServiceLines(logging.Handler):
    """The service's log lines with one message, and its count of one metric."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, message: str, metric: str) -> None:
        super().__init__()
        self.message = message
        self.logged: list[logging.LogRecord] = []
        self.counted = 0
        add_metric = observability.metrics.add_metric

        def counting(*, name: str, **rest: Any) -> None:
            self.counted += name == metric
            add_metric(name=name, **rest)

        monkeypatch.setattr(observability.metrics, "add_metric", counting)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.logged.append(record)

    def of(self, calling_ae: str) -> list[logging.LogRecord]:
        """The lines about one device (the stack's service outlives each test's devices)."""
        return [record for record in self.logged if vars(record).get("calling_ae") == calling_ae]


def _watch(lines: ServiceLines) -> Iterator[ServiceLines]:
    service_log = logging.getLogger(observability.SERVICE)
    service_log.addHandler(lines)
    yield lines
    service_log.removeHandler(lines)


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceLines]:
    yield from _watch(ServiceLines(monkeypatch, "association refused", "DicomAssociationsRefused"))


@pytest.fixture
def ends(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceLines]:
    """Associations' ends, and the stores they cut off."""
    yield from _watch(ServiceLines(monkeypatch, "association ended", "DicomStoresInterrupted"))


def test_an_unknown_device_or_a_wrong_called_title_is_refused_at_association(
    stack: LocalStack, refusals: ServiceLines
) -> None:
    _, ae_title = new_clinic_with_node(stack)
    unknown = run(ECHOSCU, stack, "NOT-REGISTERED")
    assert unknown.returncode != 0 and "Rejected" in unknown.stderr + unknown.stdout
    wrong_called = run(ECHOSCU, stack, ae_title, called="SOMEONE-ELSE")
    assert wrong_called.returncode != 0
    # each is counted, and logged with its reason and the titles, for the admin setting it up
    stack.wait_until(lambda: len(refusals.logged) == 2 or None, timeout=10)
    assert [(r.reason, r.calling_ae, r.called_ae, r.address) for r in refusals.logged] == [  # type: ignore[attr-defined]
        ("Calling AE title not recognised", "NOT-REGISTERED", "ORCA", "127.0.0.1"),
        ("Called AE title not recognised", ae_title, "SOMEONE-ELSE", "127.0.0.1"),
    ]
    assert refusals.counted == 2


def test_a_device_outside_its_network_is_refused(
    stack: LocalStack, refusals: ServiceLines, tmp_path: Path
) -> None:
    admin, outside = new_clinic_with_node(stack, cidr="10.99.0.0/16")
    _, inside = new_clinic_with_node(stack, cidr="127.0.0.0/8")
    assert run(ECHOSCU, stack, inside).returncode == 0  # the same check admits its own network
    slice_file = tmp_path / "slice.dcm"
    slice_file.write_bytes(dental_object("CT"))
    done = run(STORESCU, stack, outside, slice_file)
    assert done.returncode != 0 and "Calling AE Title Not Recognized" in done.stderr + done.stdout
    assert stored_objects(stack, admin.clinic) == []
    stack.wait_until(lambda: refusals.logged or None, timeout=10)
    (refused,) = refusals.logged
    assert (refused.reason, refused.calling_ae, refused.called_ae, refused.address) == (  # type: ignore[attr-defined]
        "address outside the node's network",
        outside,
        "ORCA",
        "127.0.0.1",
    )
    assert refusals.counted == 1


def test_each_association_ends_in_a_line_saying_how_and_what_its_stores_came_to(
    stack: LocalStack, ends: ServiceLines, tmp_path: Path
) -> None:
    """What a clinic's admin or an operator reads first when a device says sending failed:
    which device, from where, how its association ended and what was kept."""
    admin, ae_title = new_clinic_with_node(stack)
    files = [tmp_path / "one.dcm", tmp_path / "two.dcm"]
    for path in files:
        path.write_bytes(dental_object("CT"))
    assert run(STORESCU, stack, ae_title, *files).returncode == 0
    assert run(ECHOSCU, stack, ae_title).returncode == 0
    device = AE(ae_title=ae_title)
    device.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    cancelled = device.associate("127.0.0.1", service_port(stack), ae_title="ORCA")
    assert cancelled.is_established
    cancelled.abort()  # someone cancelled the send at the device
    stack.wait_until(lambda: len(ends.of(ae_title)) == 3 or None, timeout=10)
    said = (
        "outcome",
        "calling_ae",
        "clinic_id",
        "address",
        "objects_kept",
        "stores_failed",
        "object_interrupted",
    )
    lines = [tuple(vars(record)[key] for key in said) for record in ends.of(ae_title)]
    assert lines == [
        ("released", ae_title, admin.clinic, "127.0.0.1", 2, 0, False),
        ("released", ae_title, admin.clinic, "127.0.0.1", 0, 0, False),
        ("aborted by the device", ae_title, admin.clinic, "127.0.0.1", 0, 0, False),
    ]
    assert all(0 < vars(record)["seconds"] < 60 for record in ends.of(ae_title))
    assert ends.counted == 0


def test_a_device_cut_off_with_an_object_arriving_is_counted_with_what_it_had_kept(
    stack: LocalStack, ends: ServiceLines
) -> None:
    """A device whose connection drops as an object arrives was never answered for it: the
    line says so, and the count is what an operator alarms on (devices resend, but one cut
    off again and again is not getting its images to us)."""
    _, ae_title = new_clinic_with_node(stack)
    device = AE(ae_title=ae_title)
    device.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    association = device.associate("127.0.0.1", service_port(stack), ae_title="ORCA")
    try:
        assert association.is_established
        assert association.send_c_store(ct_slice()).Status == 0
        command, *fragments = store_in_p_datas(association, ct_slice(), fragment_pdu=16_384)
        send_raw(association, [command, *fragments[:2]])  # the next object, a third of it
        connection = association.dul.socket.socket  # type: ignore[union-attr]
        assert connection is not None
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # a reset, as a cable pulled or a device switched off mid-send does
        stack.wait_until(lambda: ends.of(ae_title) or None, timeout=10)
    finally:
        association.kill()
    [ended] = ends.of(ae_title)
    assert tuple(vars(ended)[key] for key in ("outcome", "objects_kept", "object_interrupted")) == (
        "connection closed or invalid",
        1,
        True,
    )
    assert ends.counted == 1


def test_another_clinic_can_neither_take_over_nor_remove_a_registered_device(
    stack: LocalStack, tmp_path: Path
) -> None:
    """A device's AE title belongs to the clinic that registered it: were another clinic's
    admin able to register it again, that device's images would go to the other clinic."""
    owner, ae_title = new_clinic_with_node(stack)
    other = ApiClient(stack, f"clinic-{uuid.uuid4().hex[:10]}", Role.CLINIC_ADMIN)
    taken = other.post("/dicom/nodes", {"aeTitle": ae_title})
    assert taken.status_code == 409 and taken.json()["code"] == "conflict"
    assert other.delete(f"/dicom/nodes/{ae_title}").status_code == 404
    assert [n["aeTitle"] for n in other.get("/dicom/nodes").json()["nodes"]] == []
    assert [n["aeTitle"] for n in owner.get("/dicom/nodes").json()["nodes"]] == [ae_title]
    slice_file = tmp_path / "slice.dcm"
    slice_file.write_bytes(dental_object("CT"))
    assert run(STORESCU, stack, ae_title, slice_file).returncode == 0
    stack.wait_until(lambda: stored_keys(stack, owner.clinic) or None, timeout=60)
    assert stored_keys(stack, other.clinic) == []


class UnreachableS3:
    """S3 that refuses every write while `down`, counting the attempts."""

    def __init__(self, s3: Any) -> None:
        self.s3, self.down, self.attempts = s3, True, 0

    def put_object(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url="https://s3")
        return self.s3.put_object(**kwargs)


def test_nothing_is_lost_while_s3_is_down_and_everything_arrives_once_it_is_back(
    stack: LocalStack, tmp_path: Path
) -> None:
    s3 = stack.client("s3")
    BUCKET = f"drain-{uuid.uuid4().hex[:8]}"  # noqa: N806
    s3.create_bucket(Bucket=BUCKET)
    spool = Spool(tmp_path, max_bytes=100_000)
    for n in range(OBJECTS := 20):
        spool.put(f"object-{n}".encode(), arrival(n))
    unreachable = UnreachableS3(s3)
    drainer = Drainer(
        spool,
        ReceivedOriginals(unreachable, bucket=BUCKET, kms_key_id=None),  # type: ignore[arg-type]
        parallel=4,
    )
    for _ in range(2):
        with pytest.raises(EndpointConnectionError):
            drainer.drain_once()
        assert len(list(spool.waiting())) == OBJECTS  # still all there
    # A failure ends the pass once those in flight are done: S3 down is not hammered with
    # every object waiting.
    assert unreachable.attempts <= 2 * 4
    unreachable.down = False
    assert drainer.drain_once() == OBJECTS
    assert list(spool.waiting()) == []
    for n in range(OBJECTS):
        stored = s3.get_object(Bucket=BUCKET, Key=original_key("clinic-a", f"img_{n:04d}"))
        assert stored["Body"].read() == f"object-{n}".encode()
        assert stored["Metadata"]["calling-ae"] == "PANO1" and stored["Metadata"]["source"] == "dicom_scp"


def test_a_retry_after_a_lost_answer_never_replaces_the_original(stack: LocalStack, tmp_path: Path) -> None:
    s3 = stack.client("s3")
    BUCKET = f"drain-{uuid.uuid4().hex[:8]}"  # noqa: N806
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=original_key("clinic-a", "img_0001"), Body=b"first")
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.put(b"second", arrival(1))
    assert Drainer(spool, ReceivedOriginals(s3, bucket=BUCKET, kms_key_id=None)).drain_once() == 1
    assert s3.get_object(Bucket=BUCKET, Key=original_key("clinic-a", "img_0001"))["Body"].read() == b"first"


def test_an_object_pushed_again_is_already_stored_with_no_second_copy_or_record(
    stack: LocalStack,
) -> None:
    admin, ae_title = new_clinic_with_node(stack)
    image = CORPUS / "dicom" / "mr_small_implicit_vr.dcm"
    assert run(STORESCU, stack, ae_title, image).returncode == 0

    def pending() -> list[dict[str, Any]]:
        return admin.get("/dicom/pending", limit=200).json()["items"]

    (first,) = stack.wait_until(lambda: pending() or None, timeout=60, interval=0.5)
    # The device resends it (say, after an association it thinks failed).
    assert run(STORESCU, stack, ae_title, image).returncode == 0

    def resend_audited() -> list[str] | None:
        trail = repository.audit_trail(admin.clinic, first["imageId"])
        found = [e.details["callingAe"] for e in trail if e.action == "DICOM_ALREADY_STORED"]
        return found or None

    assert stack.wait_until(resend_audited, timeout=60) == [ae_title]
    assert len(stored_objects(stack, admin.clinic)) == 1
    assert [item["imageId"] for item in pending()] == [first["imageId"]]
