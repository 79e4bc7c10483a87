"""pynetdicom's threaded association server, with two changes the DICOM service needs for
throughput. Both go through pynetdicom's own extension points (`AE.make_server`'s
`server_class` and `request_handler`).

- **A PDU is read in one buffer.** pynetdicom reads a PDU 4 KB at a time, growing a
  bytearray: 2,000 `recv` calls and as many reallocations for an 8 MB radiograph. Reading
  straight into a buffer of the PDU's size took one association from ~190 to ~300 MB/s on
  panoramics here.
- **Several processes can share the port** (`SO_REUSEPORT`): pynetdicom holds the GIL for
  most of a transfer, so one process uses one core however many devices send at once. The
  kernel spreads new connections over the processes listening.
"""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer


class _WholePduSocket(AssociationSocket):
    def recv(self, nr_bytes: int) -> bytearray:
        """`nr_bytes` read into one buffer; fewer only when the peer closed the connection
        (pynetdicom's contract, which its state machine relies on)."""
        assert self.socket is not None
        buffer, received = bytearray(nr_bytes), 0
        with memoryview(buffer) as view:  # released on return: pynetdicom may grow the buffer
            while received < nr_bytes:
                count = self.socket.recv_into(view[received:])
                if not count:
                    break
                received += count
        return buffer if received == nr_bytes else buffer[:received]


class _RequestHandler(RequestHandler):
    def _create_association(self) -> Any:
        association = super()._create_association()
        # The socket pynetdicom made for this connection, reading whole PDUs. Swapping the
        # class keeps its state (made once: making a second would signal the connection twice).
        association.dul.socket.__class__ = _WholePduSocket
        return association


class AssociationServer(ThreadedAssociationServer):
    """Pass to `AE.make_server(..., server_class=AssociationServer, shared_port=...)`."""

    def __init__(
        self,
        ae: Any,
        address: Any,
        ae_title: str,
        contexts: Any,
        ssl_context: Any = None,
        evt_handlers: Any = None,
        *,
        shared_port: bool = False,
    ) -> None:
        self.shared_port = shared_port  # read by server_bind, which the base __init__ calls
        super().__init__(
            ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler=_RequestHandler
        )
        # Registered with its AE as `AE.start_server` does: `shutdown` takes it off that list.
        self.ae._servers.append(self)  # noqa: SLF001

    def server_bind(self) -> None:
        if self.shared_port:
            assert self.socket is not None
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
