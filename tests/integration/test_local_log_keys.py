"""Log keys in the local stack, where every function, the pumps and the DICOM service share
one process: what one invocation appends to its lines (its Lambda context, its correlation
id) stays on its own thread, as in Lambda, where each invocation has a process to itself."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from orca_imaging import observability
from orca_imaging.auth import Role
from tests.integration.conftest import ApiClient

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack


class FormattedLines(logging.Handler):
    """The service logger's lines as Powertools writes them, formatted on the thread that
    logs (where the keys of that thread are)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(observability.logger.registered_formatter.format(record)))


def test_a_functions_keys_are_on_its_own_lines_and_off_other_threads(stack: LocalStack) -> None:
    lines, service_log = FormattedLines(), logging.getLogger(observability.SERVICE)
    service_log.addHandler(lines)
    try:
        admin = ApiClient(stack, "clinic-log-keys", Role.CLINIC_ADMIN)
        missing = admin.get("/images/img_00000000000000000000000000")  # logs "request failed"
        elsewhere = threading.Thread(target=observability.logger.info, args=("from another thread",))
        elsewhere.start()
        elsewhere.join()
    finally:
        service_log.removeHandler(lines)
    assert missing.status_code == 404
    (failed,) = [line for line in lines.lines if line["message"] == "request failed"]
    assert failed["function_name"] == "orca-local-upload_url"
    assert failed["correlation_id"] == missing.json()["correlationId"] is not None
    (other,) = [line for line in lines.lines if line["message"] == "from another thread"]
    assert not {"function_name", "function_request_id", "correlation_id", "cold_start"} & other.keys()
