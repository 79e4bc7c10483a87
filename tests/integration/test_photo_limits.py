"""A clinic admin's photo limits, end to end: the settings API, the upload target, the
record and the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca_imaging.auth import Role
from tests.conftest import CORPUS
from tests.integration.conftest import ApiClient
from tests.integration.test_batches import batch_body, post_file, wait_for_batch

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack

DSLR = CORPUS / "photos" / "canon_eos1300d_18mp.jpg"  # 5184x3456, 2.1 MB
SMALL = CORPUS / "photos" / "Canon_40D.jpg"  # 100x68


def admin_of(doctor: ApiClient) -> ApiClient:
    return ApiClient(doctor.stack, doctor.clinic, Role.CLINIC_ADMIN)


def test_limits_are_validated_and_defaults_shown(stack: LocalStack, fresh_doctor: ApiClient) -> None:
    admin = admin_of(fresh_doctor)
    defaults = admin.get("/settings").json()
    assert defaults["photoSoftLimitBytes"] < defaults["photoHardLimitBytes"]
    assert defaults["minPhotoEdgePixels"] == 1
    refused = admin.put("/settings", {"photoSoftLimitBytes": 2000, "photoHardLimitBytes": 1000})
    assert refused.status_code == 400 and "photoSoftLimitBytes" in refused.text
    assert admin.put("/settings", {"photoHardLimitBytes": 0}).status_code == 400
    assert fresh_doctor.put("/settings", {"minPhotoEdgePixels": 10}).status_code == 403


def test_a_clinics_limits_warn_refuse_and_reject(stack: LocalStack, fresh_doctor: ApiClient) -> None:
    size = DSLR.stat().st_size
    saved = admin_of(fresh_doctor).put(
        "/settings",
        {"photoSoftLimitBytes": size - 1, "photoHardLimitBytes": size + 10, "minPhotoEdgePixels": 200},
    )
    assert saved.status_code == 200, saved.text

    # Over the hard limit: refused before any byte is sent.
    too_big = fresh_doctor.post(
        "/upload", {"fileName": "x.jpg", "size": size + 11, "contentType": "image/jpeg", "patientId": "pat_1"}
    )
    assert too_big.status_code == 413 and too_big.json()["details"]["maxBytes"] == size + 10
    # ...but the limit is for photos: a DICOM of that size is fine.
    dicom = fresh_doctor.post(
        "/upload",
        {"fileName": "x.dcm", "size": size + 11, "contentType": "application/dicom", "patientId": "pat_1"},
    )
    assert dicom.status_code == 201, dicom.text

    batch = fresh_doctor.post("/upload/batch", batch_body([DSLR, SMALL])).json()
    assert batch["targets"][0]["warnings"] == ["large_file"]
    assert batch["targets"][1].get("warnings") is None
    for target, path in zip(batch["targets"], [DSLR, SMALL], strict=True):
        post_file(target, path)
    view = wait_for_batch(fresh_doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert (view["succeeded"], view["failed"]) == (1, 1)
    large, small = (next(f for f in view["files"] if f["imageId"] == t["imageId"]) for t in batch["targets"])
    assert large["status"] == "SUCCEEDED" and large["warnings"] == ["large_file"]
    assert small["status"] == "FAILED" and small["reason"] == "too_small"
    record = fresh_doctor.get(f"/images/{small['imageId']}").json()
    assert record["status"] == "REJECTED" and "100x68" in record["rejectMessage"]
    assert fresh_doctor.get(f"/images/{large['imageId']}").json()["warnings"] == ["large_file"]
