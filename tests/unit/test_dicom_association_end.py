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


def test_a_release_is_answered_as_it_arrives(service: DicomService) -> None:
    released: list[str] = []
    association = _associated(service)
    (served,) = service.ae.active_associations
    served.bind(evt.EVT_RELEASED, lambda event: released.append(event.assoc.requestor.ae_title))
    association.release()
    assert association.is_released
    assert not association.is_aborted  # the device did not give up waiting for the answer
    assert _wait_until_none_active(service) == 0
    assert released == [DEVICE]


def test_an_abort_ends_the_association_as_it_arrives(service: DicomService) -> None:
    aborted: list[str] = []
    association = _associated(service)
    (served,) = service.ae.active_associations
    served.bind(evt.EVT_ABORTED, lambda event: aborted.append(event.assoc.requestor.ae_title))
    association.abort()
    assert _wait_until_none_active(service) == 0  # not held for the idle check's minute
    assert aborted == [DEVICE]


def test_a_second_association_is_served_after_the_first_is_released(service: DicomService) -> None:
    """A wake-up left on the first association's queue is not taken as a message."""
    for _ in range(2):
        association = _associated(service)
        association.release()
        assert association.is_released
