"""Domain events on EventBridge. Details carry ids and codes only."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orca_imaging.errors import DependencyError

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "orca.imaging"


def publish(client: EventBridgeClient, bus_name: str, detail_type: str, detail: dict[str, Any]) -> None:
    try:
        response = client.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": bus_name,
                }
            ]
        )
    except (BotoCoreError, ClientError) as e:
        raise DependencyError(f"EventBridge put_events failed for {detail_type}") from e
    if response.get("FailedEntryCount"):
        raise DependencyError(f"EventBridge refused {detail_type}")
