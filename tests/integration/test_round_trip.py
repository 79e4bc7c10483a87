"""The first real round trip: target, upload over HTTP, S3 -> SQS -> consumer, record."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import requests

from orca_imaging import repository
from orca_imaging.auth import Role
from tests.conftest import CORPUS
from tests.integration.conftest import ApiClient, s3_event, sha256_of

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack

PHOTO = CORPUS / "photos" / "Canon_40D.jpg"


def test_an_uploaded_jpeg_is_received_with_its_true_size_and_hash(
    stack: LocalStack, fresh_doctor: ApiClient
) -> None:
    target = fresh_doctor.upload(PHOTO)
    image_id = target["imageId"]
    assert f"clinic/{fresh_doctor.clinic}/original/{image_id}" == target["fields"]["key"]

    record = fresh_doctor.wait_for_status(image_id, "ACTIVE")
    assert (record["width"], record["height"]) == (100, 68)
    assert record["originalSize"] == PHOTO.stat().st_size
    assert record["sha256"] == sha256_of(PHOTO)
    assert record["mimeType"] == "image/jpeg" and record["fileType"] == "PHOTO"
    assert record["filename"] == PHOTO.name and record["patientId"] == "pat_1"
    assert record["objectVersion"]

    # The original is in S3 byte for byte, and its view URL serves it.
    assert requests.get(record["urls"]["original"], timeout=30).content == PHOTO.read_bytes()

    # Variants sit in the derived bucket, as JPEGs with cache headers, behind view URLs.
    assert set(record["variantKeys"]) == {"thumb", "preview", "full"}
    assert record["thumbnailKey"] == f"clinic/{fresh_doctor.clinic}/derived/{image_id}/thumb.jpg"
    assert stack.resources is not None
    s3 = stack.client("s3")
    for name, key in record["variantKeys"].items():
        head = s3.head_object(Bucket=stack.resources.values["derived_bucket"], Key=key)
        assert head["ContentType"] == "image/jpeg" and "immutable" in head["CacheControl"]
        assert head["ServerSideEncryption"] == "aws:kms"
        assert requests.get(record["urls"][name], timeout=30).content.startswith(b"\xff\xd8")
    # EXIF on the record: the summary, the capture time and the full block.
    assert record["exif"]["model"] == "Canon EOS 40D" and record["exif"]["iso"] == 100
    assert (
        record["capturedAt"].startswith("2008-05-30T15:56:01") and record["capturedAtSource"] == "exif_local"
    )
    assert record["metadata"]["GPSInfo"]  # kept on the encrypted record, never in a variant

    trail = [e.action for e in repository.audit_trail(fresh_doctor.clinic, image_id)]
    # Polling the record issues view URLs (audited too) while the file is processed.
    lifecycle = [action for action in trail if action != "VIEW_URLS_ISSUED"]
    assert lifecycle == ["UPLOAD_REQUESTED", "IMAGE_RECEIVED", "IMAGE_PROCESSED"]
    assert "VIEW_URLS_ISSUED" in trail


def test_the_request_correlation_id_follows_the_file(stack: LocalStack, fresh_doctor: ApiClient) -> None:
    target = fresh_doctor.upload(PHOTO)
    fresh_doctor.wait_for_status(target["imageId"], "ACTIVE")
    events = [
        e
        for e in repository.audit_trail(fresh_doctor.clinic, target["imageId"])
        if e.action != "VIEW_URLS_ISSUED"
    ]
    requested, received = events[0], events[1]
    assert requested.correlation_id and requested.correlation_id == received.correlation_id


def test_a_redelivered_event_changes_nothing(stack: LocalStack, fresh_doctor: ApiClient) -> None:
    target = fresh_doctor.upload(PHOTO)
    image_id = target["imageId"]
    first = fresh_doctor.wait_for_status(image_id, "ACTIVE")
    assert stack.resources is not None
    queue_url = stack.resources.queue_urls["Intake"]
    bucket = stack.resources.values["originals_bucket"]
    body = s3_event(bucket, target["fields"]["key"], first["objectVersion"])
    sqs = stack.sqs()
    for _ in range(2):  # S3 may send one event as two messages
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    stack.wait_until(lambda: _queue_drained(stack, queue_url), timeout=30)

    after = repository.get_image(fresh_doctor.clinic, image_id)
    assert after.updated_at.isoformat() == first["updatedAt"].replace("+0000", "+00:00")
    actions = [e.action for e in repository.audit_trail(fresh_doctor.clinic, image_id)]
    assert actions.count("IMAGE_RECEIVED") == actions.count("IMAGE_PROCESSED") == 1


def _queue_drained(stack: LocalStack, queue_url: str) -> bool:
    attributes = stack.sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    time.sleep(0.5)
    return all(int(v) == 0 for v in attributes.values())


def test_a_checksum_mismatch_rejects_the_file_and_says_why(
    stack: LocalStack, fresh_doctor: ApiClient
) -> None:
    events = stack.client("events")
    sqs = stack.sqs()
    assert stack.resources is not None
    bus = stack.resources.values["event_bus_name"]
    watch = sqs.create_queue(QueueName="watch-rejected")["QueueUrl"]
    watch_arn = sqs.get_queue_attributes(QueueUrl=watch, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="rejected", EventBusName=bus, EventPattern=json.dumps({"detail-type": ["ImageRejected"]})
    )
    events.put_targets(Rule="rejected", EventBusName=bus, Targets=[{"Id": "q", "Arn": watch_arn}])

    target = fresh_doctor.upload(PHOTO, sha256="0" * 64)
    record = fresh_doctor.wait_for_status(target["imageId"], "REJECTED")
    assert record["rejectCode"] == "checksum_mismatch"
    assert record["sha256"] == sha256_of(PHOTO)

    def rejected_event() -> dict[str, object] | None:
        for message in sqs.receive_message(QueueUrl=watch, WaitTimeSeconds=1).get("Messages", []):
            detail = json.loads(message["Body"])["detail"]
            if detail["imageId"] == target["imageId"]:
                return dict(detail)
        return None

    detail = stack.wait_until(rejected_event, timeout=20)
    assert detail == {
        "clinicId": fresh_doctor.clinic,
        "imageId": target["imageId"],
        "batchId": None,
        "code": "checksum_mismatch",
    }


def test_another_clinic_cannot_see_the_image(stack: LocalStack, fresh_doctor: ApiClient) -> None:
    target = fresh_doctor.upload(PHOTO)
    fresh_doctor.wait_for_status(target["imageId"], "ACTIVE")
    outsider = ApiClient(stack, "clinic-b", Role.CLINIC_ADMIN)  # a different clinic
    hidden = outsider.get(f"/images/{target['imageId']}")
    missing = outsider.get("/images/img_doesnotexist")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"] == "not_found"
    assert hidden.json()["message"] == missing.json()["message"]


def test_api_gateway_answers_401_without_a_valid_token(stack: LocalStack) -> None:
    url = f"{stack.api_url}/api/imaging/upload"
    assert requests.post(url, json={}, timeout=10).status_code == 401
    assert (
        requests.post(url, json={}, headers={"Authorization": "Bearer forged"}, timeout=10).status_code == 401
    )
