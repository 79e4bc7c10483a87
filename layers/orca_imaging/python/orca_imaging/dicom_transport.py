"""pynetdicom's threaded association server, with the changes the DICOM service needs for
throughput. All go through pynetdicom's own extension points (`AE.make_server`'s
`server_class` and `request_handler`).

- **A PDU is read in one buffer.** pynetdicom reads a PDU 4 KB at a time, growing a
  bytearray: 2,000 `recv` calls and as many reallocations for an 8 MB radiograph. Reading
  straight into a buffer of the PDU's size took one association from ~190 to ~300 MB/s on
  panoramics here. That buffer is made before the PDU arrives, at the length its header
  claims: so no PDU longer than `LONGEST_PDU_BYTES` is read; it ends the association.
- **Nothing waits for a poll.** pynetdicom's two threads per association poll each other
  every millisecond: the association's for a decoded message, the connection's for a
  response to send and for the next PDU. A device sends the next object only once it has
  the last one's response, so those sleeps added up to ~2 ms a store. Here each thread
  blocks on what it waits for (the message queue, woken too by a release request; the
  socket and a wake-up on every response) and polls its timers only when idle.
- **A C-STORE's dataset is written as it arrives** (`receive_into`), to a sink the service
  gives, instead of being gathered in memory and handed over whole: an 8 MB radiograph was
  copied three more times on its way to the spool (into a growing buffer, out of it, and
  behind its file meta), and the disk only began writing once the last byte was in.
  pynetdicom's own version of this (`STORE_RECV_CHUNKED_DATASET`) writes to a temporary
  file of its choosing; ours uses its hook (the message's `_data_set_file`, closed and
  unlinked by pynetdicom after the handler) with a sink of ours.
- **A dataset fragment goes from the connection to the sink through one buffer**
  (`_WakingDul._read_pdu_data`): once the PDU's and its PDV's headers show a streamed
  store's dataset fragment, not its last, the fragment is read into a buffer reused for
  each and written on. pynetdicom would copy it four more times (a new buffer, `bytes`, the
  PDV, the fragment) and pass it through its state machine (DT-2, which leaves the state
  as it was) and its DIMSE provider (which writes it to the stream). The fragments that
  follow while the next PDU is already arriving are copied in the same turn of the
  connection's reactor (see `_read_pdu_data` for why). One CT sender, alternating rounds:
  236 -> 254 files/s, the receiver's user CPU per slice 1.27 -> 1.12 ms; one sender of 8 MB
  radiographs: the receiver's CPU 11-23% less, its rate set by the sender and the disk.
  Whatever else arrives, or with a handler watching received PDUs or data, takes
  pynetdicom's path, the headers already read included.
- **A streamed C-STORE is served on the connection's thread**, once its last fragment is
  in, rather than queued for the association's thread: the handler's fsync and the
  response follow the last byte with no hand-over between threads (two a store, each
  waking a thread that then waits for the GIL). That took ~0.3 ms of each CT slice, 5-8%
  (timed phase by phase in alternating runs). A device sends the next object only once it
  has the last one's response, so the connection has nothing else to read meanwhile.
  Everything else (a C-ECHO, a C-FIND, a dataset that came whole with its command) is
  served as pynetdicom does, on the association's thread.
- **What can wait for the response waits for it** (`after_response`): a store's log line
  and metric run on the connection's thread once the response is sent, while the device
  prepares its next object. In the service they took ~0.35 ms of each CT slice, about 7%:
  several times what they take in a loop, as they run with caches cold from the slice.
- **Several processes accept from one listening socket** (`shared_listener`, opened once
  and inherited by each): pynetdicom holds the GIL for most of a transfer, so one process
  uses one core however many devices send at once. Every process is woken by a new
  connection. Each process keeps count, on a board all of them read (`LoadBoard`, shared
  memory), of the connections it has accepted and not yet seen end, from the accept to the
  association thread's last step; one serving more than another leaves the connection to
  it: the one serving fewest takes it, and the others' accepts find nothing. So devices
  connecting at once spread evenly over the processes. A process waits for a less busy one
  only so long (`_PATIENCE_PER_ASSOCIATION_SECONDS`), so one that hangs does not stall
  every device. (With `SO_REUSEPORT`, tried first, the kernel hashes each connection to a
  process: four senders on two processes were split 3:1 or 4:0 more often than not, and a
  process that hangs keeps being handed its share. Then each process waited 10 ms per
  association it served before accepting, without knowing the others': on busy cores the
  other was not always scheduled within that, and four PX senders were split 3:1 or 4:0 in
  about one bench run in six, at half the rate. And counting pynetdicom's live association
  threads plus those being set up counted a new one twice for a moment, long enough for
  the other process to read it: one test run in eight split four devices 3:1.)
- **A C-STORE's response is packed here** (`store_response`), not built as a pydicom
  dataset and encoded twice (once for its group length): ~0.35 ms of each store, ~7% of a
  CT slice's. Anything but the usual response (an error comment, an offending element, a
  handler watching sent messages) goes through pynetdicom's own path. And each association
  is given the server's presentation contexts, not a deep copy (`_SharedContexts`).

Two changes are not for throughput:
- **A TLS handshake is made on the connection's own thread**, within the association
  request's time limit (pynetdicom's ACSE timeout), not on the thread that accepts. There,
  as pynetdicom makes it, a peer that connected and sent nothing (a hung device, anyone
  inside the VPN) held up every device after it, for as long as it kept the connection
  open. A handshake that fails is logged with the address and the error's type, and
  counted as a refusal.
- The associations we request (a PACS query or retrieve) never have a response a
  `send_*` waits for taken by their reactor (`keep_responses_for_requests`).
"""

from __future__ import annotations

import mmap
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pynetdicom.dimse import _QueueItem
    from pynetdicom.events import Event

# How often an idle association still looks at its timers, a release and an abort.
_IDLE_CHECK_SECONDS = 0.01
# Connections waiting to be accepted by any process (socketserver's own default is 5).
_SHARED_BACKLOG = 128
# How long a process waits, per association it serves beyond the least busy one, for that
# one to take a connection: ample for a process on busy cores to be scheduled, and short
# enough that a device barely notices one that hangs.
_PATIENCE_PER_ASSOCIATION_SECONDS = 0.1
_PATIENCE_POLL_SECONDS = 0.001
# A presentation data value's item length and context ID, and its header byte for the last
# (here: only) fragment of a command (PS3.8 E.2).
_PDV_HEADER_BYTES = 6
_PDU_HEADER_BYTES = 6
_P_DATA_TF = 0x04
_FRAGMENT_BUFFER_BYTES = 1 << 17  # a 128 KB PDU's fragment in one read
_DISCARD_BYTES = 1 << 16
# pynetdicom's state after the association ended on the wire: Sta13, "awaiting transport
# connection close indication" (PS3.8 9.2).
_AWAITING_CLOSE = "Sta13"
# The longest PDU read: its length is allocated at once (`_WholePduSocket.recv`), so a peer
# is not to choose it freely (6 bytes claiming 4 GB would take 4 GB, before any AE title is
# checked). Far above what peers send: dcmtk offers at most 128 KiB, pynetdicom splits by
# the maximum we offer. A device that overshoots our maximum still gets in under this.
LONGEST_PDU_BYTES = 16 << 20
_LAST_COMMAND_FRAGMENT = b"\x03"
# A C-STORE response's Command Field, and the Command Data Set Type saying no dataset follows.
_STORE_RESPONSE = 0x8001
_NO_DATASET = 0x0101


class DatasetSink(Protocol):
    """Where a C-STORE's dataset goes as it arrives: the DICOM file (preamble, file meta and
    the dataset exactly as received), written in order."""

    path: Path

    def write(self, data: bytes | memoryview) -> None:
        """`data` is lent: its buffer is reused once this returns."""

    def discard(self) -> None:
        """Drop it: the store failed, or never completed. Nothing, once the handler kept it."""


Sink = TypeVar("Sink", bound=DatasetSink)


def streamed(event: Event, sink_type: type[Sink]) -> Sink | None:
    """The sink a C-STORE request's dataset was written to, if it was (see `receive_into`)."""
    stream = getattr(event.request, "_dataset_file", None)
    sink = stream.sink if isinstance(stream, _Stream) else None
    return sink if isinstance(sink, sink_type) else None


def after_response(event: Event, work: Callable[[], None]) -> None:
    """Run `work` (a log line, a metric: nothing the response depends on) once the
    connection's thread is next free: for a store served on it, once its response is sent.
    At once on an association not served by `AssociationServer`."""
    dul = event.assoc.dul
    if isinstance(dul, _WakingDul):
        dul.after_response.append(work)
    else:
        work()


def file_head(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """A DICOM file's start: the preamble, `DICM` and the file meta, byte for byte as
    pynetdicom's `create_file_meta` and `encode_file_meta` make it, packed here rather than
    through a pydicom dataset, which took ~0.23 ms of each store (~5% of a CT slice's)."""
    elements = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\0\1"),  # File Meta Information Version
            _meta_element(0x0002, b"UI", _padded(sop_class, b"\0")),
            _meta_element(0x0003, b"UI", _padded(sop_instance, b"\0")),
            _meta_element(0x0010, b"UI", _padded(transfer_syntax, b"\0")),
            _meta_element(0x0012, b"UI", _padded(PYNETDICOM_IMPLEMENTATION_UID, b"\0")),
            _meta_element(0x0013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
        )
    )
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"\0" * 128 + b"DICM" + group_length + elements


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    """One element of group 0002, in explicit VR little endian (PS3.5 7.1.2): OB has a
    reserved word and a 4-byte length, the short VRs a 2-byte length."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def store_response(primitive: C_STORE) -> bytes | None:
    """A C-STORE response's command set, byte for byte as pynetdicom encodes it (PS3.7 9.3.1.2,
    implicit VR little endian): None for anything but the usual fields, which pynetdicom's
    own path then sends. UnicodeEncodeError when a UID is not ASCII."""
    if (
        primitive.MessageIDBeingRespondedTo is None
        or primitive.Status is None
        or primitive.OffendingElement is not None
        or primitive.ErrorComment is not None
    ):
        return None
    uids = {0x0002: primitive.AffectedSOPClassUID, 0x1000: primitive.AffectedSOPInstanceUID}
    values = {
        **{element: _padded(uid, b"\0") for element, uid in uids.items() if uid is not None},
        0x0100: struct.pack("<H", _STORE_RESPONSE),  # Command Field
        0x0120: struct.pack("<H", primitive.MessageIDBeingRespondedTo),
        0x0800: struct.pack("<H", _NO_DATASET),  # Command Data Set Type
        0x0900: struct.pack("<H", primitive.Status),
    }
    # In ascending tag order (PS3.5 7.1), after the group's length.
    elements = b"".join(_command_element(element, values[element]) for element in sorted(values))
    return _command_element(0x0000, struct.pack("<I", len(elements))) + elements


def _command_element(element: int, value: bytes) -> bytes:
    """One element of group 0000, in implicit VR little endian: tag, 4-byte length, value."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    """The value in ASCII, padded to an even length; UnicodeEncodeError when it is not ASCII."""
    value = text.encode("ascii")
    return value + pad if len(value) % 2 else value


def _peek_lone_fragment(
    connection: _WholePduSocket, headers: bytes, context_id: int
) -> tuple[bytes, int | None]:
    """Given a PDU's header, read: the headers read so far (its PDV's too, when it has one),
    and the length of the dataset fragment that follows them when the PDU is one P-DATA-TF
    holding one PDV of `context_id`'s dataset, not its last fragment (PS3.8 9.3.5, E.2);
    None for anything else."""
    if headers[0] != _P_DATA_TF:
        return headers, None
    (pdu_length,) = struct.unpack_from(">L", headers, 2)
    if pdu_length <= _PDV_HEADER_BYTES:  # reading a PDV's header would read past the PDU
        return headers, None
    headers += connection.recv(_PDV_HEADER_BYTES)
    if len(headers) < _PDU_HEADER_BYTES + _PDV_HEADER_BYTES:
        return headers, None
    item_length, pdv_context, control = struct.unpack_from(">LBB", headers, _PDU_HEADER_BYTES)
    # The PDV fills the PDU; a dataset's (bit 0 clear), not its last fragment (bit 1 clear).
    if item_length + 4 == pdu_length and control & 0b11 == 0 and pdv_context == context_id:
        return headers, item_length - 2  # less its context ID and control header
    return headers, None


class _Stream:
    """A sink in the shape pynetdicom's chunked receive gives `_data_set_file`: written
    per fragment, `file.flush()`ed, then closed and its `name` unlinked after the handler."""

    def __init__(self, sink: DatasetSink, streams: set[_Stream]) -> None:
        self.sink = sink
        self.name = str(sink.path)
        self.file = self  # pynetdicom flushes `file`; every write here is already unbuffered
        self._streams = streams
        streams.add(self)

    def write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._streams.discard(self)
        self.sink.discard()


class _WholePduSocket(AssociationSocket):
    _unread = b""  # read to look at, for the next `recv` to return first

    def recv(self, nr_bytes: int) -> bytearray:
        """`nr_bytes` read into one buffer; fewer only when the peer closed the connection
        (pynetdicom's contract, which its state machine relies on)."""
        assert self.socket is not None
        if self._unread:
            first, self._unread = self._unread[:nr_bytes], self._unread[nr_bytes:]
            rest = self.recv(nr_bytes - len(first)) if nr_bytes > len(first) else b""
            return bytearray(first) + rest
        buffer = bytearray(nr_bytes)
        with memoryview(buffer) as view:  # released on return: pynetdicom may grow the buffer
            received = self.recv_fully_into(view)
        return buffer if received == nr_bytes else buffer[:received]

    def unread(self, data: bytes) -> None:
        self._unread = data + self._unread

    def drop_unread(self) -> None:
        self._unread = b""

    def recv_fully_into(self, view: memoryview) -> int:
        """`view` filled from the connection; fewer bytes only when the peer closed it."""
        assert self.socket is not None and not self._unread
        received = 0
        while received < len(view):
            count = self.socket.recv_into(view[received:])
            if not count:
                break
            received += count
        return received


# Put on the message queue to wake the association's thread, which then finds no message.
_NUDGE: _QueueItem = (None, None)


class _Messages(queue.Queue["_QueueItem"]):
    """The DIMSE provider's queue of received messages, for the association's thread to
    serve: a streamed C-STORE request is served as it is put, on the connection's thread
    (see the module's notes)."""

    def __init__(self, association: Association) -> None:
        super().__init__()
        self._association = association

    def put(self, item: _QueueItem, block: bool = True, timeout: float | None = None) -> None:
        context_id, primitive = item
        stream = getattr(primitive, "_dataset_file", None)
        if isinstance(primitive, C_STORE) and isinstance(stream, _Stream) and context_id is not None:
            self._association._serve_request(primitive, context_id)  # noqa: SLF001
            return
        super().put(item, block, timeout)

    def nudge(self) -> None:
        super().put(_NUDGE)


class _ToUser(queue.Queue[Any]):
    """The connection's queue of primitives for the association's thread: each wakes that
    thread, blocked on its messages (`get_msg`), which otherwise saw the peer's release
    request only at its next idle check (pynetdicom wakes it for an abort, not a release). A
    device's release waited ~5 ms for its answer (up to `_IDLE_CHECK_SECONDS`), against
    ~0.1 ms from dcmtk's storescp."""

    def __init__(self, messages: _Messages) -> None:
        super().__init__()
        self._messages = messages

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._messages.nudge()


class _WaitingDimse(DIMSEServiceProvider):
    receive_into: Callable[[], DatasetSink] | None = None
    # Streams not yet closed by pynetdicom: the message still arriving, and any whose store
    # never ran (the association ended first). Dropped when the association ends.
    streams: set[_Stream]

    def receive_primitive(self, primitive: Any) -> None:
        try:
            super().receive_primitive(primitive)
        except Exception:
            # A message that cannot be decoded (a damaged command set, one without the
            # elements every command has) or handled: the association ends as on an invalid
            # PDU (Evt19, an A-ABORT to the peer), as pynetdicom ends one whose decoded
            # message it cannot convert. Raised here, it killed the connection's thread, and
            # the peer was left without an answer (a sweep of damaged worklist queries met
            # it in 51 of 200). Logged PHI-safe, as every exception (`PhiSafeFormatter`).
            logger.warning("a message from the peer could not be handled: association aborted", exc_info=True)
            self.message = None
            self.dul.event_queue.put("Evt19")
            return
        message = self.message
        if self.receive_into is not None and isinstance(message, C_STORE_RQ) and not message._data_set_file:  # noqa: SLF001
            self._stream(message)

    def _stream(self, message: C_STORE_RQ) -> None:
        """The command set is in: the rest of the dataset goes to a sink as it arrives."""
        command = message.command_set
        try:
            context = self.assoc._accepted_cx[cast("int", message.context_id)]  # noqa: SLF001
            syntax = context.transfer_syntax[0]
            head = file_head(command.AffectedSOPClassUID, command.AffectedSOPInstanceUID, syntax)
        except Exception:  # noqa: BLE001  # left in memory: the handler finds what is wrong with it
            return
        assert self.receive_into is not None
        sink = self.receive_into()
        sink.write(head)
        sink.write(cast("BytesIO", message.data_set).getvalue())  # any that came with the command set
        message.data_set = BytesIO()
        message._data_set_file = _Stream(sink, self.streams)  # type: ignore[assignment]  # noqa: SLF001

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """A C-STORE response, sent once for every object, is packed by `store_response`
        and sent as one P-DATA: a command in one fragment, flagged the last (PS3.8 E.2)."""
        command = self._packed_store_response(primitive)
        if command is None:
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(pdata)

    def _packed_store_response(self, primitive: Any) -> bytes | None:
        if not isinstance(primitive, C_STORE) or self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            return None  # a handler watching sent messages is given pynetdicom's message
        try:
            command = store_response(primitive)
        except UnicodeEncodeError:
            return None
        largest = self.maximum_pdu_size  # the peer's; 0: no limit
        if command is None or (largest and len(command) + _PDV_HEADER_BYTES > largest):
            return None  # pynetdicom's path splits it into fragments
        return command

    def drop_streams(self) -> int:
        """How many were dropped: objects arriving, or whose store never ran."""
        dropped = list(self.streams)
        for stream in dropped:
            stream.close()
        return len(dropped)

    def get_msg(self, block: bool = False) -> Any:
        """The association's reactor asks without blocking, then sleeps 1 ms: here it waits
        for the message instead, up to the idle check, or until nudged (`_ToUser`). Asked
        to block (for a response), it waits for a message, past any nudge."""
        while True:
            try:
                item = self.msg_queue.get(timeout=self.dimse_timeout if block else _IDLE_CHECK_SECONDS)
            except queue.Empty:
                return None, None
            if item is not _NUDGE or not block:
                return item


class _RequestorDimse(DIMSEServiceProvider):
    """The DIMSE provider of an association we requested (see `keep_responses_for_requests`)."""

    def get_msg(self, block: bool = False) -> Any:
        """Asked without blocking (only the association's reactor does), a request of the
        peer's, or nothing: a response waits for the `send_*` blocking on it."""
        if block:
            return super().get_msg(block=True)
        messages = self.msg_queue
        with messages.mutex:  # looked at and taken in one step: the sender takes from it too
            if messages._qsize() and getattr(messages.queue[0][1], "is_valid_request", False):  # noqa: SLF001
                return messages._get()  # noqa: SLF001
        return None, None


def keep_responses_for_requests(association: Association) -> Association:
    """An association we requested, whose reactor never takes a response off its queue.

    Its reactor thread looks for the peer's requests without blocking while a `send_*`
    waits, blocking, for its responses. pynetdicom pauses the reactor around each send, but
    the pause can be read stale: right after one send lets the reactor go on, the next sees
    it still marked paused before its thread has run again, and when the response arrives
    first, the reactor takes it ("Received unexpected C-FIND service message") and the send
    waits out its DIMSE timeout, then aborts. Several C-FINDs in a row on one association
    (a PACS query by several spellings of a name) met it; so did a test's device on busy
    cores."""
    association.dimse.__class__ = _RequestorDimse
    return association


class _WakingDul(DULServiceProvider):
    """Waits on the connection and on a wake-up sent with every outgoing primitive, rather
    than sleeping `_run_loop_delay` between polls."""

    # Work left for the connection's thread to do once nothing is waiting to be sent
    # (`after_response`); appended to by either thread.
    after_response: deque[Callable[[], None]]
    # A dataset fragment passes through this from the connection to its sink.
    _fragment_buffer: memoryview
    # Set once a PDU too long to read was refused: the connection's bytes have no PDU
    # boundary to be found again (`_fits`).
    _unframed: bool

    def start_waking(self) -> None:
        """Called once, before the association starts."""
        self.after_response = deque()
        self._run_loop_delay = 0  # the wait is in `_is_transport_event`
        # A socket pair rather than a pipe: a wake-up after the close fails on the closed
        # object, where a reused pipe descriptor would take the byte.
        self._wake_up, self._woken = socket.socketpair()
        self._wake_up.setblocking(False)
        self._fragment_buffer = memoryview(bytearray(_FRAGMENT_BUFFER_BYTES))
        self._unframed = False

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state == "Sta1":  # the base stops the reactor then
            self._kill_thread = True
            self._wake()
        return super().stop_dul()

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self._do_after_response()
            self._wake_up.close()
            self._woken.close()

    def _wake(self) -> None:
        try:
            self._wake_up.send(b"\0")
        except OSError:  # already closed, or full: either way the reactor needs no nudge
            pass

    def _process_recv_primitive(self) -> bool:
        """Our side's next primitive for the peer. Once the association has ended on the wire
        (Sta13: an A-ABORT, a refusal or a release response sent, the connection's close
        awaited), whatever our side still finishes (the acceptance of a request whose peer
        broke the protocol while it was being negotiated, a late response) has no one to go
        to and is dropped. pynetdicom hands it to its state machine, which has no transition
        for it: the connection's thread died on the `InvalidEventError`, its traceback on
        the task's output."""
        if self.state_machine.current_state != _AWAITING_CLOSE:
            return bool(super()._process_recv_primitive())
        try:
            self.to_provider_queue.get(block=False)
        except queue.Empty:
            return False
        return True

    def _is_transport_event(self) -> bool:
        # The reactor looks for something to send first and comes here only once it found
        # nothing: every response queued so far has been sent.
        self._do_after_response()
        if super()._is_transport_event():
            return True
        if self.event_queue.empty() and self.to_provider_queue.empty() and not self._kill_thread:
            self._wait()
        return False  # the next turn of the reactor reads or sends whatever woke it

    def _read_pdu_data(self) -> None:
        """A streamed C-STORE's dataset fragment, but its last, goes from the connection to
        the store's sink through one reused buffer (see the module's notes), and so does each
        that follows while the next PDU is already arriving. Anything else (a command, the
        last fragment, which completes the message, any other PDU, a PDU of several PDVs) is
        read and decoded as pynetdicom does, the headers looked at included.

        Why go on while more is arriving: a turn of pynetdicom's reactor that queues no event
        ends in `time.sleep(0)`, and on busy cores that yield left the connection's thread
        waiting for a core after every fragment (one CT sender fell from 229 to 216 files/s
        while using less CPU). A turn that ends in pynetdicom's own read queues its event,
        and one that finds nothing arriving waits in `_wait`, checking its timers, as before.

        Whatever the path, a PDU longer than `LONGEST_PDU_BYTES` is never read."""
        connection = self.socket
        if self._unframed:
            self._discard_arriving()
            return
        try:
            while isinstance(connection, _WholePduSocket):
                headers = bytes(connection.recv(_PDU_HEADER_BYTES))
                if len(headers) < _PDU_HEADER_BYTES:  # closed: pynetdicom's read says so
                    connection.unread(headers)
                    break
                if not self._fits(headers):
                    return
                arriving = self._stream_arriving()
                length = None
                if arriving is not None:
                    headers, length = _peek_lone_fragment(connection, headers, arriving[1])
                if arriving is None or length is None:
                    connection.unread(headers)
                    break
                if not self._copy_fragment(connection, arriving[0], length) or not connection.ready:
                    return
        except OSError:  # reset, or timed out: as pynetdicom's own read says it
            self.event_queue.put("Evt17")
            return
        super()._read_pdu_data()

    def _fits(self, pdu_header: bytes) -> bool:
        """Whether the PDU is no longer than `LONGEST_PDU_BYTES`. A longer one ends the
        association as an invalid PDU (Evt19: an A-ABORT to the peer), unread; and with it
        the connection's framing: nothing more is read from it as PDUs."""
        (length,) = struct.unpack_from(">L", pdu_header, 2)
        if length <= LONGEST_PDU_BYTES:
            return True
        logger.warning(
            "PDU too long: association aborted", extra={"pdu_type": pdu_header[0], "pdu_bytes": length}
        )
        self._unframed = True
        self.event_queue.put("Evt19")
        return False

    def _discard_arriving(self) -> None:
        """What arrives after a PDU too long to read is dropped unread; once nothing more is
        waiting, pynetdicom closes the connection (its Sta13, after the A-ABORT). Read as
        PDUs, every 6 bytes of the refused PDU's body were taken for a header of their own,
        most claiming gigabytes too: a warning and another A-ABORT for every 6 bytes the peer
        sent, ~175,000 a MB, with a core busy on them (a sweep of 300 damaged copies of one
        device's association wrote 3.2 million log lines, 618 MB)."""
        connection = self.socket
        assert isinstance(connection, _WholePduSocket) and connection.socket is not None
        connection.drop_unread()
        try:
            closed = not connection.socket.recv(_DISCARD_BYTES)  # only what is there: it was ready
        except OSError:
            closed = True
        if closed:
            self.event_queue.put("Evt17")

    def _stream_arriving(self) -> tuple[_Stream, int] | None:
        """The stream of a C-STORE whose dataset is arriving, and its presentation context,
        when nothing else needs to see its PDUs (a handler of received data or PDUs)."""
        if self.state_machine.current_state != "Sta6":
            return None
        message = self.assoc.dimse.message
        stream = getattr(message, "_data_set_file", None)
        if not isinstance(stream, _Stream) or message is None or message.context_id is None:
            return None
        if self.assoc.get_handlers(evt.EVT_DATA_RECV) or self.assoc.get_handlers(evt.EVT_PDU_RECV):
            return None
        return stream, message.context_id

    def _copy_fragment(self, connection: _WholePduSocket, stream: _Stream, length: int) -> bool:
        """False when the peer closed the connection before the fragment's end."""
        while length:
            view = self._fragment_buffer[:length]  # the rest, or a buffer's worth of it
            if connection.recv_fully_into(view) < len(view):
                self.event_queue.put("Evt17")  # as pynetdicom: the connection closed mid-PDU
                return False
            stream.write(view)
            length -= len(view)
        return True

    def _do_after_response(self) -> None:
        while self.after_response:
            work = self.after_response.popleft()
            try:
                work()
            except Exception:  # a log line or a metric: never worth the association
                logger.exception("work after a response failed")

    def _wait(self) -> None:
        connection = self.socket.socket if self.socket is not None else None
        waited_on: list[Any] = [self._woken] if connection is None else [self._woken, connection]
        try:
            readable, _, _ = select.select(waited_on, [], [], _IDLE_CHECK_SECONDS)
        except (OSError, ValueError):  # the connection closed: the next `ready` says so
            return
        if self._woken in readable:
            self._woken.recv(4096)


@dataclass(frozen=True)
class AssociationOver:
    """An association a server accepted the connection of, once it is over (refused,
    released, aborted or cut off): what `AssociationServer`'s `on_over` is given."""

    association: Association
    seconds: float  # since its connection was accepted
    # It ended while an object was arriving, or before an arrived object's store ran: the
    # device was never answered for that object.
    interrupted: bool


class _StreamingAssociation(Association):
    served_by: AssociationServer
    began: float  # `time.monotonic()` when its connection was accepted
    interrupted = False  # see `AssociationOver`

    def start(self) -> None:
        """Once its thread runs, that thread counts the connection off when it ends; until
        then (a set-up that fails, a thread that cannot start), the connection's set-up
        thread does (`AssociationServer.process_request_thread`)."""
        super().start()
        self.served_by.association_made()

    def run(self) -> None:
        """The association's thread: however it ends (refused, released, aborted, cut off),
        its server counts it off once it is over."""
        try:
            super().run()
        finally:
            self.served_by.connection_over()
            self.served_by.association_over(self)

    def _run_reactor(self) -> None:
        """The established association's loop (`run_reactor` itself is bound before the class
        is swapped). It ends once the connection's thread has ended or is back in Sta1, which
        it reaches only between messages: no store is running on either thread, so whatever
        stream is left will never be kept."""
        try:
            super()._run_reactor()
        finally:
            dimse = self.dimse
            if isinstance(dimse, _WaitingDimse):
                self.interrupted = dimse.drop_streams() > 0


class _RequestHandler(RequestHandler):
    server: AssociationServer

    def _create_association(self) -> Any:
        association = super()._create_association()
        association.__class__ = _StreamingAssociation
        assert isinstance(association, _StreamingAssociation)
        association.served_by, association.began = self.server, time.monotonic()
        # The parts pynetdicom made for this connection, with the changes above. Swapping the
        # class keeps their state (the socket is made once: a second would signal the
        # connection twice).
        association.dul.socket.__class__ = _WholePduSocket
        dul = association.dul
        dul.__class__ = _WakingDul
        assert isinstance(dul, _WakingDul)
        dul.start_waking()
        dimse = association.dimse
        dimse.__class__ = _WaitingDimse
        assert isinstance(dimse, _WaitingDimse)
        dimse.receive_into, dimse.streams = self.server.receive_into, set()
        dimse.msg_queue = _Messages(association)
        dul.to_user_queue = _ToUser(dimse.msg_queue)
        return association


class _SharedContexts(list[Any]):
    """The presentation contexts a server supports, given to each association as they are.
    pynetdicom deep-copies them for every association, in case they change while it runs;
    here they never change once the server starts, and negotiation only reads them. A copy
    of the DICOM service's (170 SOP classes, 45 transfer syntaxes each) took ~40 ms of every
    association, before its first store."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


class AssociationServer(ThreadedAssociationServer):
    """Pass to `AE.make_server(..., server_class=AssociationServer, listening=...)`."""

    def __init__(
        self,
        ae: Any,
        address: Any,
        ae_title: str,
        contexts: Any,
        ssl_context: Any = None,
        evt_handlers: Any = None,
        *,
        listening: socket.socket | None = None,
        board: LoadBoard | None = None,
        receive_into: Callable[[], DatasetSink] | None = None,
        on_over: Callable[[AssociationOver], None] | None = None,
    ) -> None:
        self.listening = listening  # read by server_bind and server_activate, which __init__ calls
        self._on_over = on_over  # given each association once it is over, however it ended
        # How many associations each process sharing `listening` serves; this one's alone if
        # it shares nothing. One per process: its plain and TLS servers count together.
        self.board = board or LoadBoard.alone()
        self.receive_into = receive_into
        self._handing_over = threading.local()  # on a connection's set-up thread
        super().__init__(
            ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler=_RequestHandler
        )
        # Registered with its AE as `AE.start_server` does: `shutdown` takes it off that list.
        self.ae._servers.append(self)  # noqa: SLF001
        self.contexts = _SharedContexts(self.contexts)

    def server_bind(self) -> None:
        if self.listening is None:
            super().server_bind()
            return
        assert self.socket is not None
        self.socket.close()  # the one socketserver made, never bound: the shared one is used
        self.socket = self.listening
        # Non-blocking: when another process accepts the connection first, the accept here
        # fails (and socketserver waits again) instead of waiting for the next connection.
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()

    def get_request(self) -> tuple[socket.socket, Any]:
        self._wait_for_turn()  # least associations first (see the module's notes)
        assert self.socket is not None
        connection, address = self.socket.accept()
        if self.ssl_context:  # its handshake is its own thread's (`process_request_thread`)
            connection = self.ssl_context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def _wait_for_turn(self) -> None:
        """Return when this process should try to accept: at once if none serves fewer;
        otherwise once they have caught up (one took the connection), or at the end of its
        patience."""
        # Connections accepted and not yet over, association set up or not: a burst of four
        # would otherwise all go to the process awake first, each accepted before the last
        # one's association thread had started.
        load = self.board.mine()
        beyond_least = load - self.board.least_of_others()
        deadline = time.monotonic() + _PATIENCE_PER_ASSOCIATION_SECONDS * beyond_least
        while self.board.least_of_others() < load and time.monotonic() < deadline:
            time.sleep(_PATIENCE_POLL_SECONDS)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.board.add(1)  # before the next connection is looked at
        try:
            super().process_request(request, client_address)  # the association's set-up, on a thread
        except BaseException:  # no thread to count it off (socketserver closes the connection)
            self.connection_over()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self._handing_over.done = False
        try:
            if isinstance(request, ssl.SSLSocket) and not self._shake_hands(request, client_address):
                self.shutdown_request(request)
                return
            super().process_request_thread(request, client_address)  # returns once it has started
        finally:
            if not self._handing_over.done:  # no association was made of it: over here
                self.connection_over()

    def _shake_hands(self, connection: ssl.SSLSocket, address: Any) -> bool:
        """The TLS handshake, within the time an association request may take."""
        connection.settimeout(self.ae.acse_timeout)
        try:
            connection.do_handshake()
        except OSError as e:  # ssl.SSLError and the socket's timeout among them
            metrics.add_metric(name="DicomAssociationsRefused", unit="Count", value=1)
            logger.warning("TLS handshake failed", extra={"address": address[0], "error": type(e).__name__})
            return False
        connection.settimeout(None)  # blocking, as pynetdicom's sockets are
        return True

    def association_made(self) -> None:
        """The connection's association thread has started: from here it is counted off
        when that thread ends (`_StreamingAssociation.run`)."""
        self._handing_over.done = True

    def connection_over(self) -> None:
        self.board.add(-1)

    def association_over(self, association: _StreamingAssociation) -> None:
        if self._on_over is None:
            return
        seconds = time.monotonic() - association.began
        try:
            self._on_over(AssociationOver(association, seconds, association.interrupted))
        except Exception:  # noqa: BLE001  # the association is over either way
            logger.warning("the end of an association could not be reported", exc_info=True)

    def server_activate(self) -> None:
        if self.listening is None:  # a shared socket is listening already
            super().server_activate()

    def server_close(self) -> None:
        if self.listening is None:
            super().server_close()
        elif self.socket is not None:
            # Closed, never shut down: a shutdown ends accepting for every process sharing it.
            self.socket.close()


class LoadBoard:
    """How many associations each receiving process of a task serves, where all of them
    read it: a slot of 4 bytes per process in memory they share (a memfd the first process
    makes, inherited by each receiver like the listening sockets). Each process writes its
    own slot only, under its own lock; an aligned 4-byte write is seen whole by the others."""

    def __init__(self, memory: mmap.mmap, count: int, slot: int | None, descriptor: int = -1) -> None:
        self.count, self.slot, self.descriptor = count, slot, descriptor
        self._slots = memoryview(memory).cast("i")
        self._lock = threading.Lock()

    @classmethod
    def create(cls, count: int) -> LoadBoard:
        """In the first process: a board for `count` receivers, all at 0."""
        descriptor = os.memfd_create("orca-dicom-loads")
        os.ftruncate(descriptor, count * _SLOT_BYTES)
        return cls(mmap.mmap(descriptor, count * _SLOT_BYTES), count, None, descriptor)

    def handed_to(self, slot: int) -> str:
        """What receiver number `slot` is given on its command line (`joined`)."""
        return f"{self.descriptor}:{self.count}:{slot}"

    @classmethod
    def joined(cls, handed: str) -> LoadBoard:
        descriptor, count, slot = map(int, handed.split(":"))
        return cls(mmap.mmap(descriptor, count * _SLOT_BYTES), count, slot)

    @classmethod
    def alone(cls) -> LoadBoard:
        """For a process that shares its listening sockets with none."""
        return cls(mmap.mmap(-1, _SLOT_BYTES), 1, 0)

    def add(self, change: int) -> None:
        assert self.slot is not None, "only a receiver counts"
        with self._lock:  # its plain and TLS servers' threads change it
            self._slots[self.slot] += change

    def mine(self) -> int:
        assert self.slot is not None, "only a receiver counts"
        return int(self._slots[self.slot])

    def least_of_others(self) -> int:
        others = [self._slots[i] for i in range(self.count) if i != self.slot]
        return min(others, default=_NO_OTHERS)


_SLOT_BYTES = 4
_NO_OTHERS = 1 << 30


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening socket for several processes' `AssociationServer`s (`listening=`): opened
    once, then inherited by each (`subprocess.Popen(..., pass_fds=...)`)."""
    listener = socket.create_server((host, port), backlog=_SHARED_BACKLOG)
    listener.setblocking(False)
    return listener
