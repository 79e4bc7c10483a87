"""A consumer for the SQS pump tests: records what it saw; fails on request.

Bodies: "ok" succeeds; "fail" is reported as a batch item failure; "explode-once"
raises (failing the whole batch) on its first receive only.
"""

from __future__ import annotations

from typing import Any

SEEN: list[list[str]] = []
SCHEDULED: list[dict[str, Any]] = []


def consume(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event["Records"]
    SEEN.append([r["body"] for r in records])
    for r in records:
        if r["body"] == "explode-once" and r["attributes"].get("ApproximateReceiveCount") == "1":
            raise RuntimeError("whole batch fails")
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"] == "fail"]}


def tick(event: dict[str, Any], context: Any) -> None:
    SCHEDULED.append(event)
