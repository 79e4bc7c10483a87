"""A patient's images: filters, cursor pagination, soft delete and its audit trail."""

from __future__ import annotations

import pytest

from orca_imaging import repository
from orca_imaging.auth import Role
from orca_imaging.local.stack import LocalStack
from tests.conftest import corpus_files
from tests.integration.conftest import ApiClient


@pytest.fixture(scope="module")
def gallery(stack: LocalStack) -> list[str]:
    """Five photos for pat_2 in clinic-b, processed."""
    staff = ApiClient(stack, "clinic-b", Role.CLINICAL_STAFF)
    ids = [staff.upload(path, patient="pat_2")["imageId"] for path in corpus_files("photos")[:5]]
    for image_id in ids:
        staff.wait_for_status(image_id, "ACTIVE")
    return ids


def test_listing_pages_with_a_cursor_newest_first(stack: LocalStack, gallery: list[str]) -> None:
    viewer = ApiClient(stack, "clinic-b", Role.READ_ONLY)
    seen: list[str] = []
    captured: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = viewer.get("/patients/pat_2/images", **params).json()
        seen += [image["imageId"] for image in page["images"]]
        captured += [image["capturedAt"] for image in page["images"]]
        pages += 1
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(gallery) and len(seen) == len(set(seen))
    assert pages >= 3
    assert captured == sorted(captured, reverse=True)  # newest capture first


def test_filters_by_type_status_and_date(stack: LocalStack, gallery: list[str]) -> None:
    viewer = ApiClient(stack, "clinic-b", Role.DOCTOR)
    photos = viewer.get("/patients/pat_2/images", fileType="PHOTO", status="ACTIVE").json()["images"]
    assert {i["imageId"] for i in photos} == set(gallery)
    assert viewer.get("/patients/pat_2/images", fileType="XRAY").json()["images"] == []
    future = viewer.get("/patients/pat_2/images", **{"from": "2100-01-01T00:00:00Z"}).json()["images"]
    assert future == []
    bad = viewer.get("/patients/pat_2/images", fileType="HOLOGRAM")
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


def test_a_cursor_cannot_be_used_for_another_patient(stack: LocalStack, gallery: list[str]) -> None:
    viewer = ApiClient(stack, "clinic-b", Role.DOCTOR)
    cursor = viewer.get("/patients/pat_2/images", limit=1).json()["nextCursor"]
    response = viewer.get("/patients/pat_1/images", cursor=cursor)
    assert response.status_code == 400


def test_soft_delete_hides_the_image_keeps_it_and_audits(stack: LocalStack, gallery: list[str]) -> None:
    doctor = ApiClient(stack, "clinic-b", Role.DOCTOR)
    admin = ApiClient(stack, "clinic-b", Role.CLINIC_ADMIN, user="usr_admin")
    target = gallery[0]
    assert doctor.delete(f"/images/{target}").status_code == 403  # delete is clinic_admin's
    assert admin.delete(f"/images/{target}").status_code == 204
    assert admin.delete(f"/images/{target}").status_code == 204  # idempotent

    listed = {i["imageId"] for i in doctor.get("/patients/pat_2/images").json()["images"]}
    assert target not in listed
    deleted = doctor.get("/patients/pat_2/images", status="DELETED").json()["images"]
    assert [i["imageId"] for i in deleted] == [target] and deleted[0]["deletedAt"]
    record = doctor.get(f"/images/{target}").json()
    assert record["status"] == "DELETED" and record["urls"] == {}
    actions = [(e.action, e.actor) for e in repository.audit_trail("clinic-b", target)]
    assert actions.count(("IMAGE_DELETED", "usr_admin")) == 1
