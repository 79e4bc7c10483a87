"""Which thread serves what, on an association of `dicom_transport.AssociationServer`: a
C-STORE whose dataset is streamed to a sink is served on the connection's thread, as soon as
its last fragment is in; anything else on the association's thread, as pynetdicom does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

from orca_imaging.dicom_transport import AssociationServer, file_head, streamed

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


@pytest.fixture
def served() -> Iterator[tuple[int, dict[str, tuple[str, str]], list[MemorySink]]]:
    """A server on a free port; for each message type, the thread its handler ran on and
    the threads of that association: its connection's (`dul`) and its own."""
    threads: dict[str, tuple[str, str]] = {}
    sinks: list[MemorySink] = []

    def receive_into() -> MemorySink:
        sinks.append(MemorySink())
        return sinks[-1]

    def on_store(event: Event) -> int:
        sink = streamed(event, MemorySink)
        assert sink is not None, "the dataset was not streamed"
        sink.kept = True
        threads["store"] = (threading.current_thread().name, _role(event))
        return SUCCESS

    def on_echo(event: Event) -> int:
        threads["echo"] = (threading.current_thread().name, _role(event))
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
    try:
        yield server.server_address[1], threads, sinks
    finally:
        server.shutdown()


def _role(event: Event) -> str:
    current = threading.current_thread()
    if current is event.assoc.dul:
        return "connection"
    return "association" if current is event.assoc else "other"


def test_a_streamed_store_is_served_on_the_connections_thread_and_an_echo_on_the_associations(
    served: tuple[int, dict[str, tuple[str, str]], list[MemorySink]],
) -> None:
    port, threads, sinks = served
    ds = ct_slice()
    scu = AE(ae_title="DEVICE")
    scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    scu.add_requested_context(Verification)
    association = scu.associate("127.0.0.1", port, ae_title="ORCA")
    assert association.is_established
    try:
        assert association.send_c_store(ds).Status == SUCCESS
        assert association.send_c_echo().Status == SUCCESS
    finally:
        association.release()

    assert threads["store"][1] == "connection"
    assert threads["echo"][1] == "association"
    [sink] = sinks
    head = file_head(CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    assert bytes(sink.written) == head + encoded(ds)  # every fragment, in order, as sent
