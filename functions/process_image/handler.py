"""Intake consumer: S3 ObjectCreated events from SQS, with partial batch failures.

Wiring only: each record's objects go to `orca_imaging.intake`. A record that raises is
reported as a batch item failure and retried by SQS, then dead-lettered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from functions import started
from orca_imaging import clients, intake, pipeline, repository
from orca_imaging.observability import logger, metrics
from orca_imaging.settings import ConsumerSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = load(ConsumerSettings)
repository.bind_tables(SETTINGS)
processor = BatchProcessor(event_type=EventType.SQS)
started()


def handle_record(record: SQSRecord) -> None:
    for created in intake.object_created_events(record.json_body):
        pipeline.process_original(
            created,
            s3=clients.s3(),
            events=clients.events(),
            settings=SETTINGS,
            message_id=record.message_id,
        )


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
