"""The Lambda handlers every SQS consumer and every scheduled function use, so each
function's `handler.py` only says what one record, or one run, means.

Neither lets an error's message reach Lambda: Lambda writes an uncaught error's message to
the function's log and to the invocation's result, and a message may quote a patient's data
(`int('DOE^JANE')` does, and so do pydicom's errors). The error is logged here instead,
with its type and traceback (`observability.PhiSafeFormatter`), and handed on as its type
alone."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from orca_imaging.errors import OrcaError, RecordFailedError, ScheduledRunFailedError
from orca_imaging.observability import item_keys, logger, metrics
from orca_imaging.resources import queue_feeding

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext


def sqs_handler(
    handle_record: Callable[[SQSRecord], None],
) -> Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]:
    """Each record of a batch to `handle_record`. One that raises is reported as a batch
    item failure (the others are done), so SQS retries only it, then dead-letters it."""
    processor = BatchProcessor(event_type=EventType.SQS)

    def handle_one(record: SQSRecord) -> None:
        # The record's correlation id and image go with its lines, the failure's among them.
        with item_keys(), _handed_on_as_type("record failed; SQS delivers it again", RecordFailedError):
            handle_record(record)

    @logger.inject_lambda_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=handle_one, processor=processor, context=context
        )

    return lambda_handler


def scheduled_handler(
    run: Callable[[], dict[str, Any]],
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """`run` once per scheduled invocation; its result is the invocation's. One that raises
    fails the invocation, and the next one on the schedule runs again."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        with _handed_on_as_type(
            "scheduled run failed; the next one on the schedule runs again", ScheduledRunFailedError
        ):
            return run()

    return lambda_handler


@contextmanager
def _handed_on_as_type(failed: str, handed_on: type[OrcaError]) -> Iterator[None]:
    """An error raised within is logged as `failed` (PHI-safe, with its traceback) and
    raised again as `handed_on`, whose message is the error's type alone."""
    try:
        yield
    except Exception as e:
        logger.exception(failed)
        raise handed_on(type(e).__qualname__) from None


def is_last_receive(record: SQSRecord, consumer: str) -> bool:
    """Whether SQS dead-letters this message if `consumer` fails it once more: the last
    chance to settle its work as failed, with a reason, rather than leave it unfinished."""
    return int(record.attributes.approximate_receive_count) >= queue_feeding(consumer).max_receive_count
