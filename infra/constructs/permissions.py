"""Least privilege, written out: no function may delete or overwrite an original.

CDK's `grant_read_write` on a bucket includes `s3:DeleteObject*` and wildcard actions;
the originals bucket must never be altered, so the statements here name each action.
What wildcards remain are resource paths inside one bucket or one table's indexes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.nag import acknowledge
from orca_imaging.keys import QUARANTINE_PREFIX, original_key

if TYPE_CHECKING:
    from infra.constructs.storage import Storage
    from infra.constructs.tables import Tables

TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
]
KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


def new_originals_only(originals: s3.IBucket) -> iam.PolicyStatement:
    """For those that write DICOM received over the network (`originals.py`): new original
    keys only, and only as a create: a request without If-None-Match (one that could
    replace) is denied."""
    return iam.PolicyStatement(
        actions=["s3:PutObject"],
        resources=[originals.arn_for_objects(original_key("*", "*"))],
        conditions={"Null": {"s3:if-none-match": "false"}},
    )


class Permissions(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, storage: Storage, tables: Tables) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._tables = tables
        self._stack = Stack.of(self)

    def _logical_id(self, construct: Construct) -> str:
        return str(self._stack.resolve(self._stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]

    def _grant(
        self, fn: lambda_.Function, statements: list[iam.PolicyStatement], reasons: dict[str, str]
    ) -> None:
        for statement in statements:
            fn.add_to_role_policy(statement)
        for table in self._tables.tables.values():
            reasons[f"Resource::<{self._logical_id(table)}.Arn>/index/*"] = (
                "Queries on this table's own indexes."
            )
        reasons["Resource::*"] = "X-Ray accepts trace segments only on resource '*'."
        policy = fn.role.node.try_find_child("DefaultPolicy") if fn.role else None
        assert policy is not None
        acknowledge(policy, {f"AwsSolutions-IAM5[{finding}]": why for finding, why in reasons.items()})
        acknowledge(
            policy,
            {
                "HIPAA.Security-IAMNoInlinePolicy": (
                    "CDK's per-role default policy, attached to this one role only; its statements are "
                    "the least-privilege ones written here plus tracing and the event source."
                )
            },
        )

    def _tables_statement(self) -> iam.PolicyStatement:
        resources = []
        for table in self._tables.tables.values():
            resources += [table.table_arn, f"{table.table_arn}/index/*"]
        return iam.PolicyStatement(actions=TABLE_ACTIONS, resources=resources)

    def _objects(self, field: str) -> str:
        return self._storage.buckets[field].arn_for_objects("*")

    def _object_reason(self, field: str) -> tuple[str, str]:
        bucket = self._storage.buckets[field]
        return (
            f"Resource::<{self._logical_id(bucket)}.Arn>/*",
            "Objects in this one bucket; keys are per clinic and image.",
        )

    def grant_api(self, fn: lambda_.Function) -> None:
        """Signs presigned POSTs (PutObject) and view URLs (GetObject); never deletes."""
        self._grant(
            fn,
            [
                self._tables_statement(),
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"],
                    resources=[self._objects("originals_bucket")],
                ),
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[self._objects("derived_bucket")]),
                iam.PolicyStatement(actions=KEY_ACTIONS, resources=[self._storage.key.key_arn]),
            ],
            dict([self._object_reason("originals_bucket"), self._object_reason("derived_bucket")]),
        )

    def grant_send(self, fn: lambda_.Function, queue: sqs.IQueue, key: kms.IKey) -> None:
        """Sends to one queue, encrypted with its key. (CDK's `grant_send_messages` grants
        `kms:ReEncrypt*` and `kms:GenerateDataKey*`, wildcards SQS does not need.)"""
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn]))
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[key.key_arn])
        )

    def grant_pacs_retrieve(self, fn: lambda_.Function) -> None:
        """Writes what a C-GET brings, as the DICOM service does."""
        originals = self._storage.buckets["originals_bucket"]
        self._grant(
            fn,
            [
                self._tables_statement(),
                new_originals_only(originals),
                iam.PolicyStatement(actions=KEY_ACTIONS, resources=[self._storage.key.key_arn]),
            ],
            {
                f"Resource::<{self._logical_id(originals)}.Arn>/{original_key('*', '*')}": (
                    "New originals, under any clinic's and image's id, and only as a create."
                )
            },
        )

    def grant_intake(self, fn: lambda_.Function) -> None:
        """Reads originals and writes quarantine copies and tags; owns the derived objects."""
        originals_id = self._logical_id(self._storage.buckets["originals_bucket"])
        self._grant(
            fn,
            [
                self._tables_statement(),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectTagging"],
                    resources=[self._objects("originals_bucket")],
                ),
                # Writes only under the quarantine prefix: an original is never replaced.
                iam.PolicyStatement(
                    actions=["s3:PutObject"],
                    resources=[
                        self._storage.buckets["originals_bucket"].arn_for_objects(f"{QUARANTINE_PREFIX}*")
                    ],
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[self._objects("derived_bucket")],
                ),
                iam.PolicyStatement(actions=KEY_ACTIONS, resources=[self._storage.key.key_arn]),
            ],
            {
                **dict([self._object_reason("originals_bucket"), self._object_reason("derived_bucket")]),
                f"Resource::<{originals_id}.Arn>/{QUARANTINE_PREFIX}*": (
                    "Quarantine copies of rejected files, under their own prefix."
                ),
            },
        )
