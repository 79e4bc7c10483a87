"""Logged exceptions carry no PHI: an error's message may quote the data that raised it
(Python's `int('DOE^JANE')` names the value; pydicom's errors quote elements' values), so
only messages known to carry ids are kept (`observability.PhiSafeFormatter`)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from orca_imaging import observability
from orca_imaging.errors import NotFoundError

logger = observability.logger


# A patient's data, as a handler would hold it (not in the lines that raise: a traceback
# shows each frame's source line, which is code).
PATIENT = {"name": "DOE^JANE", "birth_date": "19800101", "chart": "4711"}


def _patients_error() -> ValueError:
    try:
        try:
            int(PATIENT["name"])
        except ValueError as e:
            raise KeyError(PATIENT["birth_date"]) from e
    except KeyError as e:
        error = ValueError(f"PatientName {PATIENT['name']!r} born {PATIENT['birth_date']}")
        error.add_note(f"chart {PATIENT['chart']}")
        error.__context__ = e
        return error


def test_a_logged_exception_keeps_its_type_and_traceback_not_its_message(
    log_lines: list[dict[str, Any]],
) -> None:
    try:
        raise _patients_error()
    except ValueError:
        logger.exception("processing failed")

    [line] = log_lines
    for quoted in ("DOE", "JANE", "19800101", "4711"):
        assert quoted not in json.dumps(line)
    assert line["exception_name"] == "ValueError"
    assert line["stack_trace"]["type"] == "ValueError" and line["stack_trace"]["value"] is None
    assert (
        line["stack_trace"]["frames"][0]["function"]
        == "test_a_logged_exception_keeps_its_type_and_traceback_not_its_message"
    )
    # The chain, as Python prints it, each part named by its type.
    shown = line["exception"]
    assert shown.count("Traceback (most recent call last):") == 3
    assert shown.index("\nValueError\n") < shown.index("\nKeyError\n") < shown.rindex("\nValueError")
    assert "direct cause" in shown and "During handling" in shown


@pytest.mark.parametrize(
    "error", [NotFoundError("image img_1 not found"), FileNotFoundError(2, "No such file", "/spool/img_1")]
)
def test_messages_known_to_carry_ids_are_kept(log_lines: list[dict[str, Any]], error: Exception) -> None:
    try:
        raise error
    except Exception:
        logger.exception("failed")

    [line] = log_lines
    assert line["stack_trace"]["value"] == str(error)
    assert line["exception"].endswith(f"{type(error).__qualname__}: {error}")


def test_a_threads_uncaught_exception_is_one_line_without_its_message(
    log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # put back after
    observability.log_uncaught_thread_exceptions()

    def fails() -> None:
        raise _patients_error()

    thread = threading.Thread(target=fails, name="association-7")
    thread.start()
    thread.join()

    [line] = log_lines
    assert (line["message"], line["thread_name"], line["exception_name"]) == (
        "uncaught exception in a thread",
        "association-7",
        "ValueError",
    )
    assert PATIENT["name"] not in json.dumps(line)
