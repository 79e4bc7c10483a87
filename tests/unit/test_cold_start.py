"""Each function imports with the cyclic collector paused and leaves it running, its
start-up objects frozen out of later collections."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orca_imaging.resources import SETTINGS_WITH_RESOURCES
from tests.conftest import ROOT

HANDLERS = [
    "functions.upload_url.handler",
    "functions.process_image.handler",
    "functions.dicom_ingest.handler",
]


def placeholder_env() -> dict[str, str]:
    env = {**os.environ, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    for settings in SETTINGS_WITH_RESOURCES:
        for name, info in settings.model_fields.items():
            if info.is_required() and name != "region":
                env.setdefault(f"ORCA_{name.upper()}", "placeholder")
    return env


def run_probe(probe: str) -> str:
    """What `probe` prints, run in a fresh interpreter as a cold start would."""
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=placeholder_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize("module", HANDLERS)
def test_handler_resumes_collection_once_started(module: str) -> None:
    probe = (
        "import gc, sys\n"
        "import functions\n"
        "paused = not gc.isenabled()\n"
        f"import {module}\n"
        "print(paused, gc.isenabled(), gc.get_freeze_count() > 10_000)\n"
    )
    assert run_probe(probe).split() == ["True", "True", "True"]


def test_the_api_starts_without_the_dicom_libraries() -> None:
    """pydicom and pynetdicom (~200 ms together here) serve two admin routes and the SCP;
    the API loads them on the first PACS request, not at every cold start."""
    probe = (
        "import sys\n"
        "import functions.upload_url.handler\n"
        "print(sorted(m for m in ('pydicom', 'pynetdicom', 'numpy') if m in sys.modules))\n"
    )
    assert run_probe(probe).strip() == "[]"
