"""Acknowledging cdk-nag findings: always with a reason, always on the narrowest construct."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Validations

if TYPE_CHECKING:
    from constructs import IConstruct


def acknowledge(scope: IConstruct, reasons: dict[str, str]) -> None:
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule, reason=why) for rule, why in reasons.items()))


def managed_policy_finding(policy: str) -> str:
    """The AwsSolutions-IAM4 finding id for an AWS-managed policy, e.g. 'service-role/X'."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"
