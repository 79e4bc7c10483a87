"""Step Functions state machines from `resources.STATE_MACHINES`.

The definition file is the same one the local stack runs on moto; CDK only fills in the
resource names. Its role gets exactly what the definition's tasks call.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.alarms import alarm_on_any, summed
from infra.constructs.logs import encrypted_log_group
from infra.constructs.nag import acknowledge
from orca_imaging.resources import DEFINITIONS, StateMachineSpec

KEY_GRANT = "CDK's encrypt/decrypt grant on the data key."


class BatchTracker(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: StateMachineSpec,
        resource_values: dict[str, str],
        tables: dict[str, dynamodb.ITable],
        bus: events.IEventBus,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = encrypted_log_group(self, "Logs", key=key, retention=log_retention)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITIONS / spec.definition_file)),
            definition_substitutions={
                placeholder: resource_values[field] for placeholder, field in spec.substitutions.items()
            },
            tracing_enabled=True,
            timeout=Duration.days(3),
            # Every event, but never the execution data: inputs name patients' files.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(key),
        )
        role = self.state_machine.role
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[tables["batches_table"].table_arn, tables["images_table"].table_arn],
            )
        )
        key.grant_encrypt_decrypt(role)
        bus.grant_put_events_to(role)
        policy = role.node.try_find_child("DefaultPolicy")
        assert policy is not None
        acknowledge(
            policy,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "X-Ray segments and CloudWatch Logs delivery accept only resource '*'."
                ),
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": KEY_GRANT,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": KEY_GRANT,
                "HIPAA.Security-IAMNoInlinePolicy": "The state machine role's own policy: the tasks it runs.",
            },
        )

        # A tracker that fails or times out leaves its batch PROCESSING for good: the clinic's
        # progress never ends. (A cancel stops one: aborted, which is no fault.)
        self.unfinished_alarm = alarm_on_any(
            self,
            "UnfinishedAlarm",
            summed(
                {
                    "failed": self.state_machine.metric_failed(statistic="Sum"),
                    "timedOut": self.state_machine.metric_timed_out(statistic="Sum"),
                }
            ),
            description="A batch tracker failed or timed out; its batch stays PROCESSING.",
            topic=alarm_topic,
        )

    def grant_control(self, fn: iam.IGrantable) -> None:
        """Start executions and stop them (cancel); stopping is granted per execution ARN."""
        self.state_machine.grant_start_execution(fn)
        self.state_machine.grant_execution(fn, "states:StopExecution")
        stack = Stack.of(self)
        machine_id = stack.resolve(stack.get_logical_id(self.state_machine.node.default_child))  # type: ignore[arg-type]
        execution_arns = (
            f"Resource::arn:<AWS::Partition>:states:{stack.region}:{stack.account}:execution:"
            f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine_id}"}}]}}]}}:*'
        )
        policy = fn.grant_principal.node.try_find_child("DefaultPolicy") if isinstance(fn, iam.Role) else None
        target = policy or fn.grant_principal
        reason = "Stop any execution of this one state machine."
        acknowledge(target, {f"AwsSolutions-IAM5[{execution_arns}]": reason})
