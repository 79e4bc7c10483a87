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
import io
import logging
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging.errors import OrcaError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import TextIO

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


logger = Logger(service=SERVICE, logger_formatter=PhiSafeFormatter())
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


class WholeLineOutput(io.TextIOBase):
    """Standard output that writes each line whole, also beside other processes writing to
    the same output: installed by `write_whole_lines`.

    The DICOM service's processes share the task's standard output, a pipe to the log
    driver. A pipe takes a write of up to 4 KiB whole (PIPE_BUF); a longer line (an
    exception's, with its traceback, or a batch of metrics) can be cut into by another
    process's. And `print`, which Powertools uses to publish every hundredth value of a
    metric, writes a line and its newline apart: a line from anywhere can land between the
    two. CloudWatch then holds two broken JSON lines, and drops a broken EMF line's metrics,
    at the moment (an outage, a burst of stores) they matter.

    So each thread's text is held until its line ends, and each line is written in one
    write, holding this process's lock and a POSIX lock on the output, which every process
    sharing it takes too."""

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self._pending = threading.local()  # each thread's line so far
        self._lock = threading.Lock()  # POSIX locks are per process: this one is for threads

    def write(self, text: str) -> int:
        held = getattr(self._pending, "text", "") + text
        lines, newline, self._pending.text = held.rpartition("\n")
        if newline:
            self._write_whole(lines + newline)
        return len(text)

    def flush(self) -> None:
        """This thread's unfinished line too: whoever flushes wants it out. (A whole line
        went out as it ended: `logging` flushes after each, and finds nothing held.)"""
        held, self._pending.text = getattr(self._pending, "text", ""), ""
        if held:
            self._write_whole(held)

    def _write_whole(self, text: str) -> None:
        with self._lock:
            try:
                descriptor = self.output.fileno()
                fcntl.lockf(descriptor, fcntl.LOCK_EX)
                locked = True
            except (OSError, ValueError):  # no descriptor, or one that takes no lock
                locked = False
            try:
                self.output.write(text)
                self.output.flush()
            finally:
                if locked:
                    fcntl.lockf(descriptor, fcntl.LOCK_UN)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.output.fileno()

    def isatty(self) -> bool:
        return self.output.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.output.encoding


def write_whole_lines() -> None:
    """Standard output, and the logger's lines on it, through `WholeLineOutput`: for a
    process sharing its standard output with others (the DICOM service's)."""
    if isinstance(sys.stdout, WholeLineOutput):
        return
    output = WholeLineOutput(sys.stdout)
    for handler in logging.getLogger(SERVICE).handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(output)
    sys.stdout = output


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
