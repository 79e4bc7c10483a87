"""Which thread serves what, on an association of `dicom_transport.AssociationServer`: a
C-STORE whose dataset is streamed to a sink is served on the connection's thread, as soon as
its last fragment is in; anything else on the association's thread, as pynetdicom does. And
what a store's handler leaves for after its response (`after_response`) runs once the
response is sent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

from orca_imaging.dicom_transport import AssociationServer, after_response, file_head, streamed

SUCCESS = 0x0000
# Small PDUs, so that a slice comes in many fragments after its command.
MAX_PDU = 16_384


class MemorySink:
    """A `DatasetSink` in memory."""

    def __init__(self) -> None:
        self.path = Path("/nonexistent/streamed")
        self.written = bytearray()
        self.kept = False

    def write(self, data: bytes | memoryview) -> None:
        self.written += data

    def discard(self) -> None:
        if not self.kept:
            self.written.clear()


def ct_slice() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.Rows = ds.Columns = 256
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(256 * 256, dtype="<u2").tobytes()
    return ds


def encoded(ds: Dataset) -> bytes:
    """The dataset as an SCU sends it in explicit VR little endian."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


@dataclass
class Served:
    """A server on a free port. For each message type, the thread its handler ran on, as its
    role on that association: its connection's thread (`dul`) or its own. Each store's
    handler leaves `after_each_store` to `after_response`."""

    port: int = 0
    roles: dict[str, str] = field(default_factory=dict)
    sinks: list[MemorySink] = field(default_factory=list)
    after_each_store: list[Callable[[Event], None]] = field(default_factory=list)


@pytest.fixture
def served() -> Iterator[Served]:
    served = Served()

    def receive_into() -> MemorySink:
        served.sinks.append(MemorySink())
        return served.sinks[-1]

    def on_store(event: Event) -> int:
        sink = streamed(event, MemorySink)
        assert sink is not None, "the dataset was not streamed"
        sink.kept = True
        served.roles["store"] = _role(event)
        for work in served.after_each_store:
            after_response(event, lambda work=work: work(event))  # type: ignore[misc]
        return SUCCESS

    def on_echo(event: Event) -> int:
        served.roles["echo"] = _role(event)
        return SUCCESS

    ae = AE(ae_title="ORCA")
    ae.maximum_pdu_size = MAX_PDU
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(Verification)
    server = ae.make_server(
        ("127.0.0.1", 0),
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, on_echo)],
        server_class=AssociationServer,
        receive_into=receive_into,
    )
    assert isinstance(server, AssociationServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served.port = server.server_address[1]
    try:
        yield served
    finally:
        server.shutdown()


def _role(event: Event) -> str:
    current = threading.current_thread()
    if current is event.assoc.dul:
        return "connection"
    return "association" if current is event.assoc else "other"


def device(port: int) -> Association:
    scu = AE(ae_title="DEVICE")
    scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    scu.add_requested_context(Verification)
    association = scu.associate("127.0.0.1", port, ae_title="ORCA")
    assert association.is_established
    return association


def test_a_streamed_store_is_served_on_the_connections_thread_and_an_echo_on_the_associations(
    served: Served,
) -> None:
    ds = ct_slice()
    association = device(served.port)
    try:
        assert association.send_c_store(ds).Status == SUCCESS
        assert association.send_c_echo().Status == SUCCESS
    finally:
        association.release()

    assert served.roles == {"store": "connection", "echo": "association"}
    [sink] = served.sinks
    head = file_head(CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    assert bytes(sink.written) == head + encoded(ds)  # every fragment, in order, as sent


def test_work_left_for_after_the_response_runs_once_the_device_has_it(served: Served) -> None:
    """The work waits (up to 5 s) for the device to have its response: had it run first,
    the response would only have gone out after that wait, and the device's Success after
    the work's record."""
    device_has_response = threading.Event()
    ran: list[tuple[bool, str]] = []

    def work(event: Event) -> None:
        ran.append((device_has_response.wait(5), _role(event)))

    served.after_each_store.append(work)
    association = device(served.port)
    try:
        assert association.send_c_store(ct_slice()).Status == SUCCESS
        device_has_response.set()
    finally:
        association.release()
    assert ran == [(True, "connection")]


def test_work_after_a_response_that_fails_leaves_the_association_serving(served: Served) -> None:
    def failing(event: Event) -> None:
        raise RuntimeError("a metric could not be added")

    served.after_each_store.append(failing)
    association = device(served.port)
    try:
        statuses = [association.send_c_store(ct_slice()).Status for _ in range(2)]
        assert association.send_c_echo().Status == SUCCESS
    finally:
        association.release()
    assert statuses == [SUCCESS, SUCCESS]
    assert association.is_released  # not aborted
