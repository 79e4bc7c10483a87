"""Upload API benchmark: in-process latency and cold import, each beside a named peer.

- Latency: the real handler, in process, on moto's in-process AWS (no network), for one
  upload target and for a 1,000-file batch request. Peer: boto3's own
  `generate_presigned_post` for the same number of files, the signing cost no
  implementation can avoid; the ratio is what the rest (validation, DynamoDB writes,
  starting the tracker) costs on top.
- Cold import of the function module in a fresh interpreter (`python -X importtime`),
  from compiled bytecode as the layer ships it (`infra/layer.py`).
  Peer: `import boto3` in a fresh interpreter.

Run with `make bench`. Prints a Markdown table for the README.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from moto import mock_aws

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def event(path: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "bench",
            "authorizer": {
                "claims": {"sub": "usr_bench", "custom:clinicId": "bench", "cognito:groups": "doctor"}
            },
        },
    }


def timed(fn: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def latency() -> list[tuple[str, list[float], list[float]]]:
    os.environ.update(ENV)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
        from orca_imaging import clients
        from orca_imaging.local.lambda_runtime import LocalContext
        from orca_imaging.local.provision import provision
        from orca_imaging.resources import SETTINGS_WITH_RESOURCES, settings_env

        resources = provision(None, "us-east-1", prefix="bench")  # type: ignore[arg-type]
        for settings in SETTINGS_WITH_RESOURCES:
            os.environ.update(settings_env(settings, resources.values))
        clients.reset()
        import functions.upload_url.handler as handler

        context = LocalContext("upload_url", 512, 30)
        admin = event("/api/imaging/patients/pat_1", {})
        admin["httpMethod"] = "PUT"
        admin["requestContext"]["authorizer"]["claims"]["cognito:groups"] = "clinic_admin"
        assert handler.lambda_handler(admin, context)["statusCode"] == 204

        one = {"fileName": "a.jpg", "size": 4_000_000, "contentType": "image/jpeg", "patientId": "pat_1"}
        files = [
            {"fileName": f"{i:04d}.jpg", "size": 4_000_000, "contentType": "image/jpeg"} for i in range(1000)
        ]
        batch = {"patientId": "pat_1", "files": files, "source": "migration"}

        def single() -> None:
            assert handler.lambda_handler(event("/api/imaging/upload", one), context)["statusCode"] == 201

        def thousand() -> None:
            assert (
                handler.lambda_handler(event("/api/imaging/upload/batch", batch), context)["statusCode"]
                == 201
            )

        s3 = clients.s3()
        bucket = resources.values["originals_bucket"]

        def presign(count: int) -> Any:
            def run() -> None:
                for i in range(count):
                    s3.generate_presigned_post(
                        Bucket=bucket,
                        Key=f"clinic/bench/original/img_{i}",
                        Fields={"Content-Type": "image/jpeg"},
                        Conditions=[["content-length-range", 1, 1], {"Content-Type": "image/jpeg"}],
                        ExpiresIn=900,
                    )

            return run

        single(), thousand()  # warm
        return [
            ("single upload target", timed(single, 200), timed(presign(1), 200)),
            ("1,000-file batch request", timed(thousand, 10), timed(presign(1000), 10)),
        ]


def cold_imports(statements: list[str], runs: int = 15) -> dict[str, list[float]]:
    """Each statement's import time in fresh interpreters, taken in turns so that the
    machine's noise falls on all of them alike."""
    env = {**os.environ, **ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "layers", "functions"], cwd=ROOT, check=True)
    samples: dict[str, list[float]] = {statement: [] for statement in statements}
    for _ in range(runs):
        for statement in statements:
            out = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", statement],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                check=True,
            ).stderr
            top = statement.split()[-1]
            line = next(row for row in reversed(out.splitlines()) if row.rstrip().endswith(f"| {top}"))
            samples[statement].append(int(line.split("|")[1]) / 1000)
    return samples


def main() -> None:
    rows = latency()
    env_for_import = {**ENV}
    from orca_imaging.resources import SETTINGS_WITH_RESOURCES

    for settings in SETTINGS_WITH_RESOURCES:
        for name, info in settings.model_fields.items():
            if info.is_required() and name != "region":
                env_for_import.setdefault(f"ORCA_{name.upper()}", "bench")
    os.environ.update(env_for_import)
    imports = cold_imports(["import functions.upload_url.handler", "import boto3"])
    ours, peer = imports["import functions.upload_url.handler"], imports["import boto3"]

    print("| measurement | ours p50 | ours p99 | peer | peer p50 | ratio (p50) | target |")
    print("|---|---|---|---|---|---|---|")
    targets = {"single upload target": "", "1,000-file batch request": "< 1,000 ms"}
    for name, samples, peer_samples in rows:
        p50, p99, peer50 = percentile(samples, 0.5), percentile(samples, 0.99), percentile(peer_samples, 0.5)
        peer_name = f"boto3 presigned POST x{1000 if '1,000' in name else 1}"
        print(
            f"| {name} | {p50:.1f} ms | {p99:.1f} ms | {peer_name} "
            f"| {peer50:.1f} ms | {p50 / peer50:.1f}x | {targets[name]} |"
        )
    ours50, peer50 = statistics.median(ours), statistics.median(peer)
    print(
        f"| cold import of functions.upload_url.handler | {ours50:.0f} ms | {max(ours):.0f} ms "
        f"| `import boto3` | {peer50:.0f} ms | {ours50 / peer50:.1f}x | < 400 ms |"
    )


if __name__ == "__main__":
    main()
