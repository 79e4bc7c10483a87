"""How an association ends: a device's release request is answered, and its abort seen, as
soon as it arrives, not at the association thread's next idle check. The idle check is
lengthened here to a minute, past the device's own wait for the answer: before a release
woke the association's thread, the device's release timed out and it aborted. (pynetdicom
wakes that thread for an abort itself; its test keeps that so.)"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from orca_imaging import dicom_transport
from tests.unit.conftest import DEVICE

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from orca_imaging.dicom_service import DicomService

DEVICE_WAITS_SECONDS = 5  # for the release's answer; then it aborts


@pytest.fixture
def service(dicom_service: DicomService, monkeypatch: pytest.MonkeyPatch) -> DicomService:
    monkeypatch.setattr(dicom_transport, "_IDLE_CHECK_SECONDS", 60)
    return dicom_service


def _associated(service: DicomService) -> Association:
    device = AE(ae_title=DEVICE)
    device.acse_timeout = DEVICE_WAITS_SECONDS
    device.add_requested_context(Verification)
    association = device.associate("127.0.0.1", service.port, ae_title="ORCA")
    assert association.is_established
    assert association.send_c_echo().Status == 0x0000
    return association


def _wait_until_none_active(service: DicomService) -> int:
    deadline = time.monotonic() + DEVICE_WAITS_SECONDS
    while service.ae.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(service.ae.active_associations)


@pytest.mark.parametrize(("ending", "seen_as"), [("release", evt.EVT_RELEASED), ("abort", evt.EVT_ABORTED)])
def test_a_device_ending_its_association_is_answered_as_it_arrives(
    service: DicomService, ending: str, seen_as: evt.NotificationEvent
) -> None:
    """Answered, for a release: the device did not give up waiting and abort. Seen, for both:
    the association is over, not held for the idle check's minute."""
    seen: list[str] = []
    association = _associated(service)
    (served,) = service.ae.active_associations
    served.bind(seen_as, lambda event: seen.append(event.assoc.requestor.ae_title))
    getattr(association, ending)()
    assert (association.is_released, association.is_aborted) == (ending == "release", ending == "abort")
    assert _wait_until_none_active(service) == 0
    assert seen == [DEVICE]
