"""An association we requested (a PACS query or retrieve, a test's device): its reactor
thread, which looks for the peer's requests without blocking, never takes a response off
the queue that a `send_*` is waiting on. pynetdicom pauses the reactor around each send, but
the pause can be read stale; the reactor's look is made here at the worst moment: once the
response has arrived, before the send takes it."""

from __future__ import annotations

import time
from io import BytesIO
from typing import TYPE_CHECKING

from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from orca_imaging.dicom_transport import keep_responses_for_requests
from tests.unit.conftest import DEVICE

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from orca_imaging.dicom_service import DicomService


def _requested(server: DicomService) -> Association:
    device = AE(ae_title=DEVICE)
    device.add_requested_context(Verification)
    association = device.associate("127.0.0.1", server.port, ae_title="ORCA")
    assert association.is_established
    return keep_responses_for_requests(association)


def _paused(association: Association) -> None:
    """Keeps the reactor thread itself out of the way: the look below stands in for it."""
    association._reactor_checkpoint.clear()  # noqa: SLF001
    while not association._is_paused:  # noqa: SLF001
        time.sleep(0.001)
    time.sleep(0.01)  # past the stale moment: blocked on the checkpoint


def test_the_reactor_never_takes_a_response_the_sender_waits_for(dicom_service: DicomService) -> None:
    association = _requested(dicom_service)
    try:
        _paused(association)
        echo = C_ECHO()
        echo.MessageID, echo.AffectedSOPClassUID = 7, Verification
        association.dimse.send_msg(echo, association.accepted_contexts[0].context_id)
        deadline = time.monotonic() + 5
        while association.dimse.msg_queue.empty() and time.monotonic() < deadline:
            time.sleep(0.001)  # the response is in

        assert association.dimse.get_msg(block=False) == (None, None)  # the reactor's look
        _, response = association.dimse.get_msg(block=True)  # the sender's
        assert isinstance(response, C_ECHO)
        assert (response.MessageIDBeingRespondedTo, response.Status) == (7, 0x0000)
    finally:
        association._reactor_checkpoint.set()  # noqa: SLF001
        association.release()
    assert association.is_released


def test_the_reactor_is_still_given_the_peers_requests(dicom_service: DicomService) -> None:
    """A C-STORE sub-operation of a C-GET, say, which its reactor serves."""
    association = _requested(dicom_service)
    try:
        _paused(association)
        request = C_STORE()
        request.MessageID, request.Priority = 3, 2
        request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "2.25.1"
        request.DataSet = BytesIO(b"")
        association.dimse.msg_queue.put((1, request))

        assert association.dimse.get_msg(block=False) == (1, request)
        assert association.dimse.msg_queue.empty()
    finally:
        association._reactor_checkpoint.set()  # noqa: SLF001
        association.release()
