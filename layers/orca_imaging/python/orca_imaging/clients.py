"""Cached boto3 client getters.

Created lazily on first use so that moto (or the local stack's endpoint) is in place first,
and cached so a warm Lambda reuses connections. Domain code receives clients as arguments.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from orca_imaging.settings import AwsSettings, load

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient


def _client(service: Any) -> Any:
    # boto3 (with s3transfer) costs ~0.4 s to import: only pay for it on first use.
    import boto3
    from botocore.config import Config

    aws = load(AwsSettings)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        # SigV4 everywhere: presigned POSTs with SSE-KMS require it.
        signature_version="s3v4",
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session().client(
        service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
    )


@cache
def s3() -> S3Client:
    return _client("s3")  # type: ignore[no-any-return]


@cache
def sqs() -> SQSClient:
    return _client("sqs")  # type: ignore[no-any-return]


@cache
def events() -> EventBridgeClient:
    return _client("events")  # type: ignore[no-any-return]


@cache
def stepfunctions() -> SFNClient:
    return _client("stepfunctions")  # type: ignore[no-any-return]


def reset() -> None:
    """Forget cached clients and settings (tests and the local stack switch endpoints)."""
    from orca_imaging import settings

    for getter in (s3, sqs, events, stepfunctions):
        getter.cache_clear()
    settings.load.cache_clear()
