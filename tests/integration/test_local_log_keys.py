"""Log keys in the local stack, where every function, the pumps and the DICOM service share
one process: what one invocation appends to its lines (its Lambda context, its correlation
id) stays on its own thread, as in Lambda, where each invocation has a process to itself."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from orca_imaging import observability
from orca_imaging.auth import Role
from tests.integration.conftest import ApiClient

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack


def test_a_functions_keys_are_on_its_own_lines_and_off_other_threads(
    stack: LocalStack, log_lines: list[dict[str, Any]]
) -> None:
    admin = ApiClient(stack, "clinic-log-keys", Role.CLINIC_ADMIN)
    missing = admin.get("/images/img_00000000000000000000000000")  # logs "request failed"
    elsewhere = threading.Thread(target=observability.logger.info, args=("from another thread",))
    elsewhere.start()
    elsewhere.join()
    assert missing.status_code == 404
    (failed,) = [line for line in log_lines if line["message"] == "request failed"]
    assert failed["function_name"] == "orca-local-upload_url"
    assert failed["correlation_id"] == missing.json()["correlationId"] is not None
    (other,) = [line for line in log_lines if line["message"] == "from another thread"]
    assert not {"function_name", "function_request_id", "correlation_id", "cold_start"} & other.keys()
