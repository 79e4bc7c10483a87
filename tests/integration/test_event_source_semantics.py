"""The local SQS pump behaves like Lambda's event-source mapping; schedules fire like EventBridge."""

from __future__ import annotations

import json
import time

import pytest

from orca_imaging.local.lambda_runtime import FunctionHost
from orca_imaging.local.scheduler import Scheduler
from orca_imaging.local.sqs_pump import SqsPump
from orca_imaging.local.stack import REGION, LocalStack
from orca_imaging.resources import FunctionSpec, ScheduleSpec
from orca_imaging.settings import AwsSettings
from tests.integration import pump_consumer

CONSUMER = FunctionSpec(
    "pump_consumer", "tests.integration.pump_consumer:consume", AwsSettings, 128, 10, "test"
)
TICK = FunctionSpec("tick", "tests.integration.pump_consumer:tick", AwsSettings, 128, 10, "test")


@pytest.fixture
def queue(stack: LocalStack, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    sqs = stack.sqs()
    name = request.node.name[:60]
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pump_consumer.SEEN.clear()
    return url, arn, dlq


def pump(stack: LocalStack, url: str, arn: str, batch_size: int) -> SqsPump:
    return SqsPump(
        sqs=stack.sqs(),
        host=FunctionHost(),
        function=CONSUMER,
        queue_url=url,
        queue_arn=arn,
        region=REGION,
        batch_size=batch_size,
        wait_seconds=0,
    )


def drain(p: SqsPump, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not p.poll_once():
            time.sleep(0.2)


def bodies(stack: LocalStack, url: str) -> list[str]:
    out = []
    while messages := stack.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        out += [m["Body"] for m in messages]
    return out


def test_batches_respect_the_batch_size_and_successes_are_deleted(
    stack: LocalStack, queue: tuple[str, str, str]
) -> None:
    url, arn, dlq = queue
    for _i in range(7):
        stack.sqs().send_message(QueueUrl=url, MessageBody="ok")
    drain(pump(stack, url, arn, batch_size=3), 3)
    assert sum(len(b) for b in pump_consumer.SEEN) == 7
    assert max(len(b) for b in pump_consumer.SEEN) <= 3
    assert bodies(stack, url) == [] and bodies(stack, dlq) == []


def test_a_failed_item_is_retried_then_dead_lettered_alone(
    stack: LocalStack, queue: tuple[str, str, str]
) -> None:
    url, arn, dlq = queue
    for body in ("ok", "fail", "ok"):
        stack.sqs().send_message(QueueUrl=url, MessageBody=body)
    consumer = pump(stack, url, arn, batch_size=10)
    drain(consumer, 6)

    def dead_lettered() -> list[str]:
        drain(consumer, 1)  # the move to the DLQ happens on the receive after the last retry
        return bodies(stack, dlq)

    assert stack.wait_until(dead_lettered, timeout=30) == ["fail"]
    seen = [body for batch in pump_consumer.SEEN for body in batch]
    assert seen.count("ok") == 2  # each success processed once
    assert seen.count("fail") == 2  # maxReceiveCount receives


def test_an_exception_fails_and_retries_the_whole_batch(
    stack: LocalStack, queue: tuple[str, str, str]
) -> None:
    url, arn, dlq = queue
    stack.sqs().send_message_batch(
        QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "ok"}, {"Id": "2", "MessageBody": "explode-once"}]
    )
    drain(pump(stack, url, arn, batch_size=10), 5)
    seen = [body for batch in pump_consumer.SEEN for body in batch]
    assert seen.count("ok") == 2 and seen.count("explode-once") == 2
    assert bodies(stack, dlq) == []


def test_schedules_invoke_with_eventbridge_scheduled_events() -> None:
    pump_consumer.SCHEDULED.clear()
    scheduler = Scheduler(
        FunctionHost(), (ScheduleSpec("TickRule", "tick", rate_seconds=1),), REGION, resolve=lambda name: TICK
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while len(pump_consumer.SCHEDULED) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        scheduler.stop()
    assert len(pump_consumer.SCHEDULED) >= 2
    event = pump_consumer.SCHEDULED[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"][0].endswith("rule/TickRule")
