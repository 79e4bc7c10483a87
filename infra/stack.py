"""The imaging stack: every concern's construct, wired together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns

from infra.constructs.alarms import alarm_on_failing_schedule
from infra.constructs.api import ImagingApi
from infra.constructs.dicom_service import DicomService
from infra.constructs.function import ROOT, ImagingFunction, SharedLayer
from infra.constructs.nag import acknowledge, managed_policy_finding
from infra.constructs.network import Network
from infra.constructs.permissions import Permissions
from infra.constructs.queues import ConsumerQueue
from infra.constructs.storage import Storage
from infra.constructs.tables import Tables
from infra.constructs.workflows import BatchTracker
from orca_imaging.resources import FUNCTIONS, QUEUES, SCHEDULES, STATE_MACHINES

if TYPE_CHECKING:
    from pathlib import Path

    from constructs import Construct


class ImagingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, layer_dir: Path, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        web_origins = self.node.try_get_context("webOrigins") or []
        retention = logs.RetentionDays(self.node.try_get_context("logRetention") or "ONE_YEAR")

        storage = Storage(self, "Storage", web_origins=web_origins)
        key = storage.key
        tables = Tables(self, "Tables", key=key)
        network = Network(self, "Network", key=key, log_retention=retention)
        bus = events.EventBus(self, "Events", event_bus_name=f"{construct_id}-imaging")
        # Where every alarm goes; operators subscribe their paging or e-mail to it.
        self.alarms = sns.Topic(
            self, "Alarms", display_name="Orca imaging alarms", master_key=key, enforce_ssl=True
        )
        # CloudWatch publishes alarms to the encrypted topic only if it may use the key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        layer = SharedLayer(self, "Shared", layer_dir=layer_dir).layer

        resource_values: dict[str, str] = {
            **{field: table.table_name for field, table in tables.tables.items()},
            **{field: bucket.bucket_name for field, bucket in storage.buckets.items()},
            "kms_key_id": key.key_arn,
            "event_bus_name": bus.event_bus_name,
        }
        self.trackers = {
            spec.settings_field: BatchTracker(
                self,
                spec.construct_id,
                spec=spec,
                resource_values=resource_values,
                tables=dict(tables.tables),
                bus=bus,
                key=key,
                log_retention=retention,
                alarm_topic=self.alarms,
            )
            for spec in STATE_MACHINES
        }
        resource_values |= {field: t.state_machine.state_machine_arn for field, t in self.trackers.items()}
        self.queues = {
            spec.construct_id: ConsumerQueue(
                self,
                spec.construct_id,
                spec=spec,
                bucket=storage.buckets[spec.bucket_field] if spec.bucket_field else None,
                key=storage.messages_key,
                alarm_topic=self.alarms,
            )
            for spec in QUEUES
        }
        resource_values |= {  # where the functions that send to a queue find it
            queue.spec.url_field: queue.queue.queue_url
            for queue in self.queues.values()
            if queue.spec.url_field
        }
        functions = {
            spec.name: ImagingFunction(
                self,
                "".join(part.title() for part in spec.name.split("_")),
                spec=spec,
                layer=layer,
                resource_values=resource_values,
                key=key,
                vpc=network.vpc,
                security_groups=[
                    network.functions_security_group,
                    *([network.pacs_client_security_group] if spec.calls_pacs else []),
                ],
                log_retention=retention,
                reserved_concurrency=int(self.node.try_get_context("reservedConcurrency") or 20),
            ).function
            for spec in FUNCTIONS
        }

        permissions = Permissions(self, "Permissions", storage=storage, tables=tables)
        permissions.grant_api(functions["upload_url"])
        for tracker in self.trackers.values():
            tracker.grant_control(functions["upload_url"].role)  # type: ignore[arg-type]
        permissions.grant_intake(functions["process_image"])
        bus.grant_put_events_to(functions["process_image"])
        permissions.grant_intake(functions["dicom_ingest"])  # reads slices, writes volume previews
        permissions.grant_pacs_retrieve(functions["pacs_retrieve"])
        self.schedule_alarms: dict[str, cloudwatch.Alarm] = {}
        for schedule in SCHEDULES:
            events.Rule(
                self,
                schedule.construct_id,
                schedule=events.Schedule.rate(Duration.seconds(schedule.rate_seconds)),
                targets=[targets.LambdaFunction(functions[schedule.function])],  # type: ignore[list-item]
            )
            self.schedule_alarms[schedule.construct_id] = alarm_on_failing_schedule(
                self, schedule, functions[schedule.function], topic=self.alarms
            )

        for queue in self.queues.values():
            queue.deliver_to(functions[queue.spec.consumer])
            for sender in queue.spec.senders:
                permissions.grant_send(functions[sender], queue.queue, storage.messages_key)
        self.api = ImagingApi(
            self,
            "Api",
            functions=functions,
            key=key,
            log_retention=retention,
            throttle_rate=int(self.node.try_get_context("throttleRate") or 50),
            throttle_burst=int(self.node.try_get_context("throttleBurst") or 100),
        )
        self.dicom = DicomService(
            self,
            "Dicom",
            network=network,
            key=key,
            originals=storage.buckets["originals_bucket"],
            tables=tables.tables,
            resource_values=resource_values,
            log_retention=retention,
            alarm_topic=self.alarms,
            root=ROOT,
        )
        for spec in FUNCTIONS:
            if spec.calls_pacs:
                self.dicom.serve_pacs_queries(functions[spec.name], network.pacs_client_security_group)
        notifications = self.node.try_find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834")
        if notifications is not None:
            acknowledge(
                notifications,
                {
                    managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"): (
                        "CDK's deploy-time handler that writes the bucket notification configuration."
                    ),
                    "HIPAA.Security-IAMNoInlinePolicy": "CDK's deploy-time bucket-notification handler.",
                },
            )
        self.storage, self.tables, self.network, self.functions, self.bus = (
            storage,
            tables,
            network,
            functions,
            bus,
        )
