"""PACS retrieve consumer: runs the retrieves the API queued, one message each.

Wiring only: each message names a retrieve record, which `orca_imaging.pacs.run_retrieve`
runs and finishes. A message that raises is retried by SQS; on its last receive, a retrieve
that still fails is finished FAILED rather than left RUNNING in the dead-letter queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from functions import started
from orca_imaging import pacs, repository
from orca_imaging.consumers import is_last_receive, sqs_handler
from orca_imaging.observability import logger
from orca_imaging.settings import PacsSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

SETTINGS = load(PacsSettings)
repository.bind_tables(SETTINGS)


def handle_record(record: SQSRecord) -> None:
    message = record.json_body
    logger.set_correlation_id(message.get("correlationId"))  # the API request that queued it
    logger.append_keys(retrieve_id=message["retrieveId"])
    last_attempt = is_last_receive(record, "pacs_retrieve")
    pacs.run_retrieve(message["clinicId"], message["retrieveId"], SETTINGS, last_attempt=last_attempt)


lambda_handler = sqs_handler(handle_record)
started()
