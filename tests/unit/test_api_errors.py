"""Errors leave the API as `{code, message, correlationId}` with the error's status.

Every case here is refused before any AWS call, so the handler runs with no network.
"""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from orca_imaging import clients
from orca_imaging.local.lambda_runtime import LocalContext

if TYPE_CHECKING:
    from types import ModuleType

ENV = {
    "AWS_REGION": "us-east-1",
    "ORCA_IMAGES_TABLE": "images",
    "ORCA_AUDIT_TABLE": "audit",
    "ORCA_ORIGINALS_BUCKET": "originals",
    "ORCA_DERIVED_BUCKET": "derived",
    "ORCA_KMS_KEY_ID": "key",
    "ORCA_PATIENTS_TABLE": "patients",
    "ORCA_BATCHES_TABLE": "batches",
    "ORCA_CLINICS_TABLE": "clinics",
    "ORCA_DICOM_NODES_TABLE": "dicom-nodes",
    "ORCA_WORKLIST_TABLE": "worklist",
    "ORCA_PACS_RETRIEVES_TABLE": "pacs-retrieves",
    "ORCA_PACS_RETRIEVE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/pacs-retrieves",
    "ORCA_BATCH_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:b",
}
GOOD_BODY = {"fileName": "a.jpg", "size": 10, "contentType": "image/jpeg", "patientId": "pat_1"}


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    import functions.upload_url.handler as module

    # Reload so the module binds its tables from this test's environment.
    return importlib.reload(module)


def call(handler: ModuleType, body: Any, claims: dict[str, str] | None) -> tuple[int, dict[str, Any]]:
    event = {
        "resource": "/api/imaging/upload",
        "path": "/api/imaging/upload",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "pathParameters": None,
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": "req-123",
            "stage": "v1",
            "authorizer": {"claims": claims} if claims else None,
        },
    }
    result = handler.lambda_handler(event, LocalContext("upload_url", 512, 15))
    return result["statusCode"], json.loads(result["body"])


def claims(role: str) -> dict[str, str]:
    return {"sub": "usr_1", "custom:clinicId": "c1", "cognito:groups": role}


def test_no_claims_is_401_with_the_error_shape(handler: ModuleType) -> None:
    status, body = call(handler, GOOD_BODY, None)
    assert status == 401
    assert body == {"code": "unauthorized", "message": "no authenticated caller", "correlationId": "req-123"}


def test_a_role_without_capture_is_403(handler: ModuleType) -> None:
    status, body = call(handler, GOOD_BODY, claims("front_desk"))
    assert status == 403
    assert body["code"] == "forbidden" and "imaging:capture" in body["message"]


def test_a_bad_body_is_400_naming_each_field(handler: ModuleType) -> None:
    status, body = call(handler, {**GOOD_BODY, "size": -1, "contentType": "not a type"}, claims("doctor"))
    assert status == 400
    assert body["code"] == "validation_error"
    assert {f["field"] for f in body["details"]["fields"]} == {"size", "contentType"}


def test_a_file_over_the_clinic_maximum_is_413(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    status, body = call(handler, {**GOOD_BODY, "size": 3 * 1024**3}, claims("doctor"))
    assert status == 413
    assert body["code"] == "payload_too_large" and body["details"]["maxBytes"] == 2 * 1024**3


def test_a_fault_of_ours_is_a_500_with_the_error_shape_and_logged_without_its_message(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch, log_lines: list[dict[str, Any]]
) -> None:
    patient = "DOE^JANE"

    def fails(*_: object, **__: object) -> None:
        raise RuntimeError(f"cannot file an upload for {patient}")

    monkeypatch.setattr(handler.routes_uploads.uploads, "create_upload_target", fails)
    status, body = call(handler, GOOD_BODY, claims("doctor"))

    assert status == 500
    assert body["code"] == "internal_error" and body["correlationId"] == "req-123"
    assert patient not in json.dumps(body)
    [line] = [line for line in log_lines if line["message"] == "request failed unexpectedly"]
    assert line["exception_name"] == "RuntimeError" and line["correlation_id"] == "req-123"
    assert all(patient not in json.dumps(line) for line in log_lines)
