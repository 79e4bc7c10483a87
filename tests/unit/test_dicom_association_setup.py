"""What the DICOM service does before a device's first store: the registered nodes are read
at start, not in the first association; each association shares the server's presentation
contexts rather than copying them; a connection counts toward its receiver's load from
the moment it is accepted; and the limits (associations, PDU length) hold."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from orca_imaging import dicom_transport, observability
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.dicom_transport import AssociationServer, LoadBoard, shared_listener
from orca_imaging.errors import DependencyError
from orca_imaging.nodes import DicomNode
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

DEVICE = "PANO1"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., DicomService]]:
    """Starts a service with these nodes, and any other `ServiceConfig` fields given."""
    services: list[DicomService] = []

    def start(nodes: Callable[[], dict[str, DicomNode]], **config_fields: Any) -> DicomService:
        config = ServiceConfig(ae_title="ORCA", host="127.0.0.1", port=0, **config_fields)
        service = DicomService(
            config, Spool(tmp_path, max_bytes=1 << 20), nodes=nodes, worklist=lambda *_: []
        )
        services.append(service)
        service.start()
        return service

    yield start
    for service in services:
        service.stop(timeout=1)


def test_the_nodes_are_read_once_before_any_association(
    started: Callable[..., DicomService],
) -> None:
    reads: list[int] = []

    def nodes() -> dict[str, DicomNode]:
        reads.append(len(reads))
        return {}

    started(nodes)
    assert reads == [0]


def test_a_service_whose_nodes_cannot_be_read_at_start_still_starts(
    started: Callable[..., DicomService], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> dict[str, DicomNode]:
        raise DependencyError("DynamoDB scan DICOM nodes failed")

    warnings: list[str] = []
    monkeypatch.setattr(observability.logger, "warning", lambda message, **_: warnings.append(message))
    service = started(unreachable)
    with socket.create_connection(("127.0.0.1", service.port), timeout=5):
        pass  # listening
    assert warnings == ["DICOM nodes not read at start: the first association reads them"]


def test_an_association_is_given_the_servers_contexts_not_a_copy(
    started: Callable[..., DicomService],
) -> None:
    service = started(lambda: {DEVICE: DicomNode(DEVICE, clinic_id="clinic-a", cidr="127.0.0.1/32")})
    device = AE(ae_title=DEVICE)
    device.add_requested_context(Verification)
    association = device.associate("127.0.0.1", service.port, ae_title="ORCA")
    try:
        assert association.is_established
        (served,) = service.ae.active_associations
        server = served._server  # noqa: SLF001
        assert server is not None
        assert [id(context) for context in served.acceptor.supported_contexts] == [
            id(context) for context in server.contexts
        ]
        assert association.send_c_echo().Status == 0x0000  # negotiation found Verification in them
    finally:
        association.release()


def test_a_connection_still_being_set_up_counts_toward_a_receivers_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between its accept and its association's thread starting, a connection already counts:
    otherwise a burst of devices would all be accepted by the first process awake (see
    `dicom_transport`: a process leaves a connection to one serving fewer)."""
    ae = AE()
    ae.add_supported_context(Verification)
    listener = shared_listener("127.0.0.1", 0)
    server = ae.make_server(("127.0.0.1", 0), server_class=AssociationServer, listening=listener)
    assert isinstance(server, AssociationServer)
    setting_up, go_on = threading.Event(), threading.Event()

    def slow_set_up(request: socket.socket, client_address: Any) -> None:
        setting_up.set()
        go_on.wait(5)

    monkeypatch.setattr(server, "finish_request", slow_set_up)
    device = socket.create_connection(listener.getsockname(), timeout=5)
    accepted, address = server.get_request()
    try:
        assert server.board.mine() == 0
        server.process_request(accepted, address)
        assert setting_up.wait(5)
        assert server.board.mine() == 1  # no association thread yet, but one on its way
        go_on.set()
        deadline = time.monotonic() + 5
        while server.board.mine() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.board.mine() == 0
    finally:
        go_on.set()
        accepted.close()
        device.close()
        server.server_close()


@pytest.fixture
def two_receivers() -> tuple[LoadBoard, LoadBoard]:
    """The board of a task with two receiving processes, as each of them holds it."""
    board = LoadBoard.create(2)
    return LoadBoard.joined(board.handed_to(0)), LoadBoard.joined(board.handed_to(1))


def receiver_server(board: LoadBoard, load: int) -> AssociationServer:
    """A receiver on `board`, serving `load` associations."""
    ae = AE()
    ae.add_supported_context(Verification)
    server = ae.make_server(
        ("127.0.0.1", 0),
        server_class=AssociationServer,
        listening=shared_listener("127.0.0.1", 0),
        board=board,
    )
    assert isinstance(server, AssociationServer)
    board.add(load)
    return server


def waiting_for_turn(server: AssociationServer) -> threading.Thread:
    waiting = threading.Thread(target=server._wait_for_turn)  # noqa: SLF001
    waiting.start()
    return waiting


def test_a_receiver_leaves_a_connection_to_one_serving_fewer(
    two_receivers: tuple[LoadBoard, LoadBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four devices at once on two busy cores: the process awake first must not take them
    all while the other is still waiting to be scheduled."""
    mine, other = two_receivers
    monkeypatch.setattr(dicom_transport, "_PATIENCE_PER_ASSOCIATION_SECONDS", 60.0)
    server = receiver_server(mine, 1)
    try:
        waiting = waiting_for_turn(server)
        waiting.join(0.2)
        assert waiting.is_alive()  # the other serves none: the connection is its
        other.add(1)  # it took the connection
        waiting.join(5)
        assert not waiting.is_alive()  # level again: either may take the next
    finally:
        server.server_close()


def test_a_receiver_that_hangs_delays_the_others_only_so_long(
    two_receivers: tuple[LoadBoard, LoadBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = two_receivers
    monkeypatch.setattr(dicom_transport, "_PATIENCE_PER_ASSOCIATION_SECONDS", 0.05)
    server = receiver_server(mine, 3)  # the other at 0, and never more
    try:
        waiting = waiting_for_turn(server)
        waiting.join(5)
        assert not waiting.is_alive()
    finally:
        server.server_close()


def test_a_lone_receiver_and_the_least_busy_one_accept_at_once(
    two_receivers: tuple[LoadBoard, LoadBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dicom_transport, "_PATIENCE_PER_ASSOCIATION_SECONDS", 60.0)
    mine, other = two_receivers
    alone = LoadBoard.joined(LoadBoard.create(1).handed_to(0))
    servers = [receiver_server(alone, 5), receiver_server(mine, 2)]
    other.add(2)
    try:
        for server in servers:
            waiting = waiting_for_turn(server)
            waiting.join(5)
            assert not waiting.is_alive()
    finally:
        for server in servers:
            server.server_close()


def test_each_association_is_on_the_board_until_it_is_over(
    two_receivers: tuple[LoadBoard, LoadBoard],
) -> None:
    """Counted from its accept to its end, however it ends (here: released, and refused)."""
    mine, other = two_receivers
    ae = AE(ae_title="ORCA")
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    listener = shared_listener("127.0.0.1", 0)
    server = ae.make_server(("127.0.0.1", 0), server_class=AssociationServer, listening=listener, board=mine)
    assert isinstance(server, AssociationServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def until(load: int) -> int:
        deadline = time.monotonic() + 5
        while other.least_of_others() != load and time.monotonic() < deadline:
            time.sleep(0.01)
        return other.least_of_others()

    device = AE(ae_title=DEVICE)
    device.add_requested_context(Verification)
    try:
        first = device.associate(*listener.getsockname(), ae_title="ORCA")
        second = device.associate(*listener.getsockname(), ae_title="ORCA")
        assert first.is_established and second.is_established
        assert until(2) == 2
        first.release()
        assert until(1) == 1
        refused = device.associate(*listener.getsockname(), ae_title="NOT-ORCA")
        assert refused.is_rejected
        assert until(1) == 1  # not left counted once refused
        second.release()
        assert until(0) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_a_connection_whose_set_up_thread_cannot_start_is_not_left_counted(
    two_receivers: tuple[LoadBoard, LoadBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, _ = two_receivers
    server = receiver_server(mine, 0)

    def no_thread(*_: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(socketserver.ThreadingMixIn, "process_request", no_thread)
    try:
        with socket.socket() as request, pytest.raises(RuntimeError):
            server.process_request(request, ("127.0.0.1", 1))
        assert mine.mine() == 0
    finally:
        server.server_close()


@pytest.mark.parametrize("failing", ["set-up", "thread start"])
def test_an_association_that_never_runs_is_not_left_counted(
    two_receivers: tuple[LoadBoard, LoadBoard], monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Out of descriptors, its wake-up socket cannot be made; out of threads, its thread
    cannot start. Left counted, the receiver would look busier than it is for good, and
    the others would take its share of devices."""
    mine, other = two_receivers
    failure = {
        "set-up": OSError(24, "Too many open files"),
        "thread start": RuntimeError("can't start new thread"),
    }

    def fails(*_: Any) -> None:
        raise failure[failing]

    if failing == "set-up":
        monkeypatch.setattr(dicom_transport._WakingDul, "start_waking", fails)  # noqa: SLF001
    else:
        monkeypatch.setattr(Association, "start", fails)
    ae = AE(ae_title="ORCA")
    ae.add_supported_context(Verification)
    listener = shared_listener("127.0.0.1", 0)
    server = ae.make_server(("127.0.0.1", 0), server_class=AssociationServer, listening=listener, board=mine)
    assert isinstance(server, AssociationServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as device:
            assert device.recv(1) == b""  # closed by the server, with no association
        deadline = time.monotonic() + 5
        while other.least_of_others() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert other.least_of_others() == 0
    finally:
        server.shutdown()
        server.server_close()


def test_one_association_beyond_the_maximum_is_rejected_and_the_maximum_pdu_is_offered(
    started: Callable[..., DicomService], monkeypatch: pytest.MonkeyPatch
) -> None:
    refusals: list[dict[str, Any]] = []
    monkeypatch.setattr(observability.logger, "warning", lambda _, extra: refusals.append(extra))
    node = DicomNode(DEVICE, clinic_id="clinic-a")
    service = started(lambda: {DEVICE: node}, max_associations=1, max_pdu_bytes=65_536)
    device = AE(ae_title=DEVICE)
    device.add_requested_context(Verification)
    first = device.associate("127.0.0.1", service.port, ae_title="ORCA")
    try:
        assert first.is_established
        assert first.acceptor.maximum_length == 65_536  # what the device may send us per PDU
        second = device.associate("127.0.0.1", service.port, ae_title="ORCA")
        assert second.is_rejected
    finally:
        first.release()
    assert [refusal["reason"] for refusal in refusals] == ["Local limit exceeded"]
    deadline = time.monotonic() + 5
    while service.ae.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    third = device.associate("127.0.0.1", service.port, ae_title="ORCA")  # a place again
    assert third.is_established
    third.release()
