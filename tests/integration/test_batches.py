"""Batches end to end on the local stack: real photos over HTTP, counts, events, cancel, timeout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from typing import TYPE_CHECKING, Any

import pytest
import requests
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from orca_imaging import pipeline, settings
from orca_imaging.resources import queue_feeding
from tests.conftest import CORPUS, corpus_files
from tests.integration.conftest import ApiClient, delivered, emitted_metrics, s3_event, watch_events

if TYPE_CHECKING:
    from pathlib import Path

    from orca_imaging.local.stack import LocalStack

PHOTOS = [p for p in corpus_files("photos")]
TRUNCATED = CORPUS / "bad" / "jpeg_cut_half_canon.jpg"


def batch_body(files: list[Path], **extra: Any) -> dict[str, Any]:
    return {
        "patientId": "pat_1",
        "files": [
            {"fileName": f"{i:03d}-{f.name}", "size": f.stat().st_size, "contentType": "image/jpeg"}
            for i, f in enumerate(files)
        ],
        **extra,
    }


def post_file(target: dict[str, Any], path: Path) -> None:
    response = requests.post(
        target["url"], data=target["fields"], files={"file": path.read_bytes()}, timeout=60
    )
    assert response.status_code == 204, response.text


# Generous: it only bounds how long a failure takes to show. Fifty real photos took 26-34 s
# here, and 97 s once on a machine kept busy (by batch trackers left polling, since stopped).
def wait_for_batch(client: ApiClient, batch_id: str, *statuses: str, timeout: float = 300) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        view: dict[str, Any] = client.get(f"/upload/batch/{batch_id}").json()
        return view if view["status"] in statuses else None

    result: dict[str, Any] = client.stack.wait_until(done, timeout=timeout, interval=0.5)
    return result


@pytest.fixture
def completed_events(stack: LocalStack) -> Any:
    """Collects BatchCompleted events from the bus through an SQS target."""
    return watch_events(stack, "BatchCompleted", key="batchId")


def test_fifty_real_photos_complete_with_exact_counts(doctor: ApiClient, completed_events: Any) -> None:
    files = list(islice(cycle(PHOTOS), 50))
    response = doctor.post("/upload/batch", batch_body(files, source="migration"))
    assert response.status_code == 201, response.text
    batch = response.json()
    assert len(batch["targets"]) == 50
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post_file, batch["targets"], files))

    view = wait_for_batch(doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert view["status"] == "COMPLETED", view["errors"]
    assert (view["total"], view["processed"], view["succeeded"], view["failed"]) == (50, 50, 50, 0)
    assert view["progress"] == 100.0 and view["completedAt"]
    assert {f["status"] for f in view["files"]} == {"SUCCEEDED"}
    assert completed_events(batch["batchId"]) == {
        "clinicId": "clinic-a",
        "batchId": batch["batchId"],
        "status": "COMPLETED",
        "total": 50,
        "succeeded": 50,
        "failed": 0,
    }


def test_a_bad_file_fails_alone_with_its_reason(doctor: ApiClient) -> None:
    files = [PHOTOS[0], TRUNCATED, PHOTOS[1]]
    batch = doctor.post("/upload/batch", batch_body(files)).json()
    for target, path in zip(batch["targets"], files, strict=True):
        post_file(target, path)
    view = wait_for_batch(doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert view["status"] == "COMPLETED_WITH_ERRORS"
    assert (view["succeeded"], view["failed"]) == (2, 1)
    (error,) = view["errors"]
    assert error["imageId"] == batch["targets"][1]["imageId"] and error["reason"] == "truncated"
    # The rejected original is kept, and a copy sits in quarantine.
    bad = doctor.get(f"/images/{error['imageId']}").json()
    assert bad["status"] == "REJECTED" and bad["rejectCode"] == "truncated"
    assert requests.get(bad["urls"]["original"], timeout=30).content == TRUNCATED.read_bytes()
    s3 = doctor.stack.client("s3")
    assert doctor.stack.resources is not None
    quarantined = s3.get_object(
        Bucket=doctor.stack.resources.values["originals_bucket"],
        Key=f"quarantine/clinic/clinic-a/{error['imageId']}",
    )
    assert quarantined["Body"].read() == TRUNCATED.read_bytes()


def test_a_redelivered_event_never_counts_twice(doctor: ApiClient) -> None:
    files = [PHOTOS[2], PHOTOS[3]]
    batch = doctor.post("/upload/batch", batch_body(files)).json()
    post_file(batch["targets"][0], files[0])
    first = doctor.wait_for_status(batch["targets"][0]["imageId"], "ACTIVE")
    stack = doctor.stack
    assert stack.resources is not None
    body = s3_event(
        stack.resources.values["originals_bucket"],
        batch["targets"][0]["fields"]["key"],
        first["objectVersion"],
    )
    for _ in range(3):
        stack.sqs().send_message(QueueUrl=stack.resources.queue_urls["Intake"], MessageBody=body)
    post_file(batch["targets"][1], files[1])
    view = wait_for_batch(doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert (view["processed"], view["succeeded"], view["failed"]) == (2, 2, 0)


def test_cancel_mid_batch_keeps_what_was_processed(doctor: ApiClient) -> None:
    files = [PHOTOS[4], PHOTOS[5], PHOTOS[6]]
    batch = doctor.post("/upload/batch", batch_body(files)).json()
    post_file(batch["targets"][0], files[0])
    doctor.wait_for_status(batch["targets"][0]["imageId"], "ACTIVE")

    cancelled = doctor.delete(f"/upload/batch/{batch['batchId']}")
    assert cancelled.status_code == 200, cancelled.text
    view = cancelled.json()
    assert view["status"] == "CANCELLED" and view["cancelledAt"]
    assert [f["status"] for f in view["files"]] == ["SUCCEEDED", "CANCELLED", "CANCELLED"]

    stack = doctor.stack
    batch_record = stack.client("stepfunctions").list_executions(
        stateMachineArn=stack.resources.values["batch_state_machine_arn"] if stack.resources else ""
    )["executions"]
    (execution,) = [e for e in batch_record if e["name"] == batch["batchId"]]
    assert execution["status"] == "ABORTED"

    # A file that still arrives after the cancel is not processed or counted.
    post_file(batch["targets"][1], files[1])
    late = doctor.get(f"/images/{batch['targets'][1]['imageId']}").json()
    assert late["status"] == "REJECTED" and late["rejectCode"] == "upload_cancelled"
    again = doctor.delete(f"/upload/batch/{batch['batchId']}").json()  # cancelling twice is harmless
    assert (again["status"], again["succeeded"], again["failed"]) == ("CANCELLED", 1, 0)


def test_files_never_uploaded_fail_at_the_deadline(
    doctor: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCA_BATCH_UPLOAD_TIMEOUT_SECONDS", "3")
    settings.load.cache_clear()
    files = [PHOTOS[7], PHOTOS[8]]
    batch = doctor.post("/upload/batch", batch_body(files)).json()
    monkeypatch.undo()
    settings.load.cache_clear()
    post_file(batch["targets"][0], files[0])

    view = wait_for_batch(doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert view["status"] == "COMPLETED_WITH_ERRORS"
    assert [(f["status"], f.get("reason")) for f in view["files"]] == [
        ("SUCCEEDED", None),
        ("FAILED", "upload_timeout"),
    ]


def test_a_finished_batch_cannot_be_cancelled(doctor: ApiClient) -> None:
    batch = doctor.post("/upload/batch", batch_body([PHOTOS[9]])).json()
    post_file(batch["targets"][0], PHOTOS[9])
    wait_for_batch(doctor, batch["batchId"], "COMPLETED")
    response = doctor.delete(f"/upload/batch/{batch['batchId']}")
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def test_batch_requests_are_validated(doctor: ApiClient) -> None:
    too_many = {
        "files": [{"fileName": f"{i}.jpg", "size": 1, "contentType": "image/jpeg"} for i in range(1001)]
    }
    assert doctor.post("/upload/batch", too_many).status_code == 400
    duplicate_names = {"files": [{"fileName": "a.jpg", "size": 1, "contentType": "image/jpeg"}] * 2}
    response = doctor.post("/upload/batch", duplicate_names)
    assert response.status_code == 400 and "unique" in response.json()["message"]
    unknown_patient = doctor.post("/upload/batch", {**batch_body([PHOTOS[0]]), "patientId": "pat_nobody"})
    assert unknown_patient.status_code == 404


# Every photo in bad/, by what the pipeline makes of it. Files whose pixels decode but whose
# metadata is odd are kept (see the README's design notes): exif_invalid_* carry XMP and no
# EXIF at all, the Olympus file's damage is inside its vendor MakerNote, and the Canon 30D's
# GPS IFD is structurally broken, which is flagged.
BAD_PHOTO_OUTCOMES = {
    "jpeg_32_bytes_truncated_exif.jpg": ("FAILED", "truncated"),
    "jpeg_cut_half_canon.jpg": ("FAILED", "truncated"),
    "jpeg_truncated_real.jpg": ("FAILED", "truncated"),
    "heic_cut_30pct.heic": ("FAILED", "truncated"),
    "jpeg_broken_exif_canon30d.jpg": ("SUCCEEDED", "exif_damaged"),
    "exif_corrupted_olympus.jpg": ("SUCCEEDED", None),
    "exif_invalid_1.jpg": ("SUCCEEDED", None),
    "exif_invalid_2.jpg": ("SUCCEEDED", None),
    "jpeg_exif_offset_out_of_bounds.jpg": ("SUCCEEDED", None),
}


def test_every_bad_photo_is_handled_with_its_reason_beside_good_ones(fresh_doctor: ApiClient) -> None:
    bad = [CORPUS / "bad" / name for name in BAD_PHOTO_OUTCOMES]
    good = PHOTOS[:3]
    files = [good[0], *bad[:4], good[1], *bad[4:], good[2]]
    batch = fresh_doctor.post("/upload/batch", batch_body(files)).json()
    for target, path in zip(batch["targets"], files, strict=True):
        post_file(target, path)
    view = wait_for_batch(fresh_doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")

    by_id = {f["imageId"]: f for f in view["files"]}
    outcomes = {
        path.name: (by_id[t["imageId"]]["status"], by_id[t["imageId"]].get("reason"))
        for t, path in zip(batch["targets"], files, strict=True)
    }
    for name, (status, note) in BAD_PHOTO_OUTCOMES.items():
        if status == "FAILED":
            assert outcomes[name] == (status, note), name
        else:
            entry = by_id[batch["targets"][files.index(CORPUS / "bad" / name)]["imageId"]]
            assert (entry["status"], entry.get("warnings")) == (status, [note] if note else None), name
    assert [outcomes[p.name][0] for p in good] == ["SUCCEEDED"] * 3
    assert {e["reason"] for e in view["errors"]} == {"truncated"} and len(view["errors"]) == 4
    assert (view["succeeded"], view["failed"]) == (8, 4)


def test_a_file_that_fails_every_receive_is_rejected_on_the_last(
    fresh_doctor: ApiClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fault no retry cures (a decoder bug on one file) would dead-letter the file's message
    and leave it PROCESSING, its batch never complete. Every receive but the last raises, so
    SQS retries it; the last rejects it with a reason, and the batch completes. (A clinic of
    its own: a photo seen before there is finished as a duplicate, never processed.)"""
    files = [p for p in PHOTOS if p.suffix.lower() == ".jpg"][:2]
    batch = fresh_doctor.post("/upload/batch", batch_body(files)).json()
    doomed = batch["targets"][1]["imageId"]
    process_photo = pipeline.PROCESSORS["jpeg"]

    def fails_on_the_doomed(image: Any, *rest: Any) -> Any:
        if image.image_id == doomed:
            raise RuntimeError("a decoder bug")
        return process_photo(image, *rest)

    monkeypatch.setitem(pipeline.PROCESSORS, "jpeg", fails_on_the_doomed)
    for target, path in zip(batch["targets"], files, strict=True):
        post_file(target, path)
    received = fresh_doctor.wait_for_status(doomed, "PROCESSING")
    assert fresh_doctor.stack.resources is not None
    bucket = fresh_doctor.stack.resources.values["originals_bucket"]
    body = s3_event(bucket, batch["targets"][1]["fields"]["key"], received["objectVersion"])

    queue = queue_feeding("process_image")
    last = queue.max_receive_count
    with pytest.raises(BatchProcessingError, match="RuntimeError") as raised:  # a batch of one, all failed
        delivered(fresh_doctor.stack, "process_image", body, receive_count=last - 1)
    assert "a decoder bug" not in str(raised.value)  # what Lambda logs: the type, never the message
    assert fresh_doctor.get(f"/images/{doomed}").json()["status"] == "PROCESSING"
    capsys.readouterr()
    answer = delivered(fresh_doctor.stack, "process_image", body, receive_count=last)
    assert answer == {"batchItemFailures": []}
    assert queue.gave_up_metric in emitted_metrics(capsys.readouterr().out)  # what its alarm watches

    view = wait_for_batch(fresh_doctor, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    assert view["status"] == "COMPLETED_WITH_ERRORS"
    assert (view["succeeded"], view["failed"]) == (1, 1)
    (error,) = view["errors"]
    assert (error["imageId"], error["reason"]) == (doomed, "processing_failed")
    assert "a decoder bug" not in error["message"]  # the clinic is told what, not the trace
    quarantined = fresh_doctor.stack.client("s3").get_object(
        Bucket=bucket, Key=f"quarantine/clinic/{fresh_doctor.clinic}/{doomed}"
    )
    assert quarantined["Body"].read() == files[1].read_bytes()
