"""SQS (with a dead-letter queue) -> consumer, from `resources.QUEUES`: fed by a bucket's
ObjectCreated events, or by the functions that send to it. A message in the dead-letter
queue is work its consumer never finished (it crashed or timed out on every receive): it
raises an alarm, as does the consumer's own metric for work it settled as failed on a
message's last receive (a file rejected `processing_failed`, a retrieve FAILED)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.alarms import PERIOD_MINUTES, alarm_on_any, service_metric
from infra.constructs.nag import acknowledge

if TYPE_CHECKING:
    from aws_cdk import aws_cloudwatch as cloudwatch

    from orca_imaging.resources import QueueSpec


class ConsumerQueue(Construct):
    """Made before the functions (their settings hold its URL); `deliver_to` then connects
    its consumer."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: QueueSpec,
        bucket: s3.IBucket | None,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(self.dead_letters, {"AwsSolutions-SQS3": "This is the dead-letter queue."})
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(spec.visibility_timeout()),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=spec.max_receive_count
            ),
        )
        self.dead_letter_alarm = alarm_on_any(
            self,
            "DeadLettersAlarm",
            self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(PERIOD_MINUTES), statistic="Maximum"
            ),
            description=(
                f"{spec.consumer} failed {spec.max_receive_count} times on a message of the "
                f"{spec.construct_id} queue; it is kept in the dead-letter queue."
            ),
            topic=alarm_topic,
        )
        self.gave_up_alarm: cloudwatch.Alarm | None = None
        if spec.gave_up_metric:
            self.gave_up_alarm = alarm_on_any(
                self,
                "GaveUpAlarm",
                service_metric(spec.gave_up_metric, "Sum"),
                description=(
                    f"{spec.consumer} failed {spec.max_receive_count} times on a message of the "
                    f"{spec.construct_id} queue, and settled its work as failed ({spec.gave_up_metric})."
                ),
                topic=alarm_topic,
            )
        if bucket is not None:
            self._fed_by(bucket)

    def _fed_by(self, bucket: s3.IBucket) -> None:
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(self.queue),
            s3.NotificationKeyFilter(prefix=self.spec.prefix),
        )
        handler_policy = bucket.node.try_find_child("Notifications")
        if handler_policy is not None:
            acknowledge(
                handler_policy,
                {
                    "HIPAA.Security-IAMNoInlinePolicy": (
                        "CDK's deploy-time policy to set this bucket's notifications."
                    )
                },
            )

    def deliver_to(self, consumer: lambda_.IFunction) -> None:
        consumer.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=self.spec.batch_size,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )
