"""The one way this stack makes a log group: encrypted with the data key, kept on delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

if TYPE_CHECKING:
    from constructs import Construct


def encrypted_log_group(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    retention: logs.RetentionDays,
    name: str | None = None,
) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=retention,
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )
