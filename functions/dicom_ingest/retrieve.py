"""PACS retrieve consumer: runs the retrieves the API queued, one message each, with
partial batch failures.

Wiring only: each message names a retrieve record, which `orca_imaging.pacs.run_retrieve`
runs and finishes. A message that raises is retried by SQS, then dead-lettered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from functions import started
from orca_imaging import pacs, repository
from orca_imaging.observability import logger, metrics
from orca_imaging.settings import PacsSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = load(PacsSettings)
repository.bind_tables(SETTINGS)
processor = BatchProcessor(event_type=EventType.SQS)
started()


def handle_record(record: SQSRecord) -> None:
    message = record.json_body
    logger.set_correlation_id(message.get("correlationId"))  # the API request that queued it
    logger.append_keys(retrieve_id=message["retrieveId"])
    pacs.run_retrieve(message["clinicId"], message["retrieveId"], SETTINGS)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
