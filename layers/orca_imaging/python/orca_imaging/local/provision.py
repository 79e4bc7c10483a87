"""Create the `resources` on a moto endpoint, as the CDK stack creates them in AWS.

What differs, and why: no TLS-only bucket policy (moto enforces bucket policies and the
local endpoint is plain HTTP on loopback), and shorter queue visibility timeouts so a
failed message is retried in seconds rather than minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from orca_imaging.resources import BUCKETS, QUEUES, STATE_MACHINES, TABLES, TableSpec

LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*"]


@dataclass
class LocalResources:
    """Physical names of everything provisioned, by settings field."""

    values: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)


def create_table_request(spec: TableSpec, name: str) -> dict[str, Any]:
    """A CreateTable request for `spec`, on demand, with every index projected as declared."""
    attributes: dict[str, str] = {}

    def key_schema(partition: Any, sort: Any) -> list[dict[str, str]]:
        schema = [{"AttributeName": partition.name, "KeyType": "HASH"}]
        attributes[partition.name] = partition.type
        if sort is not None:
            schema.append({"AttributeName": sort.name, "KeyType": "RANGE"})
            attributes[sort.name] = sort.type
        return schema

    request: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": key_schema(spec.partition, spec.sort),
    }
    if spec.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": key_schema(index.partition, index.sort),
                "Projection": {"ProjectionType": index.projection},
            }
            for index in spec.indexes
        ]
    request["AttributeDefinitions"] = [
        {"AttributeName": n, "AttributeType": t} for n, t in attributes.items()
    ]
    return request


def provision(
    endpoint_url: str,
    region: str,
    *,
    prefix: str = "orca-local",
    visibility_timeout_seconds: int = 30,
) -> LocalResources:
    session = boto3.session.Session(region_name=region)

    def client(service: Any) -> Any:
        return session.client(service, endpoint_url=endpoint_url)

    out = LocalResources()
    kms, s3, sqs, ddb, events = (client(s) for s in ("kms", "s3", "sqs", "dynamodb", "events"))

    key_id = kms.create_key(Description=f"{prefix} data key")["KeyMetadata"]["KeyId"]
    out.values["kms_key_id"] = key_id

    for table in TABLES:
        name = f"{prefix}-{table.settings_field.removesuffix('_table')}"
        ddb.create_table(**create_table_request(table, name))
        out.values[table.settings_field] = name

    bus = f"{prefix}-imaging"
    events.create_event_bus(Name=bus)
    out.values["event_bus_name"] = bus

    for bucket in BUCKETS:
        name = f"{prefix}-{bucket.settings_field.removesuffix('_bucket')}"
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key_id,
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        if bucket.browser_upload:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(LOCAL_ORIGINS)]})
        out.values[bucket.settings_field] = name

    notifications: dict[str, list[dict[str, Any]]] = {}
    for queue in QUEUES:
        base = f"{prefix}-{queue.construct_id.lower()}"
        dlq_url = sqs.create_queue(QueueName=f"{base}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        url = sqs.create_queue(
            QueueName=base,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout_seconds),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue.max_receive_count)}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        out.queue_urls[queue.construct_id] = url
        out.dlq_urls[queue.construct_id] = dlq_url
        out.queue_arns[queue.construct_id] = arn
        if queue.url_field:
            out.values[queue.url_field] = url
        if queue.bucket_field:
            notifications.setdefault(out.values[queue.bucket_field], []).append(
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": queue.prefix}]}},
                }
            )
    for bucket_name, configs in notifications.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket_name, NotificationConfiguration={"QueueConfigurations": configs}
        )

    sfn = client("stepfunctions")
    for machine in STATE_MACHINES:
        arn = sfn.create_state_machine(
            name=f"{prefix}-{machine.construct_id}",
            definition=machine.definition(out.values),
            roleArn="arn:aws:iam::123456789012:role/orca-local-states",
        )["stateMachineArn"]
        out.values[machine.settings_field] = arn
    return out


def _cors_rule(origins: list[str]) -> dict[str, Any]:
    """The same rule the CDK storage construct sets, for the local origins."""
    return {
        "AllowedMethods": ["POST", "PUT", "GET", "HEAD"],
        "AllowedOrigins": origins,
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }
