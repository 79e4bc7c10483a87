"""Runs `tests/integration/private_network/` inside a network namespace of its own that holds
only loopback (`unshare -n`): Orthanc and dcmqrscp bind every interface, so there they can
reach nothing and nothing can reach them. The local stack runs in there with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FOLDER = ROOT / "tests" / "integration" / "private_network"


def test_query_and_retrieve_against_orthanc_and_dcmqrscp_in_a_private_network() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("a private network namespace needs root and unshare (util-linux)")
    inside = 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -rfEs "$1"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", inside, sys.executable, str(FOLDER)],
        env={**os.environ, "ORCA_PRIVATE_NETWORK": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    output = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("{"))
    assert done.returncode == 0, output[-20000:] + done.stderr[-5000:]
    summary = output.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary and "deselected" not in summary, summary
