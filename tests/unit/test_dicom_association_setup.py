"""What the DICOM service does before a device's first store: the registered nodes are read
at start, not in the first association; each association shares the server's presentation
contexts rather than copying them; and a connection counts toward its receiver's load from
the moment it is accepted."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from orca_imaging import observability
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.dicom_transport import AssociationServer, shared_listener
from orca_imaging.errors import DependencyError
from orca_imaging.nodes import DicomNode
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

DEVICE = "PANO1"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[[Callable[[], dict[str, DicomNode]]], DicomService]]:
    services: list[DicomService] = []

    def start(nodes: Callable[[], dict[str, DicomNode]]) -> DicomService:
        config = ServiceConfig(ae_title="ORCA", host="127.0.0.1", port=0)
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
    started: Callable[[Callable[[], dict[str, DicomNode]]], DicomService],
) -> None:
    reads: list[int] = []

    def nodes() -> dict[str, DicomNode]:
        reads.append(len(reads))
        return {}

    started(nodes)
    assert reads == [0]


def test_a_service_whose_nodes_cannot_be_read_at_start_still_starts(
    started: Callable[[Callable[[], dict[str, DicomNode]]], DicomService], monkeypatch: pytest.MonkeyPatch
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
    started: Callable[[Callable[[], dict[str, DicomNode]]], DicomService],
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
    `dicom_transport`: each process waits in proportion to its load before accepting)."""
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
        assert server._load() == 0  # noqa: SLF001
        server.process_request(accepted, address)
        assert setting_up.wait(5)
        assert server._load() == 1  # noqa: SLF001  # no association thread yet, but one on its way
        go_on.set()
        deadline = time.monotonic() + 5
        while server._load() and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        assert server._load() == 0  # noqa: SLF001
    finally:
        go_on.set()
        accepted.close()
        device.close()
        server.server_close()
