"""Every route x every role, and every route with another clinic's ids."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

from orca_imaging import repository
from orca_imaging.auth import ROLE_PERMISSIONS, Role
from orca_imaging.local.stack import free_port
from orca_imaging.resources import ROUTES
from tests.conftest import CORPUS
from tests.integration.conftest import ApiClient

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack

PHOTO = CORPUS / "photos" / "Nikon_D70.jpg"
ONE_FILE = {"fileName": "a.jpg", "size": 10, "contentType": "image/jpeg"}

# The issue's table (and the spec's endpoint tables): route -> permission.
REQUIRED = {
    ("POST", "/upload"): "imaging:capture",
    ("POST", "/upload/batch"): "imaging:capture",
    ("GET", "/upload/batch/{batch_id}"): "imaging:capture",
    ("DELETE", "/upload/batch/{batch_id}"): "imaging:capture",
    ("GET", "/upload/{image_id}/parts"): "imaging:capture",
    ("POST", "/upload/{image_id}/parts"): "imaging:capture",
    ("POST", "/upload/{image_id}/complete"): "imaging:capture",
    ("DELETE", "/upload/{image_id}"): "imaging:capture",
    ("POST", "/dicom/import"): "imaging:capture",
    ("POST", "/3d/import"): "imaging:capture",
    ("GET", "/dicom/pending"): "imaging:capture",
    ("POST", "/dicom/match"): "imaging:capture",
    ("GET", "/dicom/nodes"): "imaging:admin",
    ("POST", "/dicom/nodes"): "imaging:admin",
    ("DELETE", "/dicom/nodes/{ae_title}"): "imaging:admin",
    ("GET", "/dicom/worklist"): "imaging:admin",
    ("POST", "/dicom/worklist"): "imaging:capture",
    ("POST", "/dicom/query"): "imaging:admin",
    ("POST", "/dicom/retrieve"): "imaging:admin",
    ("GET", "/dicom/retrieve/{retrieve_id}"): "imaging:admin",
    ("GET", "/images/{image_id}"): "imaging:view",
    ("DELETE", "/images/{image_id}"): "imaging:delete",
    ("GET", "/patients/{patient_id}/images"): "imaging:view",
    ("GET", "/patients/{patient_id}/radiation"): "imaging:view",
    ("PUT", "/patients/{patient_id}"): "imaging:admin",
    ("GET", "/settings"): "imaging:admin",
    ("PUT", "/settings"): "imaging:admin",
    ("GET", "/openapi.json"): None,  # any signed-in caller
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/upload"): {**ONE_FILE, "patientId": "pat_1"},
    ("POST", "/upload/batch"): {"files": [ONE_FILE]},
    ("POST", "/dicom/import"): {"files": [{**ONE_FILE, "contentType": "application/dicom"}]},
    ("POST", "/3d/import"): {"files": [{**ONE_FILE, "contentType": "model/stl"}]},
    ("POST", "/upload/{image_id}/parts"): {"partNumbers": [1]},
    ("POST", "/upload/{image_id}/complete"): {"parts": [{"partNumber": 1, "etag": "x"}]},
    ("PUT", "/patients/{patient_id}"): {"chartNumber": "x"},
    ("POST", "/dicom/match"): {"patientId": "pat_1", "studyUid": "1.2.3"},
    ("POST", "/dicom/nodes"): {"aeTitle": "ACCESS-TEST"},
    ("POST", "/dicom/worklist"): {
        "patientId": "pat_1",
        "accessionNumber": "ACC-ACCESS",
        "scheduledAt": "2026-11-22T10:00:00",
        "modality": "PX",
    },
    ("POST", "/dicom/query"): {"node": "NO-SUCH-PACS"},
    ("POST", "/dicom/retrieve"): {"node": "NO-SUCH-PACS", "studyInstanceUid": "1.2.3"},
    ("PUT", "/settings"): {},
}


def test_the_route_table_is_the_issue_table() -> None:
    assert {(r.method, r.path.removeprefix("/api/imaging")) for r in ROUTES} == set(REQUIRED)


@pytest.fixture(scope="module")
def owned(stack: LocalStack) -> dict[str, str]:
    """Ids that exist in clinic-a: an image and a batch."""
    owner = ApiClient(stack, "clinic-a", Role.CLINICAL_STAFF)
    image = owner.upload(PHOTO)["imageId"]
    batch = owner.post("/upload/batch", {"files": [ONE_FILE], "patientId": "pat_1"}).json()["batchId"]
    return {
        "image_id": image,
        "batch_id": batch,
        "patient_id": "pat_1",
        "ae_title": "ACCESS-NODE",
        "retrieve_id": "ret_none",
    }


def call(client: ApiClient, method: str, path: str, ids: dict[str, str]) -> requests.Response:
    url = client.base + path.format(**ids)
    body = BODIES.get((method, path))
    return requests.request(method, url, json=body, headers=client.headers, timeout=30)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize(("method", "path"), sorted(REQUIRED), ids=lambda v: str(v))
def test_permission_matrix(
    stack: LocalStack, owned: dict[str, str], role: Role, method: str, path: str
) -> None:
    client = ApiClient(stack, "clinic-a", role)
    response = call(client, method, path, owned)
    needed = REQUIRED[(method, path)]
    allowed = needed is None or needed in {p.value for p in ROLE_PERMISSIONS[role]}
    if allowed:
        assert response.status_code not in (401, 403), (response.status_code, response.text)
        assert response.status_code < 500, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"


# Every route that names an item by id. PUT /patients/{id} is left out on purpose: it writes
# the caller's own clinic's registry entry, so it cannot reach another clinic's patient.
ID_ROUTES = sorted(k for k in REQUIRED if "{" in k[1] and k != ("PUT", "/patients/{patient_id}"))


@pytest.fixture(scope="module")
def target(stack: LocalStack) -> dict[str, str]:
    """Clinic-a's ids for the isolation tests, apart from the matrix's (which deletes its own)."""
    owner = ApiClient(stack, "clinic-a", Role.CLINICAL_STAFF)
    image = owner.upload(PHOTO)["imageId"]
    batch = owner.post("/upload/batch", {"files": [ONE_FILE], "patientId": "pat_1"}).json()["batchId"]
    admin = ApiClient(stack, "clinic-a", Role.CLINIC_ADMIN)
    assert admin.put("/patients/pat_only_in_a", {}).status_code == 204
    pacs = {"aeTitle": f"PACS{uuid.uuid4().hex[:8].upper()}", "host": "127.0.0.1", "port": free_port()}
    assert admin.post("/dicom/nodes", pacs).status_code == 201
    retrieve = admin.post("/dicom/retrieve", {"node": pacs["aeTitle"], "studyInstanceUid": "1.2.3"})
    return {
        "image_id": image,
        "batch_id": batch,
        "patient_id": "pat_only_in_a",
        "ae_title": "ACCESS-NODE",
        "retrieve_id": retrieve.json()["retrieveId"],
    }


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=lambda v: str(v))
def test_another_clinics_ids_are_not_found_and_audited(
    stack: LocalStack, target: dict[str, str], method: str, path: str
) -> None:
    outsider = ApiClient(stack, "clinic-b", Role.SUPER_ADMIN, user="usr_outsider")
    foreign = target  # its patient exists only in clinic-a's registry
    response = call(outsider, method, path, foreign)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"
    subject = next(v for k, v in foreign.items() if "{" + k + "}" in path)
    trail = repository.audit_trail("clinic-b", subject)
    assert any(e.action == "ACCESS_NOT_FOUND" and e.actor == "usr_outsider" for e in trail)
    # And clinic-a's item is untouched.
    owner = ApiClient(stack, "clinic-a", Role.CLINIC_ADMIN)
    assert owner.get(f"/images/{target['image_id']}").json()["status"] != "DELETED"
