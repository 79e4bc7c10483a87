"""Which thread serves what, on an association of `dicom_transport.AssociationServer`: a
C-STORE whose dataset is streamed to a sink is served on the connection's thread, as soon as
its last fragment is in; anything else on the association's thread, as pynetdicom does. What
a store's handler leaves for after its response (`after_response`) runs once the response is
sent. And which PDUs go around pynetdicom's decoding, straight to the sink: a streamed
store's dataset fragments but its last, each alone in its PDU. And how long a PDU it reads at
all: pynetdicom would read whatever length a peer's 6-byte header claims, into one buffer
of that size made at once."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, _config, build_context, evt
from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.events import Event
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    P_DATA,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.sop_class import Verification

from orca_imaging.dicom_transport import (
    LONGEST_PDU_BYTES,
    AssociationOver,
    AssociationServer,
    after_response,
    file_head,
    keep_responses_for_requests,
    streamed,
)

SUCCESS = 0x0000
# Small PDUs, so that a slice comes in many fragments after its command.
MAX_PDU = 16_384


class MemorySink:
    """A `DatasetSink` in memory."""

    def __init__(self) -> None:
        self.path = Path("/nonexistent/streamed")
        self.written = bytearray()
        self.kept = False
        self.discarded = threading.Event()

    def write(self, data: bytes | memoryview) -> None:
        self.written += data

    def discard(self) -> None:
        if not self.kept:
            self.written.clear()
            self.discarded.set()


def ct_slice(size: int = 256) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(size * size, dtype="<u2").tobytes()
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
    received_pdus: list[int] = field(default_factory=list)  # their types, if watched
    server: AssociationServer | None = None  # to bind more handlers to
    overs: list[AssociationOver] = field(default_factory=list)  # each association once it is over


def assert_kept_as_sent(served: Served, ds: Dataset) -> None:
    """One store reached a sink, which holds the file head and then every fragment of the
    dataset, in order, byte for byte as the device sent it."""
    [sink] = served.sinks
    head = file_head(CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    assert bytes(sink.written) == head + encoded(ds)


@pytest.fixture(autouse=True)
def no_pynetdicom_log_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the service runs (`dicom_service`): pynetdicom's own handlers, which log each PDU
    and message at debug level, unbound."""
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "none")


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve(watch_received_pdus=False)


@pytest.fixture
def served_to_a_watcher() -> Iterator[Served]:
    """Served, with a handler of the server's received PDUs."""
    yield from _serve(watch_received_pdus=True)


def _serve(*, watch_received_pdus: bool) -> Iterator[Served]:
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

    def on_pdu(event: Event) -> None:
        served.received_pdus.append(event.pdu.pdu_type)  # type: ignore[attr-defined]

    ae = AE(ae_title="ORCA")
    ae.maximum_pdu_size = MAX_PDU
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(Verification)
    watcher = [(evt.EVT_PDU_RECV, on_pdu)] if watch_received_pdus else []
    server = ae.make_server(
        ("127.0.0.1", 0),
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, on_echo), *watcher],
        server_class=AssociationServer,
        receive_into=receive_into,
        on_over=served.overs.append,
    )
    assert isinstance(server, AssociationServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served.port, served.server = server.server_address[1], server
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
    """A pynetdicom device, whose reactor leaves every response to the send waiting for it
    (`keep_responses_for_requests`: two stores in a row lost one to it on busy cores)."""
    scu = AE(ae_title="DEVICE")
    scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    scu.add_requested_context(Verification)
    association = scu.associate("127.0.0.1", port, ae_title="ORCA")
    assert association.is_established
    return keep_responses_for_requests(association)


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
    assert_kept_as_sent(served, ds)


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


P_DATA_TF_TYPE = 0x04


@pytest.fixture
def pdus_decoded_by_the_server(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The types of the PDUs that pynetdicom decodes on any thread but the device's."""
    decoded: list[int] = []
    decode = DULServiceProvider._decode_pdu

    def spied(dul: DULServiceProvider, bytestream: bytearray) -> Any:
        if not dul.assoc.is_requestor:
            decoded.append(bytestream[0])
        return decode(dul, bytestream)

    monkeypatch.setattr(DULServiceProvider, "_decode_pdu", spied)
    return decoded


def store_one_slice(served: Served) -> tuple[Dataset, list[int]]:
    """A device stores one CT slice: the slice, and the types of the PDUs the device sent."""
    ds = ct_slice()
    association = device(served.port)
    sent: list[int] = []
    association.bind(evt.EVT_PDU_SENT, lambda event: sent.append(event.pdu.pdu_type))
    try:
        assert association.send_c_store(ds).Status == SUCCESS
    finally:
        association.release()
    return ds, sent


def test_a_store_s_dataset_fragments_but_its_last_go_around_pynetdicoms_decoding(
    served: Served, pdus_decoded_by_the_server: list[int]
) -> None:
    ds, sent = store_one_slice(served)
    assert sent.count(P_DATA_TF_TYPE) >= 8  # the command and the dataset in 16 KB PDUs
    # The command, then the last fragment (which completes the message).
    assert pdus_decoded_by_the_server.count(P_DATA_TF_TYPE) == 2
    assert_kept_as_sent(served, ds)


def test_a_handler_watching_received_pdus_is_given_every_one(served_to_a_watcher: Served) -> None:
    ds, sent = store_one_slice(served_to_a_watcher)
    assert served_to_a_watcher.received_pdus.count(P_DATA_TF_TYPE) == sent.count(P_DATA_TF_TYPE) >= 8
    assert_kept_as_sent(served_to_a_watcher, ds)


def store_in_p_datas(association: Association, ds: Dataset, *, fragment_pdu: int) -> list[P_DATA]:
    """A C-STORE request for `ds` as pynetdicom's SCU would send it, in PDUs of `fragment_pdu`
    bytes: the command, then the dataset's fragments, one per P-DATA."""
    [context] = [c for c in association.accepted_contexts if c.abstract_syntax == CTImageStorage]
    request = C_STORE()
    request.MessageID, request.Priority = 1, 2
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = CTImageStorage, ds.SOPInstanceUID
    request.DataSet = BytesIO(encoded(ds))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return list(message.encode_msg(context.context_id, fragment_pdu))


def send_raw(association: Association, p_datas: list[P_DATA]) -> None:
    """The P-DATAs' PDUs, in one write."""
    pdus = []
    for p_data in p_datas:
        pdus.append(P_DATA_TF())
        pdus[-1].from_primitive(p_data)
    association.dul.socket.send(b"".join(pdu.encode() for pdu in pdus))  # type: ignore[union-attr]


def test_a_pdu_of_several_fragments_takes_pynetdicoms_path_and_loses_none(
    served: Served, pdus_decoded_by_the_server: list[int]
) -> None:
    """Between fragments alone in their PDUs, one PDU with two: the headers read to look at
    it are given back to pynetdicom, which reads the rest."""
    ds = ct_slice()
    association = device(served.port)
    try:
        command, *fragments = store_in_p_datas(association, ds, fragment_pdu=MAX_PDU // 2)
        assert len(fragments) >= 6
        both = P_DATA()
        both.presentation_data_value_list = [  # as lists: pynetdicom's setter wants [ID, PDV]
            [context_id, data]
            for p_data in fragments[2:4]
            for context_id, data in p_data.presentation_data_value_list
        ]
        send_raw(association, [command, *fragments[:2], both, *fragments[4:]])
        _, response = association.dimse.get_msg(block=True)
        assert response is not None
        assert response.Status == SUCCESS
    finally:
        association.release()
    # The command, the PDU of two fragments and the last.
    assert pdus_decoded_by_the_server.count(P_DATA_TF_TYPE) == 3
    assert_kept_as_sent(served, ds)


def test_an_abort_amid_the_fragments_ends_the_association_and_keeps_nothing(served: Served) -> None:
    ds = ct_slice()
    association = device(served.port)
    command, *fragments = store_in_p_datas(association, ds, fragment_pdu=MAX_PDU)
    send_raw(association, [command, *fragments[:3]])
    association.abort()  # returns once the device's side has ended, not the server's
    deadline = time.monotonic() + 5
    while not served.sinks and time.monotonic() < deadline:  # the server read the command
        time.sleep(0.01)
    [sink] = served.sinks
    assert sink.discarded.wait(5)  # once the association ended: the store never completed
    assert "store" not in served.roles


@pytest.fixture
def server_connection_yields(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each `time.sleep` on a server's connection thread: pynetdicom's reactor gives its core
    away with one at the end of every turn that queued no event."""
    yields: list[float] = []
    sleep = time.sleep

    def counted(seconds: float) -> None:
        current = threading.current_thread()
        if isinstance(current, DULServiceProvider) and not current.assoc.is_requestor:
            yields.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", counted)
    return yields


def test_fragments_already_arriving_are_copied_in_one_turn_without_giving_the_core_away(
    served: Served, server_connection_yields: list[float]
) -> None:
    """A whole store in one write, so each next PDU is there when the last is copied: the
    connection's thread copies them without a yield between (one per fragment gave the core
    away ~1,600 times a round of 400 CT slices, and one sender fell from 229 to 216 files/s)."""
    ds = ct_slice(size=64)
    association = device(served.port)
    try:
        command, *fragments = store_in_p_datas(association, ds, fragment_pdu=256)
        assert len(fragments) >= 32
        yields_before = len(server_connection_yields)
        send_raw(association, [command, *fragments])
        _, response = association.dimse.get_msg(block=True)
        yields = len(server_connection_yields) - yields_before
        assert response is not None
        assert response.Status == SUCCESS
    finally:
        association.release()
    # Waiting for the data and for the response to go out; never one per fragment.
    assert yields < 8
    assert_kept_as_sent(served, ds)


def test_a_connection_reset_amid_the_fragments_is_a_closed_connection_and_keeps_nothing(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The device's connection is reset once the server has copied some fragments: the
    server's next read of a PDU's headers fails, which ends the association as pynetdicom's
    own read would (the connection closed), not as an error in its reactor."""
    ds = ct_slice()
    association = device(served.port)
    command, *fragments = store_in_p_datas(association, ds, fragment_pdu=MAX_PDU)
    send_raw(association, [command, *fragments[:3]])
    copied = len(file_head(CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian)) + sum(
        len(data) - 1 for p_data in fragments[:3] for _, data in p_data.presentation_data_value_list
    )
    deadline = time.monotonic() + 5
    while not (served.sinks and len(served.sinks[0].written) == copied) and time.monotonic() < deadline:
        time.sleep(0.01)
    connection = association.dul.socket.socket  # type: ignore[union-attr]
    assert connection is not None
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with caplog.at_level(logging.ERROR, logger="pynetdicom"):
        # Closed with no linger and no shutdown first (pynetdicom's `close` sends a FIN): a reset.
        connection.close()
        [sink] = served.sinks
        assert sink.discarded.wait(5)  # the association ended: the store never completed
    assert "store" not in served.roles
    assert not [r for r in caplog.records if "Exception in DUL.run()" in r.getMessage()]
    # and the association is reported over with an object left unanswered
    [over] = wait_for(lambda: served.overs)
    assert over.interrupted and not over.association.is_released


def test_an_association_is_reported_once_it_is_over_with_how_long_it_took(served: Served) -> None:
    association = device(served.port)
    assert association.send_c_store(ct_slice()).Status == SUCCESS
    association.release()
    [over] = wait_for(lambda: served.overs)
    assert over.association.is_released and not over.interrupted
    assert 0 < over.seconds < 30


def wait_for(found: Callable[[], list[AssociationOver]], seconds: float = 5) -> list[AssociationOver]:
    """What `found` returns once it is something (the report follows the association's end)."""
    deadline = time.monotonic() + seconds
    while not found() and time.monotonic() < deadline:
        time.sleep(0.01)
    return found()


_A_ASSOCIATE_RQ, _P_DATA_TF, _A_ABORT = 0x01, 0x04, 0x07
_LAST_COMMAND_FRAGMENT = b"\x03"


@contextlib.contextmanager
def peak_allocated() -> Iterator[list[int]]:
    """The most Python memory this process's threads (the server's among them) held at once
    meanwhile, in bytes; the process's own high-water mark would hide anything below an
    earlier test's."""
    peak: list[int] = []
    already = tracemalloc.is_tracing()
    if already:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    try:
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1])
    finally:
        if not already:
            tracemalloc.stop()


def test_a_header_claiming_gigabytes_before_any_association_is_aborted_unread(served: Served) -> None:
    """Anyone who can connect could otherwise take 4 GB of the task with 6 bytes, before
    any AE title is looked at; the next device is served as usual."""
    with (
        peak_allocated() as peak,
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as intruder,
    ):
        intruder.sendall(struct.pack(">BBL", _A_ASSOCIATE_RQ, 0, 0xFFFF_FFFF))
        answer = intruder.recv(64)
    assert answer[:1] == bytes([_A_ABORT])
    assert peak[0] < 16 << 20

    association = device(served.port)
    try:
        assert association.send_c_echo().Status == SUCCESS
    finally:
        association.release()


@pytest.fixture
def threads_died(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """What any thread dies of during the test (uncaught, as Python's hook sees it)."""
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda unraised: died.append(unraised.exc_value))
    return died


def answers_until_quiet(connection: socket.socket, quiet_seconds: float = 1.0) -> bytes:
    """What the server sends until it closes the connection or says nothing for a while."""
    connection.settimeout(quiet_seconds)
    answers = bytearray()
    with contextlib.suppress(TimeoutError):
        while chunk := connection.recv(1 << 16):
            answers += chunk
    return bytes(answers)


def test_nothing_after_a_pdu_too_long_is_read_as_pdus(
    served: Served, log_lines: list[dict[str, Any]]
) -> None:
    """The refused PDU's body has no PDU boundary to find again. Read as PDUs, every 6 bytes
    of it were taken for a header of its own (here each claims 4 GB), and each got a warning
    and another A-ABORT, for as long as the peer kept the connection open: damaged copies of
    one device's association made ~3 million log lines in minutes. One A-ABORT, one warning."""
    claims_4_gb = struct.pack(">BBL", _P_DATA_TF, 0, 0xFFFF_FFFF)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as intruder:
        intruder.sendall(claims_4_gb * 10_000)
        answers = answers_until_quiet(intruder)
    assert (answers[:1], len(answers)) == (bytes([_A_ABORT]), 10)  # one A-ABORT PDU, and only that
    assert [line["message"] for line in log_lines] == ["PDU too long: association aborted"]


def test_our_acceptance_of_a_request_already_aborted_is_dropped(
    served: Served, threads_died: list[BaseException | None]
) -> None:
    """A peer that sends data before our answer to its association request broke the
    protocol: the connection's thread aborts (Sta13) while the association's thread is
    still negotiating. The acceptance it then hands over has nowhere to go; pynetdicom's
    state machine has no transition for it, and the connection's thread died on the
    `InvalidEventError`, its traceback on the task's output (in 281 of 300 damaged copies
    of a device's association, sent without waiting for our answer)."""
    opened: list[Association] = []
    requested, aborted = threading.Event(), threading.Event()

    def negotiate_once_aborted(_: Event) -> None:  # EVT_REQUESTED: before negotiating
        requested.set()
        assert aborted.wait(10)

    def after_the_acceptance_is_handed_over(event: Event) -> None:  # EVT_ACCEPTED
        # ... and before this thread sees the abort and stops the connection's: its thread
        # takes the acceptance first, as it did when it was busy reading the peer's data.
        deadline = time.monotonic() + 10
        dul = event.assoc.dul
        while dul.is_alive() and not dul.to_provider_queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    assert served.server is not None
    served.server.bind(evt.EVT_CONN_OPEN, lambda event: opened.append(event.assoc))
    served.server.bind(evt.EVT_REQUESTED, negotiate_once_aborted)
    served.server.bind(evt.EVT_ACCEPTED, after_the_acceptance_is_handed_over)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as early:
        # A P-DATA before our answer, and more: the connection's thread stays in Sta13 only
        # while there is more to read (ignoring each PDU), then closes the connection.
        early.sendall(association_request() + struct.pack(">BBLLBB", _P_DATA_TF, 0, 6, 2, 1, 0x03) * 20_000)
        first = early.recv(1)
        aborted.set()
        assert requested.wait(10)
        [ended] = opened
        ended.join(10)
        ended.dul.join(10)
        answers = first + answers_until_quiet(early, 0.2)
    assert not ended.is_alive() and not ended.dul.is_alive()
    assert threads_died == []
    assert (answers[:1], len(answers)) == (bytes([_A_ABORT]), 10)  # the abort, and no acceptance after it


def test_a_command_that_cannot_be_decoded_aborts_the_association(
    served: Served, threads_died: list[BaseException | None], log_lines: list[dict[str, Any]]
) -> None:
    """A damaged command set (here one without a Command Field) is answered with an A-ABORT,
    as pynetdicom answers a message it cannot convert; its decoding raised on the
    connection's thread, which died, and the device was left waiting."""
    association = device(served.port)
    [context] = [c for c in association.accepted_contexts if c.abstract_syntax == Verification]
    only_an_id = Dataset()
    only_an_id.MessageID = 1
    command = DicomBytesIO()
    command.is_little_endian, command.is_implicit_VR = True, True
    write_dataset(command, only_an_id)
    damaged = P_DATA()
    damaged.presentation_data_value_list.append(
        (context.context_id, _LAST_COMMAND_FRAGMENT + command.getvalue())
    )
    send_raw(association, [damaged])
    deadline = time.monotonic() + 10
    while not association.is_aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert association.is_aborted
    assert threads_died == []
    assert [
        (line["message"], line["exception_name"]) for line in log_lines if line["level"] == "WARNING"
    ] == [("a message from the peer could not be handled: association aborted", "AttributeError")]


def association_request() -> bytes:
    """An A-ASSOCIATE-RQ PDU from DEVICE to ORCA for verification, as a device sends it."""
    request = A_ASSOCIATE()
    request.application_context_name = APPLICATION_CONTEXT_NAME
    request.calling_ae_title, request.called_ae_title = "DEVICE", "ORCA"
    context = build_context(Verification)
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    longest, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
    longest.maximum_length_received = MAX_PDU
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    request.user_information = [longest, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return bytes(pdu.encode())


@pytest.mark.parametrize("amid_a_store", [False, True], ids=["between-messages", "amid-a-store"])
def test_a_p_data_claiming_more_than_the_longest_aborts_the_association_and_keeps_nothing(
    served: Served, amid_a_store: bool
) -> None:
    """Amid a store, the fragment would be copied in pieces, not read whole; refused all the
    same, as no device sends such a PDU."""
    association = device(served.port)
    if amid_a_store:
        command, *fragments = store_in_p_datas(association, ct_slice(), fragment_pdu=MAX_PDU)
        send_raw(association, [command, fragments[0]])
    association.dul.socket.send(
        struct.pack(">BBLLBB", _P_DATA_TF, 0, LONGEST_PDU_BYTES + 1, LONGEST_PDU_BYTES - 3, 1, 0)
    )  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while not association.is_aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert association.is_aborted
    if amid_a_store:
        [sink] = served.sinks
        assert sink.discarded.wait(5)


def test_a_device_overshooting_our_maximum_pdu_is_still_served(served: Served) -> None:
    """Some devices ignore the maximum we offer; within the longest PDU read, they get in."""
    ds = ct_slice()
    association = device(served.port)
    try:
        # as if the device had read our maximum as 1 MB: the 128 KB slice in one PDU, 8x ours
        for item in association.acceptor.user_information:
            if isinstance(item, MaximumLengthNotification):
                item.maximum_length_received = 1 << 20
        assert association.send_c_store(ds).Status == SUCCESS
    finally:
        association.release()
    assert_kept_as_sent(served, ds)
