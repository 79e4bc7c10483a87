"""Folder imports: the clinic's filename pattern names the patient through chart numbers;
a name that does not resolve leaves the file in PENDING_MATCH."""

from __future__ import annotations

import uuid

import requests

from orca_imaging.auth import Role
from orca_imaging.local.stack import LocalStack
from tests.conftest import CORPUS
from tests.integration.conftest import ApiClient

PHOTOS = [CORPUS / "photos" / name for name in ("Olympus_C8080WZ.jpg", "Sony_HDR-HC3.jpg", "Pentax_K10D.jpg")]


def test_files_are_matched_by_the_clinics_pattern_and_never_guessed(stack: LocalStack) -> None:
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    admin = ApiClient(stack, clinic, Role.CLINIC_ADMIN)
    assert admin.put("/patients/pat_ada", {"chartNumber": "1001"}).status_code == 204
    assert admin.put("/settings", {"filenamePattern": "bad pattern"}).status_code == 400
    saved = admin.put("/settings", {"filenamePattern": "{chart}_{slot}"})
    assert saved.status_code == 200 and saved.json()["filenamePattern"] == "{chart}_{slot}"
    assert admin.get("/settings").json()["filenamePattern"] == "{chart}_{slot}"

    staff = ApiClient(stack, clinic, Role.CLINICAL_STAFF)
    names = ["1001_frontal_smile.jpg", "9999_profile_right.jpg", "holiday.jpg"]
    files = [
        {"fileName": n, "size": p.stat().st_size, "contentType": "image/jpeg"}
        for n, p in zip(names, PHOTOS, strict=True)
    ]
    batch = staff.post("/upload/batch", {"source": "migration", "files": files}).json()
    for target, path in zip(batch["targets"], PHOTOS, strict=True):
        assert requests.post(
            target["url"], data=target["fields"], files={"file": path.read_bytes()}, timeout=30
        ).ok

    matched, unknown_chart, no_pattern = (t["imageId"] for t in batch["targets"])
    ada = staff.wait_for_status(matched, "ACTIVE")
    assert (ada["patientId"], ada["protocolSlot"]) == ("pat_ada", "frontal_smile")
    for image_id in (unknown_chart, no_pattern):
        waiting = staff.wait_for_status(image_id, "PENDING_MATCH")
        assert "patientId" not in waiting  # no guess
    view = staff.get(f"/upload/batch/{batch['batchId']}").json()
    assert view["succeeded"] == 3  # processed, even if two wait for a person to match them
