"""schemathesis against the OpenAPI document the API serves, on the local stack:
no 5xx of ours for any generated request, and every response matches the document."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from orca_imaging.auth import Role
from orca_imaging.local.stack import LocalStack
from tests.integration.conftest import ApiClient


@schemathesis.check
def not_a_server_error_of_ours(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, but for the documented 502 when a remote node fails: generated requests
    register PACS nodes at any host and port, and a later query to one of them cannot reach
    it. Saying so as a bad gateway is the API's right answer, not a fault of its own."""
    if response.status_code == 502 and response.json().get("code") == "remote_node_failed":
        return None
    return checks.not_a_server_error(ctx, response, case)


# What the issue asks: no 5xx of ours, and every response as documented. (Schemathesis's
# "a schema-valid request must succeed" check does not apply: an unknown patient or an
# oversize file is schema-valid and rightly refused.)
CHECKS = [
    not_a_server_error_of_ours,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


# API Gateway waits up to 29 s for a route. schemathesis gives up after 10 s, and on a busy
# two-core machine the local stack took longer than that to open a generated 1,000-file batch
# (3.8 s when idle): an answer within API Gateway's limit is a valid one.
REQUEST_SECONDS = 30


@pytest.fixture(scope="module")
def caller(stack: LocalStack) -> ApiClient:
    # A super_admin reaches every route, so generated requests exercise handlers, not 403s.
    return ApiClient(stack, "clinic-contract", Role.SUPER_ADMIN, user="usr_contract")


@pytest.fixture(scope="module")
def api_schema(caller: ApiClient) -> Any:
    response = caller.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"].startswith("3.")
    return schemathesis.openapi.from_dict(document)


def test_the_api_honours_its_own_document(api_schema: Any, caller: ApiClient) -> None:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def honours(case: Any) -> None:
            case.call_and_validate(
                base_url=caller.stack.api_url, headers=caller.headers, checks=CHECKS, timeout=REQUEST_SECONDS
            )

        try:
            honours()
        except Exception as failure:  # collect every operation's first failure, then report all
            # A flaky one is a group: what failed is in its sub-exceptions, not its message.
            causes = getattr(failure, "exceptions", None) or [failure]
            failures[operation.label] = "\n".join(f"{type(c).__name__}: {c}" for c in causes)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
