"""The DICOM service: Verification, Storage and Modality Worklist SCP for the clinics'
X-ray devices.

A C-STORE gets Success only once the object, exactly as received (no decoding, no
transcoding), is fsynced to the spool. Any failure before that maps to the DIMSE status
PS3.4 gives for it: a full spool is 0xA700 (Refused: Out of Resources), an object that
cannot be read as a dataset 0xC000 (Error: Cannot Understand), anything else 0xC001. The
drainer (`drainer.py`) moves spooled objects to S3; the sender never waits for S3.

Who may send: the calling AE title must be a registered node (see `DicomNodes`); a node
with a CIDR must also call from inside it; the called AE title must be ours. Anything else
is refused at association. Logs carry AE titles, addresses and ids, never patient data.

A Worklist C-FIND answers from the calling node's clinic's worklist only (`worklist_scp.py`).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import
    ModalityWorklistInformationFind,
    Verification,
)

from orca_imaging.dicom_transport import (
    AssociationOver,
    AssociationServer,
    LoadBoard,
    after_response,
    streamed,
)
from orca_imaging.errors import DependencyError, SpoolFullError
from orca_imaging.nodes import DicomNode
from orca_imaging.observability import logger, metrics
from orca_imaging.spool import Arrival, Receiving

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Iterator, Mapping

    from pydicom.dataset import Dataset
    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from orca_imaging.spool import Spool

# The health check's own calling AE title: admitted from loopback only, and for C-ECHO only.
HEALTH_AE = "ORCA-HEALTH"
# An A-ASSOCIATE-RJ's result, source and reason (PS3.8 9.3.4).
_REJECTED_PERMANENT, _SERVICE_USER, _CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03

# PS3.4 Annex B.2.3 / C.4.2.1.4 statuses.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0xC001
# PS3.4 C.4.1.1.4: C-FIND.
PENDING = 0xFF00
CANCELLED = 0xFE00
UNABLE_TO_PROCESS = 0xC001


# pynetdicom's standard handlers describe each PDU and message to its logger, which goes
# nowhere in the service (pynetdicom gives it a NullHandler; nothing configures the root
# logger): a CT slice's store spent ~7% of its CPU on lines nobody reads. Ours log what an
# operator needs, as JSON.
_config.LOG_HANDLER_LEVEL = "none"


@dataclass(frozen=True)
class ServiceConfig:
    ae_title: str
    host: str
    port: int
    max_associations: int = 16
    max_pdu_bytes: int = 128 * 1024  # pynetdicom's 16 KB default halves throughput on large images
    # DICOM TLS (PS3.15 B.1) on a port of its own, beside the plain one.
    tls: ssl.SSLContext | None = None
    tls_port: int = 2762
    # Listening sockets shared with the task's other processes, by port (see
    # dicom_transport.py); a port not here is opened by this service alone.
    listening: Mapping[int, socket.socket] = field(default_factory=dict)
    # Where those processes count the associations each serves, to spread connections.
    board: LoadBoard | None = None


class DicomService:
    """One pynetdicom AE serving Verification and every storage SOP class."""

    def __init__(
        self,
        config: ServiceConfig,
        spool: Spool,
        nodes: Callable[[], dict[str, DicomNode]],
        worklist: Callable[[str, Dataset], list[Dataset]],
    ) -> None:
        self.config = config
        self.spool = spool
        self._nodes = nodes
        self._worklist = worklist
        # How many associations this process serves: its plain and TLS servers count together.
        self._board = config.board or LoadBoard.alone()
        self._server: AssociationServer | None = None
        self._tls_server: AssociationServer | None = None
        # Each association's stores so far, for the line saying how it ended.
        self._tallies: weakref.WeakKeyDictionary[Association, _Tally] = weakref.WeakKeyDictionary()
        self._tallies_lock = threading.Lock()
        ae = _NodeCheckingAE(ae_title=config.ae_title, nodes=nodes)
        ae.maximum_associations = config.max_associations
        ae.maximum_pdu_size = config.max_pdu_bytes
        ae.require_called_aet = True
        ae.add_supported_context(Verification)
        ae.add_supported_context(ModalityWorklistInformationFind)
        for context in AllStoragePresentationContexts:
            # Every transfer syntax pydicom knows, so each object is kept as it was encoded.
            if context.abstract_syntax:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae = ae

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        return int(self._tls_server.server_address[1]) if self._tls_server else None

    def start(self) -> None:
        self._read_nodes_ahead()
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ACSE_RECV, self._on_acse_received),
            (evt.EVT_ABORTED, self._on_aborted),  # by either side
        ]
        self._server = self._serve(self.config.port, handlers)
        if self.config.tls is not None:  # same AE, same checks: only the transport differs
            self._tls_server = self._serve(self.config.tls_port, handlers, self.config.tls)
        logger.info(
            "DICOM service listening",
            extra={"ae_title": self.config.ae_title, "port": self.port, "tls_port": self.tls_port},
        )

    def _read_nodes_ahead(self) -> None:
        """The registered nodes, read once before the first association rather than in it: the
        first read also makes the DynamoDB client (~70 ms), which a device would wait for."""
        try:
            self._nodes()
        except DependencyError:
            logger.warning("DICOM nodes not read at start: the first association reads them")

    def _serve(self, port: int, handlers: list[Any], tls: ssl.SSLContext | None = None) -> AssociationServer:
        server = self.ae.make_server(
            (self.config.host, port),
            evt_handlers=handlers,
            ssl_context=tls,
            server_class=AssociationServer,
            listening=self.config.listening.get(port),
            board=self._board,
            receive_into=self.spool.receive,
            on_over=self._on_over,
        )
        assert isinstance(server, AssociationServer)
        threading.Thread(target=server.serve_forever, name=f"dicom-server-{port}", daemon=True).start()
        return server

    def stop(self, timeout: float = 30) -> None:
        """Stop accepting, let in-flight associations finish (up to `timeout`), then close."""
        servers = [server for server in (self._server, self._tls_server) if server is not None]
        for server in servers:
            if server.socket is not None:
                server.socket.close()
        deadline = time.monotonic() + timeout
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.1)
        for server in servers:
            server.shutdown()
        self._server = self._tls_server = None

    # ------------------------------------------------------------ handlers
    def _node_of(self, event: Event) -> DicomNode | None:
        calling = _calling_ae(event)
        if calling == HEALTH_AE:
            return DicomNode(HEALTH_AE, clinic_id="", cidr="127.0.0.1/32")
        return self._nodes().get(calling)

    def _on_requested(self, event: Event) -> None:
        """A registered AE title calling from outside its node's network is rejected before
        negotiation, as a title not recognised (the standard has no reason closer to it). As
        pynetdicom's own rejections do, the association then waits for the rejection to be
        sent and the connection closed: otherwise the socket is closed under it."""
        node = self._node_of(event)
        if node is not None and not node.admits(event.assoc.requestor.address):
            event.assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER, _CALLING_AE_NOT_RECOGNISED)
            _count_refusal(event, "address outside the node's network")
            event.assoc.kill()

    def _on_rejected(self, event: Event) -> None:
        """Turned away at association by pynetdicom (a calling AE title not registered, a
        called one not ours, too many associations)."""
        rejection = event.assoc.acceptor.primitive
        assert rejection is not None  # pynetdicom sets it as it sends the rejection
        _count_refusal(event, rejection.reason_str)

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        node = self._node_of(event)
        if node is None or node.ae_title == HEALTH_AE:
            yield UNABLE_TO_PROCESS, None
            return
        try:
            matches = self._worklist(node.clinic_id, event.identifier)
        except Exception:
            metrics.add_metric(name="DicomWorklistQueriesFailed", unit="Count", value=1)
            logger.exception("worklist query failed", extra={"calling_ae": node.ae_title})
            yield UNABLE_TO_PROCESS, None
            return
        logger.info("worklist query", extra={"calling_ae": node.ae_title, "matches": len(matches)})
        for match in matches:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, match

    def _on_store(self, event: Event) -> int:
        status = self._store(event)
        tally = self._tally(event.assoc)
        if status == SUCCESS:
            tally.kept += 1
        else:
            tally.failed += 1
        return status

    def _store(self, event: Event) -> int:
        node = self._node_of(event)
        if node is None or node.ae_title == HEALTH_AE:  # removed since the association began
            return PROCESSING_FAILURE
        try:
            sop_instance = str(event.request.AffectedSOPInstanceUID)  # type: ignore[union-attr]
            receiving = streamed(event, Receiving) or self._received_whole(event)
        except Exception:  # a dataset the peer encoded wrongly
            metrics.add_metric(name="DicomStoresFailed", unit="Count", value=1)
            return CANNOT_UNDERSTAND
        arrival = Arrival.now(
            clinic_id=node.clinic_id,
            calling_ae=node.ae_title,
            source_address=event.assoc.requestor.address,
            sop_instance_uid=sop_instance,
        )
        try:
            receiving.keep(arrival)
        except SpoolFullError:
            metrics.add_metric(name="DicomStoresRefused", unit="Count", value=1)
            logger.error("C-STORE refused: spool full", extra={"image_id": arrival.image_id})
            return OUT_OF_RESOURCES
        except Exception:
            receiving.discard()
            metrics.add_metric(name="DicomStoresFailed", unit="Count", value=1)
            logger.exception("C-STORE failed", extra={"image_id": arrival.image_id})
            return PROCESSING_FAILURE

        def spooled() -> None:
            metrics.add_metric(name="DicomObjectsReceived", unit="Count", value=1)
            logger.info(
                "object spooled",
                extra={
                    "image_id": arrival.image_id,
                    "clinic_id": arrival.clinic_id,
                    "calling_ae": arrival.calling_ae,
                },
            )

        after_response(event, spooled)  # the device is waiting for the Success, not for these
        return SUCCESS

    def _tally(self, association: Association) -> _Tally:
        """Its tally, made at its first store or abort (not one made and dropped per store)."""
        with self._tallies_lock:
            tally = self._tallies.get(association)
            if tally is None:
                tally = self._tallies[association] = _Tally()
            return tally

    def _on_acse_received(self, event: Event) -> None:
        primitive = event.primitive  # type: ignore[attr-defined]
        if isinstance(primitive, A_ABORT):
            self._tally(event.assoc).ending = "aborted by the device"
        elif isinstance(primitive, A_P_ABORT):  # the connection closed, or our DUL aborted
            self._tally(event.assoc).ending = "connection closed or invalid"

    def _on_aborted(self, event: Event) -> None:
        """Aborted: by what came in (above), or else here (a timeout, a message we could
        not handle)."""
        tally = self._tally(event.assoc)
        tally.ending = tally.ending or "aborted here"

    def _on_over(self, over: AssociationOver) -> None:
        """One line for each association a device had accepted: how it ended, how long it
        took, what its stores came to. The first thing to read when a device says sending
        failed, or a clinic asks whether a study came in. One cut off with an object
        arriving (the device was never answered for it) is counted: devices resend, but one
        whose transfers keep being cut off is not getting its images to us."""
        association = over.association
        with self._tallies_lock:
            tally = self._tallies.pop(association, _Tally())
        calling = association.requestor.ae_title.strip()  # set as it was negotiated
        # Not one a device had accepted: refused (logged as it was), the health check's, or
        # a connection that never asked for one (a port scan, a TCP probe).
        if association.is_rejected or calling in ("", HEALTH_AE):
            return
        outcome = "released" if association.is_released else tally.ending or "cut off"
        if over.interrupted:
            metrics.add_metric(name="DicomStoresInterrupted", unit="Count", value=1)
        try:
            node = self._nodes().get(calling)
        except DependencyError:  # the line matters more than its clinic
            node = None
        logger.info(
            "association ended",
            extra={
                "outcome": outcome,
                "calling_ae": calling,
                "clinic_id": node.clinic_id if node else None,
                "address": association.requestor.address,
                "seconds": round(over.seconds, 3),
                "objects_kept": tally.kept,
                "stores_failed": tally.failed,
                "object_interrupted": over.interrupted,
            },
        )

    def _received_whole(self, event: Event) -> Receiving:
        """A dataset that came in one piece with its command (small enough to be gathered in
        memory, as pynetdicom does), on its way to the spool like a streamed one."""
        return self.spool.receive(event.encoded_dataset())  # file meta + the dataset as received


@dataclass
class _Tally:
    """What one association's stores came to so far, and how it was aborted, if it was."""

    kept: int = 0
    failed: int = 0
    ending: str | None = None  # how it was aborted, if it was


def _calling_ae(event: Event) -> str:
    """The calling AE title as the association request gave it: pynetdicom copies it onto
    `requestor.ae_title` only while negotiating, after EVT_REQUESTED (where reading that gave
    an empty title, and no node's network was ever checked)."""
    request = event.assoc.requestor.primitive
    return request.calling_ae_title.strip() if request is not None else ""


def _count_refusal(event: Event, reason: str) -> None:
    """Counted and logged with its reason: the first thing a clinic asks when a new device
    sends nothing. AE titles and the address are the device's settings, not PHI."""
    request = event.assoc.requestor.primitive
    metrics.add_metric(name="DicomAssociationsRefused", unit="Count", value=1)
    logger.warning(
        "association refused",
        extra={
            "reason": reason,
            "calling_ae": _calling_ae(event),
            "called_ae": request.called_ae_title.strip() if request is not None else "",
            "address": event.assoc.requestor.address,
        },
    )


def echo(port: int, ae_title: str) -> bool:
    """C-ECHO as the health check's AE to a service on this host (any of the task's receiving
    processes): does it answer Success? The health check."""
    scu = AE(ae_title=HEALTH_AE)
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == SUCCESS
    finally:
        assoc.release()


class _NodeCheckingAE(AE):
    """An AE whose allowed calling AE titles are the registered nodes, read at each
    association, so a node added or removed counts at once."""

    def __init__(self, *, ae_title: str, nodes: Callable[[], dict[str, DicomNode]]) -> None:
        super().__init__(ae_title=ae_title)
        self._registered = nodes

    @property
    def require_calling_aet(self) -> list[str]:
        # pynetdicom refuses (0x01, 0x01, 0x03: calling AE title not recognised) a title not
        # in this list; the health AE keeps it non-empty, so the check is on with no nodes.
        return sorted({*self._registered(), HEALTH_AE})

    @require_calling_aet.setter
    def require_calling_aet(self, value: Any) -> None:  # pynetdicom sets it in __init__
        pass
