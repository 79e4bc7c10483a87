"""`orca-imaging serve` as a user runs it: up, URLs printed, token works, clean Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from orca_imaging.local.stack import free_port
from tests.conftest import CORPUS

BIN = Path(sys.executable).parent


def test_serve_comes_up_serves_an_upload_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, moto_port = free_port(), free_port()
    cli = [str(BIN / "orca-imaging"), "--state-dir", str(tmp_path)]
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(api_port), "--moto-port", str(moto_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30  # the bound for coming up
        assert server.stdout is not None
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if "Stop:" in line:
                break
        banner = "".join(lines)
        assert re.search(r"local stack is up in [\d.]+ s", banner), banner
        assert f"http://127.0.0.1:{api_port}/api/imaging" in banner
        assert f"http://127.0.0.1:{moto_port}" in banner

        token = subprocess.run(
            [*cli, "token", "--role", "clinical_staff", "--clinic", "demo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        photo = CORPUS / "photos" / "Nikon_D70.jpg"
        uploaded = subprocess.run(
            [
                *cli,
                "upload",
                str(photo),
                "--patient",
                "pat_2",
                "--token",
                token,
                "--api",
                f"http://127.0.0.1:{api_port}/api/imaging",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        record = json.loads(uploaded.stdout.strip().splitlines()[-1])
        assert record["status"] in ("PROCESSING", "ACTIVE") and record["patientId"] == "pat_2"
        assert record["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json() == {"status": "ok"}
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    assert out.rstrip().endswith("stopped")
    # Every log and metrics line whole, whichever of the stack's threads wrote it.
    logged = [line for line in [*lines, *out.splitlines()] if line.startswith("{")]
    assert logged and all(json.loads(line) for line in logged)


class RecordingService:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self, stack: object) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")

    def urls(self) -> list[tuple[str, str]]:
        return [("Recording service", "dicom://127.0.0.1:11112")]


def test_local_services_start_after_the_stack_and_stop_before_it(tmp_path: Path) -> None:
    from orca_imaging.local.stack import LocalStack, LocalStackConfig

    service = RecordingService()
    config = LocalStackConfig(state_dir=tmp_path, services=[service], resource_prefix="svc-test")
    with LocalStack(config) as stack:
        assert service.events == ["start"]
        assert ("Recording service", "dicom://127.0.0.1:11112") in list(stack.urls())
    assert service.events == ["start", "stop"]
