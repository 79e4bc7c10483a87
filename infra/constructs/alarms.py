"""Alarms sent to the stack's alarms topic, where operators subscribe their paging or e-mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions

from orca_imaging.observability import METRICS_NAMESPACE, SERVICE

if TYPE_CHECKING:
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_sns as sns
    from constructs import Construct

    from orca_imaging.resources import ScheduleSpec

# Every alarm's period.
PERIOD_MINUTES = 5
# A schedule's failures page once they have lasted this many periods: one run may fail on a
# passing fault, and the next runs retry it.
SCHEDULE_FAILING_PERIODS = 3


def alarm_on_any(
    scope: Construct, construct_id: str, metric: cloudwatch.IMetric, *, description: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """Raised by a single occurrence in one period: for what should never happen (a store
    refused, a message dead-lettered). No data is no occurrence."""
    return alarm_on_persisting(scope, construct_id, metric, periods=1, description=description, topic=topic)


def alarm_on_persisting(
    scope: Construct,
    construct_id: str,
    metric: cloudwatch.IMetric,
    *,
    periods: int,
    description: str,
    topic: sns.ITopic,
) -> cloudwatch.Alarm:
    """Raised by occurrences in each of `periods` periods in a row: for what a retry may cure
    once, but not every time (work left for a schedule's next run)."""
    alarm = metric.create_alarm(
        scope,
        construct_id,
        threshold=0,
        evaluation_periods=periods,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm


def summed(metrics: dict[str, cloudwatch.IMetric]) -> cloudwatch.MathExpression:
    """Several counts as one, per period. A count with no data in a period counts as
    zero there (`FILL`): metric math evaluates `a + b` only where both have a value, so an
    alarm on it could miss a period in which only one of them occurred."""
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({name}, 0)" for name in metrics),
        using_metrics=metrics,
        period=Duration.minutes(PERIOD_MINUTES),
    )


def service_metric(name: str, statistic: str) -> cloudwatch.Metric:
    """A metric our functions and the DICOM service publish with Powertools (its namespace
    and `service` dimension), per period."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=Duration.minutes(PERIOD_MINUTES),
    )


def alarm_on_failing_schedule(
    scope: Construct, schedule: ScheduleSpec, function: lambda_.IFunction, *, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """A scheduled function that fails, or leaves an item of its work failed (its
    `error_metric`), run after run: nothing retries it but the next run, so the work would
    silently never be done."""
    counted: dict[str, cloudwatch.IMetric] = {"invocations": function.metric_errors(statistic="Sum")}
    watched = "its errors"
    if schedule.error_metric:
        counted["items"] = service_metric(schedule.error_metric, "Sum")
        watched += f", or {schedule.error_metric}"
    minutes = PERIOD_MINUTES * SCHEDULE_FAILING_PERIODS
    failing = f"{schedule.function} ({schedule.construct_id}) has failed for {minutes} minutes"
    return alarm_on_persisting(
        scope,
        f"{schedule.construct_id}FailingAlarm",
        summed(counted),
        periods=SCHEDULE_FAILING_PERIODS,
        description=f"{failing} ({watched}).",
        topic=topic,
    )
