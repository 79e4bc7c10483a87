"""The presigned POST's conditions, enforced by a real S3 implementation (SeaweedFS).

moto accepts any presigned POST, so these run against `weed` on loopback, started here.
SeaweedFS needs an external KMS for SSE-KMS, so every refusal below is checked with the
service's exact policy (SSE-KMS conditions included: S3 checks the policy before it
encrypts), and the one acceptance uses the same policy without the encryption fields.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from orca_imaging.local.stack import free_port
from orca_imaging.uploads import presigned_post
from tests.conftest import require_tool

WEED = Path(sys.executable).parent / "weed"
KEY = "clinic/c1/original/img_01policy"
BODY = b"\xff\xd8\xff" + b"x" * 61  # 64 bytes
ACCESS, SECRET = "orca-test", "orca-test-secret"


def _free_port_pair() -> int:
    """weed also listens on port + 10000 for gRPC."""
    while True:
        port = free_port()
        if port + 10000 < 65535:
            return port


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_tool(str(WEED))
    home = tmp_path_factory.mktemp("weed")
    (home / "data").mkdir()
    (home / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "orca",
                        "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, volume, filer, s3_port = (_free_port_pair() for _ in range(4))
    server = subprocess.Popen(
        [
            str(WEED),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={home / 'data'}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.config={home / 's3.json'}",
        ],
        stdout=(home / "log").open("w"),
        stderr=subprocess.STDOUT,
    )
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="orca")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield client
    finally:
        # weed ignores SIGTERM for a long time; a grace period, then SIGKILL.
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(3)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def sign(s3: Any, *, kms_key_id: str | None = "orca-key", expires_in: int = 60) -> dict[str, Any]:
    return presigned_post(
        s3,
        bucket="orca",
        key=KEY,
        size=len(BODY),
        content_type="image/jpeg",
        kms_key_id=kms_key_id,
        metadata={"uploader": "usr_1"},
        expires_in=expires_in,
    )


def post(
    target: dict[str, Any], fields: dict[str, str] | None = None, body: bytes = BODY
) -> requests.Response:
    return requests.post(target["url"], data=fields or target["fields"], files={"file": body}, timeout=30)


def error_code(response: requests.Response) -> str:
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else ""


def test_a_correct_upload_is_accepted(s3: Any) -> None:
    response = post(sign(s3, kms_key_id=None))
    assert response.status_code == 204, response.text
    assert s3.get_object(Bucket="orca", Key=KEY)["Body"].read() == BODY


def test_an_oversize_body_is_refused(s3: Any) -> None:
    response = post(sign(s3), body=BODY + b"!")
    assert (response.status_code, error_code(response)) == (400, "EntityTooLarge")


def test_a_short_body_is_refused(s3: Any) -> None:
    response = post(sign(s3), body=BODY[:-1])
    assert response.status_code == 400 and error_code(response) == "EntityTooSmall"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key", "clinic/c1/original/img_someone_else"),
        ("key", "clinic/c2/original/img_01policy"),
        ("Content-Type", "text/html"),
        ("x-amz-meta-uploader", "usr_forged"),
    ],
)
def test_a_changed_field_is_refused(s3: Any, field: str, value: str) -> None:
    target = sign(s3)
    response = post(target, {**target["fields"], field: value})
    assert response.status_code == 403 and error_code(response) == "AccessDenied", response.text


def test_dropping_the_encryption_header_is_refused(s3: Any) -> None:
    target = sign(s3)
    fields = {k: v for k, v in target["fields"].items() if k != "x-amz-server-side-encryption"}
    response = post(target, fields)
    assert response.status_code == 403, response.text


def test_an_expired_target_is_refused(s3: Any) -> None:
    target = sign(s3, expires_in=1)
    time.sleep(2)
    response = post(target)
    assert response.status_code == 403 and "expire" in response.text.lower()


def test_a_tampered_policy_is_refused(s3: Any) -> None:
    target = sign(s3)
    policy = json.loads(base64.b64decode(target["fields"]["policy"]))
    policy["conditions"] = [
        c for c in policy["conditions"] if not (isinstance(c, list) and c[0] == "content-length-range")
    ]
    fields = {**target["fields"], "policy": base64.b64encode(json.dumps(policy).encode()).decode()}
    response = post(target, fields, body=BODY * 4)
    assert (response.status_code, error_code(response)) == (403, "SignatureDoesNotMatch")
