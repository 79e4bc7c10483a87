"""Powertools Logger and Metrics, shared by every entry point.

Logs carry ids (clinic, image, batch, correlation), never names, birth dates or DICOM
identifiers; an exception's message, which may quote the data that raised it, only when it
is known to carry none (`PhiSafeFormatter`). Metric names and dimensions are fixed strings:
never put an id in a name.

Traces come from Lambda's active tracing (set on every function in CDK), and each log line
carries its `xray_trace_id`. There is no X-Ray SDK tracer: the SDK is in maintenance mode,
and at import it builds a botocore X-Ray client, about 170 ms of every cold start.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging.errors import OrcaError

if TYPE_CHECKING:
    from collections.abc import Iterator

SERVICE = "orca-imaging"
METRICS_NAMESPACE = "Orca/Imaging"

# Exceptions whose messages are known to carry ids only: ours (see `errors`), the operating
# system's (paths here are ids) and AWS's (operations, error codes, keys).
_MESSAGES_WITHOUT_PHI = (OrcaError, OSError, BotoCoreError, ClientError)


def _message_shown(error: BaseException) -> str | None:
    """An exception's message, when it is known to carry no PHI. Any other may quote the
    data that raised it: Python's `int('DOE^JANE')` names the value, and pydicom's errors
    quote elements' values."""
    return str(error) if isinstance(error, _MESSAGES_WITHOUT_PHI) else None


def _shown(error: BaseException) -> str:
    message = _message_shown(error)
    return type(error).__qualname__ + (f": {message}" if message else "")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n"


class PhiSafeFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, with a logged exception's traceback kept (where it was
    raised, and by what) and its message only as `_message_shown` allows, in both places
    Powertools writes it (`exception`, `stack_trace.value`); its notes are left out."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's naming)
        """As Python prints it, chained exceptions included, with `_shown` headers."""
        chain: list[tuple[BaseException, str | None]] = []  # outermost first, each with its link
        error: BaseException | None = ei[1]
        link: str | None = None
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            chain.append((error, link))
            if error.__cause__ is not None:
                error, link = error.__cause__, _CAUSE
            elif error.__context__ is not None and not error.__suppress_context__:
                error, link = error.__context__, _CONTEXT
            else:
                error = None
        parts: list[str] = []
        for raised, led_on in reversed(chain):
            frames = "".join(traceback.format_list(traceback.extract_tb(raised.__traceback__)))
            parts.append(f"Traceback (most recent call last):\n{frames}{_shown(raised)}")
            if led_on:
                parts.append(led_on)
        return "\n".join(parts)

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        """The line Powertools built, with the exception itself (its `stack_trace.value`)
        shown as `_message_shown` allows, and no notes."""
        stack_trace = log.get("stack_trace")
        if isinstance(stack_trace, dict) and isinstance(stack_trace.get("value"), BaseException):
            stack_trace["value"] = _message_shown(stack_trace["value"])
        log.pop("exception_notes", None)
        return super().serialize(log)


class WholeLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line whole, also beside other processes writing to the same output.

    The DICOM service's processes share the task's standard output, a pipe to the log
    driver. A pipe takes a write of up to 4 KiB whole (PIPE_BUF); a longer line (an
    exception's, with its traceback) can be cut into by another process's, and CloudWatch
    then holds two broken JSON lines, at the moment (an outage, say) they are read. So each
    line is written and flushed holding a POSIX lock on the output, which every process
    sharing it takes too; the handler's own lock already keeps one process's threads apart.
    Where the output takes no lock, lines are written as before."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            descriptor = self.stream.fileno()
            fcntl.lockf(descriptor, fcntl.LOCK_EX)
        except (OSError, ValueError):  # no descriptor (a test's capture), or not lockable
            super().emit(record)
            return
        try:
            super().emit(record)
        finally:
            fcntl.lockf(descriptor, fcntl.LOCK_UN)


logger = Logger(
    service=SERVICE, logger_formatter=PhiSafeFormatter(), logger_handler=WholeLineHandler(sys.stdout)
)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def log_uncaught_thread_exceptions() -> None:
    """An exception no code of a thread caught is logged as one line like any other (see
    `PhiSafeFormatter`), not printed whole on stderr by Python, its message included and
    its lines each an event of their own in CloudWatch. For long-running processes (the
    DICOM service), where pynetdicom's threads run our handlers."""

    def log(uncaught: threading.ExceptHookArgs) -> None:
        if uncaught.exc_value is None or uncaught.exc_type is SystemExit:  # as Python's own hook
            return
        logger.error(
            "uncaught exception in a thread",
            exc_info=uncaught.exc_value,
            extra={"thread_name": uncaught.thread.name if uncaught.thread else None},
        )

    threading.excepthook = log


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
