"""Alarms sent to the stack's alarms topic, where operators subscribe their paging or e-mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions

from orca_imaging.observability import METRICS_NAMESPACE, SERVICE

if TYPE_CHECKING:
    from aws_cdk import aws_sns as sns
    from constructs import Construct


def alarm_on_any(
    scope: Construct, construct_id: str, metric: cloudwatch.IMetric, *, description: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """Raised by a single occurrence in one period: for what should never happen (a store
    refused, a message dead-lettered). No data is no occurrence."""
    alarm = metric.create_alarm(
        scope,
        construct_id,
        threshold=0,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm


def service_metric(name: str, statistic: str) -> cloudwatch.Metric:
    """A metric our functions and the DICOM service publish with Powertools (its namespace
    and `service` dimension), over five minutes."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=Duration.minutes(5),
    )
