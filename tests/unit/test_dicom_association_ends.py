"""How the DICOM service names an association's end (`DicomService._on_over`): by what
came in (the device's A-ABORT, or the provider's when the connection closed or broke),
by an abort of ours, or by none of these."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT, A_RELEASE

from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.dicom_transport import AssociationOver
from orca_imaging.nodes import DicomNode
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path


class EndedAssociation:
    """As much of an association as the line of its end reads (the service keeps each
    association's tally weakly, by the association)."""

    def __init__(self, *, released: bool) -> None:
        self.is_rejected, self.is_released = False, released
        self.requestor = SimpleNamespace(ae_title="PANO1", address="10.1.2.3")


@pytest.fixture
def service(tmp_path: Path) -> DicomService:
    nodes = {"PANO1": DicomNode("PANO1", clinic_id="clinic-1")}
    return DicomService(
        ServiceConfig(ae_title="ORCA", host="127.0.0.1", port=0),
        Spool(tmp_path, max_bytes=1 << 20),
        lambda: nodes,
        lambda *_: [],
    )


@pytest.mark.parametrize(
    ("received", "aborted", "released", "said"),
    [
        (A_RELEASE(), False, True, "released"),
        (A_ABORT(), True, False, "aborted by the device"),
        (A_P_ABORT(), True, False, "connection closed or invalid"),
        (None, True, False, "aborted here"),  # a timeout of ours: nothing came in
        (None, False, False, "cut off"),  # the connection's thread ended with neither
    ],
)
def test_an_associations_end_is_named_by_what_ended_it(
    service: DicomService,
    log_lines: list[dict[str, Any]],
    received: Any,
    aborted: bool,
    released: bool,
    said: str,
) -> None:
    ended: Any = EndedAssociation(released=released)
    if received is not None:
        service._on_acse_received(SimpleNamespace(assoc=ended, primitive=received))  # type: ignore[arg-type]
    if aborted:
        service._on_aborted(SimpleNamespace(assoc=ended))  # type: ignore[arg-type]
    service._on_over(AssociationOver(ended, 1.5, interrupted=False))
    [line] = [line for line in log_lines if line["message"] == "association ended"]
    assert (line["outcome"], line["calling_ae"], line["clinic_id"], line["address"]) == (
        said,
        "PANO1",
        "clinic-1",
        "10.1.2.3",
    )
