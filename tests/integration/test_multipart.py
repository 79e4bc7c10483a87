"""Large files go up in parts: upload, interrupt, resume with re-signed URLs, complete; abort."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pytest
import requests

from orca_imaging import settings
from tests.conftest import CORPUS

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import ApiClient

PART = 5 * 1024 * 1024  # S3's smallest part


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Multipart from 5 MiB up, so a test file of ~12 MiB needs three parts."""
    monkeypatch.setenv("ORCA_MULTIPART_THRESHOLD_BYTES", str(PART))
    monkeypatch.setenv("ORCA_MULTIPART_PART_BYTES", str(PART))
    settings.load.cache_clear()
    yield
    monkeypatch.undo()
    settings.load.cache_clear()


@pytest.fixture
def big_photo(tmp_path: Path) -> Path:
    """A real JPEG padded past its end-of-image marker: decoders ignore trailing bytes."""
    photo = CORPUS / "photos" / "canon_eos1300d_18mp.jpg"
    path = tmp_path / "big.jpg"
    path.write_bytes(photo.read_bytes() + b"\0" * (12 * 1024 * 1024 - photo.stat().st_size))
    return path


def start(doctor: ApiClient, size: int) -> dict[str, Any]:
    body = {"fileName": "big.jpg", "size": size, "contentType": "image/jpeg", "patientId": "pat_1"}
    response = doctor.post("/upload", body)
    assert response.status_code == 201, response.text
    target: dict[str, Any] = response.json()
    return target


def put_part(url: str, data: bytes) -> str:
    response = requests.put(url, data=data, timeout=60)
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def test_upload_interrupt_resume_complete(doctor: ApiClient, small_parts: None, big_photo: Path) -> None:
    data = big_photo.read_bytes()
    target = start(doctor, len(data))
    assert "fields" not in target
    multipart = target["multipart"]
    assert multipart["partSize"] == PART and [p["partNumber"] for p in multipart["parts"]] == [1, 2, 3]
    image_id = target["imageId"]

    first = put_part(multipart["parts"][0]["url"], data[:PART])
    # The link drops. Later the client asks what S3 has, and for fresh URLs for the rest.
    status = doctor.get(f"/upload/{image_id}/parts").json()
    assert [p["partNumber"] for p in status["parts"]] == [1] and status["missing"] == [2, 3]
    assert status["parts"][0]["etag"] == first
    fresh = doctor.post(f"/upload/{image_id}/parts", {"partNumbers": [2, 3]}).json()["parts"]
    etags = [first] + [
        put_part(p["url"], data[(p["partNumber"] - 1) * PART : p["partNumber"] * PART]) for p in fresh
    ]

    done = doctor.post(
        f"/upload/{image_id}/complete",
        {"parts": [{"partNumber": n, "etag": e} for n, e in enumerate(etags, 1)]},
    )
    assert done.status_code == 200, done.text
    record = doctor.wait_for_status(image_id, "ACTIVE")
    assert record["originalSize"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert (record["width"], record["height"]) == (5184, 3456)


def test_completion_refuses_parts_that_do_not_add_up(
    doctor: ApiClient, small_parts: None, big_photo: Path
) -> None:
    data = big_photo.read_bytes()
    target = start(doctor, len(data))
    etag = put_part(target["multipart"]["parts"][0]["url"], data[:PART])
    response = doctor.post(
        f"/upload/{target['imageId']}/complete", {"parts": [{"partNumber": 1, "etag": etag}]}
    )
    assert response.status_code == 400 and "declared" in response.json()["message"]
    assert doctor.get(f"/images/{target['imageId']}").json()["status"] == "PENDING_UPLOAD"


def test_abort_rejects_the_file_and_frees_the_parts(
    doctor: ApiClient, small_parts: None, big_photo: Path
) -> None:
    data = big_photo.read_bytes()
    target = start(doctor, len(data))
    put_part(target["multipart"]["parts"][0]["url"], data[:PART])
    assert doctor.delete(f"/upload/{target['imageId']}").status_code == 204
    record = doctor.get(f"/images/{target['imageId']}").json()
    assert record["status"] == "REJECTED" and record["rejectCode"] == "upload_aborted"
    assert doctor.get(f"/upload/{target['imageId']}/parts").status_code == 409
    stack = doctor.stack
    assert stack.resources is not None
    uploads = stack.client("s3").list_multipart_uploads(Bucket=stack.resources.values["originals_bucket"])
    assert target["multipart"]["uploadId"] not in {u["UploadId"] for u in uploads.get("Uploads", [])}


def test_re_signing_checks_part_numbers(doctor: ApiClient, small_parts: None, big_photo: Path) -> None:
    target = doctor.post(
        "/upload",
        {
            "fileName": "big.jpg",
            "size": big_photo.stat().st_size,
            "contentType": "image/jpeg",
            "patientId": "pat_1",
        },
    ).json()
    response = doctor.post(f"/upload/{target['imageId']}/parts", {"partNumbers": [4]})
    assert response.status_code == 400
