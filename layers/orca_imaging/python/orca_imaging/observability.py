"""Powertools Logger and Metrics, shared by every entry point.

Logs carry ids (clinic, image, batch, correlation), never names, birth dates or DICOM
identifiers. Metric names and dimensions are fixed strings: never put an id in a name.

Traces come from Lambda's active tracing (set on every function in CDK), and each log line
carries its `xray_trace_id`. There is no X-Ray SDK tracer: the SDK is in maintenance mode,
and at import it builds a botocore X-Ray client, about 170 ms of every cold start.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

if TYPE_CHECKING:
    from collections.abc import Iterator

SERVICE = "orca-imaging"
METRICS_NAMESPACE = "Orca/Imaging"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# What one record or item of a batch puts on its lines. A warm Lambda handles many in one
# process, and Powertools keeps appended keys until removed: the next record's lines, up to
# its own `append_keys`, would carry the last one's image.
ITEM_KEYS = ("correlation_id", "clinic_id", "image_id", "retrieve_id")


@contextmanager
def item_keys(**keys: Any) -> Iterator[None]:
    """Lines logged inside carry `keys`; once done, no key of `ITEM_KEYS` is left, whoever
    appended it (Powertools' own `append_context_keys` appends process-wide, past the local
    stack's per-thread keys)."""
    logger.append_keys(**keys)
    try:
        yield
    finally:
        logger.remove_keys([*ITEM_KEYS, *keys])


def flush_metrics() -> None:
    """Write what was counted as one EMF line in one write, and start counting afresh.

    Outside Lambda (the DICOM service) nothing else flushes Powertools' metrics, and its own
    flush prints the line and then its newline, two writes. The task's processes share one
    stdout: another's log line could land between the two and spoil both, and CloudWatch
    drops an EMF line it cannot parse (seen here: a receiver's line glued to the first
    process's metrics as several processes wrote at once)."""
    if not metrics.metric_set or is_metrics_disabled():  # as Powertools' own flush
        return
    line = json.dumps(metrics.serialize_metric_set(), separators=(",", ":")) + "\n"
    sys.stdout.write(line)
    sys.stdout.flush()
    metrics.clear_metrics()


def keep_log_keys_per_thread() -> None:
    """Keys appended to the logger (a function's Lambda context, its correlation id, the
    image at hand) kept for the thread that appends them, not for the process.

    For the local stack only. Lambda gives each invocation a process to itself, and
    Powertools keeps appended keys process-wide; in the local stack the functions share one
    process with each other, the pumps and the DICOM service, so every line would carry the
    keys of whichever invocation ran last anywhere, and an audit event could take another
    request's correlation id."""
    logger.append_keys = logger.thread_safe_append_keys  # type: ignore[method-assign]
    logger.remove_keys = logger.thread_safe_remove_keys  # type: ignore[method-assign]
    logger.get_correlation_id = _thread_correlation_id  # type: ignore[method-assign]


def _thread_correlation_id() -> str | None:
    value = logger.thread_safe_get_current_keys().get("correlation_id")
    return str(value) if value is not None else None


# A read-only request publishes no metric; that is expected, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")
