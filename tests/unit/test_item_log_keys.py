"""Log keys of one item of a batch stay on that item's lines. A warm Lambda handles record
after record in one process, and Powertools keeps appended keys until they are removed: a
record's lines, up to its own `append_keys`, carried the image and correlation id of the
record before it, and lines after a CBCT sweep those of its last volume."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from orca_imaging import cbct, observability
from orca_imaging.consumers import scheduled_handler, sqs_handler
from orca_imaging.errors import ScheduledRunFailedError
from orca_imaging.local.lambda_runtime import LocalContext
from orca_imaging.models import ImageModel

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = observability.logger


def _current_keys() -> set[str]:
    """Process-wide and this thread's (the local stack, if started in this process, keeps
    them per thread)."""
    return set(logger.get_current_keys()) | set(logger.thread_safe_get_current_keys())


@pytest.fixture
def lines(log_lines: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The service logger's lines, from a logger that no earlier test in this process left
    keys on; and none left on it after (the handler's Lambda context, for one)."""
    logger.remove_keys(observability.ITEM_KEYS)
    before = _current_keys()
    yield log_lines
    logger.remove_keys(list(_current_keys() - before))


def _sqs_event(*bodies: dict[str, str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"message-{n}",
                "receiptHandle": "handle",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:queue",
                "awsRegion": "eu-west-1",
            }
            for n, body in enumerate(bodies)
        ]
    }


def test_a_records_keys_are_gone_before_the_next_record(lines: list[dict[str, Any]]) -> None:
    def handle(record: SQSRecord) -> None:
        logger.info("record started")  # before this record appends anything of its own
        logger.set_correlation_id(record.message_id)
        logger.append_keys(clinic_id="clinic-a", image_id=record.json_body["image"])
        logger.info("record done")

    handler = sqs_handler(handle)
    response = handler(
        _sqs_event({"image": "img_1"}, {"image": "img_2"}), LocalContext("process_image", 512, 15)
    )
    logger.info("after the batch")

    assert response == {"batchItemFailures": []}
    started = [line for line in lines if line["message"] == "record started"]
    done = [line for line in lines if line["message"] == "record done"]
    assert [(line["image_id"], line["correlation_id"]) for line in done] == [
        ("img_1", "message-0"),
        ("img_2", "message-1"),
    ]
    for line in [*started, *[line for line in lines if line["message"] == "after the batch"]]:
        assert not {"image_id", "clinic_id", "correlation_id"} & line.keys(), line


def test_a_sweeps_volume_keys_are_on_its_own_lines_only(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = [ImageModel(clinic_id="clinic-1", image_id=f"vol_{n}") for n in range(2)]

    def build(volume: ImageModel, **_: object) -> None:
        logger.info("building")

    monkeypatch.setattr(cbct.repository, "quiet_open_series", lambda *_: iter(quiet))
    monkeypatch.setattr(cbct, "build_series", build)
    assert cbct.sweep(s3=None, settings=SimpleNamespace(series_stable_seconds=60)) == 2  # type: ignore[arg-type]
    logger.info("after the sweep")

    building = [line.get("image_id") for line in lines if line["message"] == "building"]
    assert building == ["vol_0", "vol_1"]
    (after,) = [line for line in lines if line["message"] == "after the sweep"]
    assert not {"image_id", "clinic_id"} & after.keys()


def test_a_failed_record_is_logged_with_its_keys_and_what_lambda_gets_quotes_no_data(
    lines: list[dict[str, Any]],
) -> None:
    """A record that raises is retried by SQS; its line says which image and what raised,
    never the error's message (here it quotes a name, as `int()` and pydicom do). When every
    record of a batch fails, Powertools raises an error quoting each record's error whole,
    and Lambda writes that to its log and the invocation's result."""

    def handle(record: SQSRecord) -> None:
        logger.append_keys(clinic_id="clinic-a", image_id=record.json_body["image"])
        int(record.json_body["patient"])  # a patient's name where a number should be

    handler = sqs_handler(handle)
    with pytest.raises(BatchProcessingError) as raised:
        handler(
            _sqs_event({"image": "img_1", "patient": "DOE^JANE"}, {"image": "img_2", "patient": "DOE^JANE"}),
            LocalContext("process_image", 512, 15),
        )

    assert "DOE" not in str(raised.value) and "ValueError" in str(raised.value)
    failed = [line for line in lines if line["message"] == "record failed; SQS delivers it again"]
    assert [(line["image_id"], line["exception_name"]) for line in failed] == [
        ("img_1", "ValueError"),
        ("img_2", "ValueError"),
    ]
    assert all("DOE" not in json.dumps(line) for line in lines)


def test_a_failed_scheduled_run_is_logged_and_what_lambda_gets_quotes_no_data(
    lines: list[dict[str, Any]],
) -> None:
    """An error escaping a scheduled run (the CBCT sweep's) fails the invocation; Lambda
    writes an uncaught error's message to the log, so what it gets is the type alone."""

    patient = {"name": "DOE^JANE"}  # data the run read, not in the source lines a traceback shows

    def run() -> dict[str, Any]:
        int(patient["name"])  # a name where a number should be
        return {}

    handler = scheduled_handler(run)
    with pytest.raises(ScheduledRunFailedError) as raised:
        handler({"source": "aws.scheduler"}, LocalContext("dicom_ingest", 512, 15))

    assert str(raised.value) == "ValueError" and raised.value.__cause__ is None
    assert raised.value.__suppress_context__  # Lambda prints no chain with the data in it
    (failed,) = [line for line in lines if line["message"].startswith("scheduled run failed")]
    assert failed["exception_name"] == "ValueError" and "int(" in failed["exception"]
    assert all("DOE" not in json.dumps(line) for line in lines)


def test_a_scheduled_runs_result_is_the_invocations() -> None:
    handler = scheduled_handler(lambda: {"volumesBuilt": 3})
    assert handler({}, LocalContext("dicom_ingest", 512, 15)) == {"volumesBuilt": 3}
