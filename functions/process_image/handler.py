"""Intake consumer: S3 ObjectCreated events from SQS, with partial batch failures.

Wiring only: each record's objects go to `orca_imaging.pipeline`. A record that raises is
reported as a batch item failure and retried by SQS; on its last receive, a file that still
fails is rejected (`processing_failed`) rather than left to the dead-letter queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from functions import started
from orca_imaging import clients, intake, pipeline, repository
from orca_imaging.consumers import is_last_receive, sqs_handler
from orca_imaging.settings import ConsumerSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

SETTINGS = load(ConsumerSettings)
repository.bind_tables(SETTINGS)


def handle_record(record: SQSRecord) -> None:
    last_attempt = is_last_receive(record, "process_image")
    for created in intake.object_created_events(record.json_body):
        pipeline.process_original(
            created,
            s3=clients.s3(),
            events=clients.events(),
            settings=SETTINGS,
            message_id=record.message_id,
            last_attempt=last_attempt,
        )


lambda_handler = sqs_handler(handle_record)
started()
