"""The DICOM service publishes its spool depth (the backlog alarm's metric) on its own, each
EMF line in one write."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from typing import TYPE_CHECKING

import pytest

from orca_imaging import observability
from orca_imaging.spool import Spool
from services.dicom_scp.main import publish_metrics
from tests.unit.test_spool import arrival

if TYPE_CHECKING:
    from pathlib import Path


def test_spool_depth_is_published_as_emf_without_any_invocation_to_flush_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(3):
        spool.put(b"object", arrival(n))
    stopping = threading.Event()
    publisher = threading.Thread(target=publish_metrics, args=(stopping, spool, 0.05))
    publisher.start()
    threading.Timer(0.3, stopping.set).start()
    publisher.join(5)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "DicomSpoolDepth" in line]
    assert lines, "no EMF line was written"
    emf = lines[0]
    assert emf["DicomSpoolDepth"] in (3, [3])
    assert emf["DicomSpoolBytes"] in (spool.used_bytes(), [spool.used_bytes()])  # objects and sidecars
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Orca/Imaging" and ["service"] in directive["Dimensions"]


def test_each_emf_line_is_one_write() -> None:
    """The task's processes share stdout, each through `WholeLineOutput`: Powertools prints
    a line and then its newline, and another process's line could land between the two."""
    writes: list[str] = []

    class Recorded(io.StringIO):  # no descriptor to lock, as a test's capture
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    output = observability.WholeLineOutput(Recorded())
    observability.metrics.add_metric(name="DicomObjectsReceived", unit="Count", value=2)
    with contextlib.redirect_stdout(output):
        observability.metrics.flush_metrics()
        observability.metrics.flush_metrics()  # nothing counted since: nothing written

    (line,) = writes
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line)["DicomObjectsReceived"] in (2, [2])
