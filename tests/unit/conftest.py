"""Fixtures shared by the unit tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.nodes import DicomNode
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DEVICE = "PANO1"


@pytest.fixture
def dicom_service(tmp_path: Path) -> Iterator[DicomService]:
    """The DICOM service (AE title ORCA) on a loopback port, with `DEVICE` registered."""
    service = DicomService(
        ServiceConfig(ae_title="ORCA", host="127.0.0.1", port=0),
        Spool(tmp_path, max_bytes=1 << 20),
        nodes=lambda: {DEVICE: DicomNode(DEVICE, clinic_id="clinic-a")},
        worklist=lambda *_: [],
    )
    service.start()
    yield service
    service.stop(timeout=1)
