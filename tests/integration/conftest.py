from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

from orca_imaging.auth import Role
from orca_imaging.local.dicom import LocalDicomService
from orca_imaging.local.stack import LocalStack, LocalStackConfig
from orca_imaging.resources import function

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


CLINICS = ("clinic-a", "clinic-b")
PATIENTS = ("pat_1", "pat_2")
# The session's stack, once a test has asked for it.
_started: list[LocalStack] = []


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = LocalStackConfig(
        state_dir=tmp_path_factory.mktemp("state"),
        visibility_timeout_seconds=2,
        batch_poll_seconds=1,
        services=[LocalDicomService()],
    )
    with LocalStack(config) as running:
        for clinic in CLINICS:  # the registry replica, written as the PMS sync would
            admin = ApiClient(running, clinic, Role.CLINIC_ADMIN, user="usr_sync")
            for patient in PATIENTS:
                response = admin.put(f"/patients/{patient}", {"chartNumber": f"{clinic}-{patient}"})
                assert response.status_code == 204, response.text
        _started.append(running)
        yield running
        _started.clear()


@pytest.fixture(autouse=True, scope="module")
def _batch_trackers_end_with_their_module() -> Iterator[None]:
    """A batch a test leaves open (files never sent, or the contract test's generated ones)
    keeps its tracker polling once a second for six hours: thirteen of them took 40% of a
    core here, and by its end the suite ran four times slower. Stopped as each module ends."""
    yield
    for running in _started:
        running.stop_executions()


class ApiClient:
    """A caller of the local API with one identity."""

    def __init__(self, stack: LocalStack, clinic: str, role: Role, user: str = "usr_test") -> None:
        self.stack = stack
        self.clinic = clinic
        self.base = f"{stack.api_url}/api/imaging"
        self.headers = {
            "Authorization": f"Bearer {stack.token(clinic_id=clinic, roles=[role], user_id=user)}"
        }

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=30)

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.base}{path}", headers=self.headers, params=params or None, timeout=30)

    def put(self, path: str, body: Any) -> requests.Response:
        return requests.put(f"{self.base}{path}", json=body, headers=self.headers, timeout=30)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(f"{self.base}{path}", headers=self.headers, timeout=30)

    def upload(self, path: Path, *, patient: str = "pat_1", **extra: Any) -> dict[str, Any]:
        """Request a target and POST the file to it, as a browser would."""
        data = path.read_bytes()
        response = self.post(
            "/upload",
            {
                "fileName": path.name,
                "size": len(data),
                "contentType": "image/jpeg",
                "patientId": patient,
                **extra,
            },
        )
        assert response.status_code == 201, response.text
        target: dict[str, Any] = response.json()
        posted = requests.post(
            target["url"], data=target["fields"], files={"file": (path.name, data)}, timeout=30
        )
        assert posted.status_code in (200, 201, 204), posted.text
        return target

    def wait_for_status(self, image_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            record: dict[str, Any] = self.get(f"/images/{image_id}").json()
            return record if record.get("status") in statuses else None

        result: dict[str, Any] = self.stack.wait_until(ready, timeout=timeout)
        return result


@pytest.fixture
def doctor(stack: LocalStack) -> ApiClient:
    return ApiClient(stack, "clinic-a", Role.DOCTOR)


@pytest.fixture
def fresh_doctor(stack: LocalStack) -> ApiClient:
    """A doctor in a clinic of its own, with pat_1 registered: nothing uploaded there yet,
    so a corpus photo is new (not a duplicate of another test's upload)."""
    clinic = f"clinic-{uuid.uuid4().hex[:10]}"
    assert ApiClient(stack, clinic, Role.CLINIC_ADMIN).put("/patients/pat_1", {}).status_code == 204
    return ApiClient(stack, clinic, Role.DOCTOR)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def s3_event(bucket: str, key: str, version_id: str | None) -> str:
    """An S3 ObjectCreated notification body, as S3 (and moto) send it to SQS."""
    obj: dict[str, Any] = {"key": key.replace("/", "%2F"), "size": 1}
    if version_id:
        obj["versionId"] = version_id
    return json.dumps(
        {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": bucket}, "object": obj}}]}
    )


def delivered(stack: LocalStack, consumer: str, body: str, *, receive_count: int) -> Any:
    """`consumer`'s answer to one SQS message on its `receive_count`th receive: a count the
    queue keeps, which a test could otherwise set only by waiting out the visibility
    timeout that many times."""
    record = {
        "messageId": f"receive-{receive_count}",
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:000000000000:{consumer}",
        "awsRegion": "us-east-1",
    }
    return stack.host.invoke(function(consumer), {"Records": [record]})


def emitted_metrics(printed: str) -> set[str]:
    """The names of the metrics flushed in `printed`: Powertools writes them as EMF, a JSON
    line each flush, which CloudWatch turns into metrics."""
    names = set()
    for line in printed.splitlines():
        if line.startswith('{"_aws"'):
            for declared in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names |= {metric["Name"] for metric in declared["Metrics"]}
    return names


def watch_events(stack: LocalStack, detail_type: str, *, key: str) -> Any:
    """Route one detail-type from the bus to a queue of its own; return a finder that
    waits for the event whose detail[key] is the given value."""
    sqs, events = stack.sqs(), stack.client("events")
    assert stack.resources is not None
    bus = stack.resources.values["event_bus_name"]
    name = f"watch-{detail_type.lower()}-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"detail-type": [detail_type]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def find(value: str) -> dict[str, Any]:
        def look() -> dict[str, Any] | None:
            for message in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get(
                "Messages", []
            ):
                detail: dict[str, Any] = json.loads(message["Body"])["detail"]
                if detail.get(key) == value:
                    return detail
            return None

        found: dict[str, Any] = stack.wait_until(look, timeout=30)
        return found

    return find
