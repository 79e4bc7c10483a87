"""The one Lambda construct every function uses: runtime, architecture, tracing, JSON logs,
log retention, the shared layer, the VPC and the settings environment."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.logs import encrypted_log_group
from infra.constructs.nag import acknowledge, managed_policy_finding
from orca_imaging.observability import METRICS_NAMESPACE, SERVICE
from orca_imaging.resources import FunctionSpec, settings_env

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = lambda_.Runtime.PYTHON_3_14  # the layer is built for the same version (infra/layer.py)


class SharedLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, layer_dir: Path) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="orca_imaging and its pinned dependencies",
        )


class ImagingFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        layer: lambda_.ILayerVersion,
        resource_values: dict[str, str],
        key: kms.IKey,
        vpc: ec2.IVpc,
        security_groups: list[ec2.ISecurityGroup],
        log_retention: logs.RetentionDays,
        reserved_concurrency: int,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = encrypted_log_group(self, "Logs", key=key, retention=log_retention)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=spec.handler,
            # Only this function's folder (plus the package marker) ships; the rest is the layer.
            code=lambda_.Code.from_asset(
                str(ROOT),
                exclude=[
                    "*",
                    ".*",
                    "!functions",
                    "!functions/__init__.py",
                    f"!functions/{spec.code_folder}",
                    f"!functions/{spec.code_folder}/*.py",
                ],
            ),
            layers=[layer],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            description=spec.description,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            environment={
                **settings_env(spec.settings, resource_values),
                "POWERTOOLS_SERVICE_NAME": SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            environment_encryption=key,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=security_groups,
            reserved_concurrent_executions=reserved_concurrency,
        )
        acknowledge(
            self.function,
            {
                "HIPAA.Security-LambdaDLQ": (
                    "Never invoked asynchronously: API Gateway calls it synchronously and SQS event "
                    "sources keep failed messages in their own dead-letter queue."
                ),
                managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"): (
                    "The AWS-managed basic execution role only allows writing this function's logs."
                ),
                managed_policy_finding("service-role/AWSLambdaVPCAccessExecutionRole"): (
                    "The AWS-managed VPC access role only manages the function's network interfaces."
                ),
            },
        )
