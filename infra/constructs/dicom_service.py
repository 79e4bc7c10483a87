"""The DICOM service on ECS Fargate: the X-ray devices' C-STORE, C-ECHO and Worklist
C-FIND over the VPN.

- An internal NLB on the DICOM port, whose security group admits only the VPN's CIDR (a
  stack parameter). Client addresses are preserved, so the service checks each node's own
  CIDR against the device's real address.
- The tasks run in the isolated subnets; images come from ECR through the network's
  interface endpoints. The spool is on EFS: a replaced task finds and drains what the last one
  acknowledged (`services/dicom_scp/README.md`).
- The task role may create originals but never replace one: PutObject only with
  `If-None-Match` (the drainer always sends it), only under the originals prefix.
- Scales on CPU; alarms when the spool grows (S3 unreachable) and when stores fail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_cdk import CfnParameter, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_efs as efs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.constructs.alarms import alarm_on_any, alarm_on_persisting, service_metric, summed
from infra.constructs.logs import encrypted_log_group
from infra.constructs.nag import acknowledge
from infra.constructs.permissions import new_originals_only
from orca_imaging.keys import original_key
from orca_imaging.models import ImageModel
from orca_imaging.observability import SERVICE
from orca_imaging.resources import settings_env
from orca_imaging.settings import ScpSettings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_s3 as s3

    from infra.constructs.network import Network

DICOM_PORT = 11112
TLS_PORT = 2762  # PS3.15 B.1's port for DICOM over TLS
DEVICE_PORTS = (DICOM_PORT, TLS_PORT)
HEALTH_PORT = 8080
TASK_CPU_UNITS = 2048  # 2 vCPU: two receiving processes
SPOOL_PATH = "/spool"
# The container's variable for each field of the TLS secret.
TLS_SECRET_KEYS = {
    "ORCA_TLS_CERTIFICATE": "certificate",
    "ORCA_TLS_PRIVATE_KEY": "privateKey",
    "ORCA_TLS_CLIENT_CA": "clientCa",
}
SPOOL_OWNER = "1000"  # the image's unprivileged user (services/dicom_scp/Dockerfile)


class DicomService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        key: kms.IKey,
        originals: s3.IBucket,
        tables: Mapping[str, dynamodb.ITable],
        resource_values: dict[str, str],
        log_retention: logs.RetentionDays,
        alarm_topic: sns.ITopic,
        root: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        vpc = network.vpc
        self.client_cidr = CfnParameter(
            self,
            "ClientCidr",
            type="String",
            description="The clinics' VPN address range: the only source the DICOM port accepts.",
            allowed_pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
        )
        self.ae_title = ssm.StringParameter(
            self,
            "AeTitle",
            description="The DICOM service's AE title: what the devices call.",
            string_value="ORCA",
            parameter_name=f"/{SERVICE}/dicom/ae-title",
        )

        self.load_balancer_sg = ec2.SecurityGroup(
            self, "LoadBalancerSg", vpc=vpc, description="DICOM NLB: the VPN only", allow_all_outbound=False
        )
        self.service_sg = ec2.SecurityGroup(
            self,
            "ServiceSg",
            vpc=vpc,
            description="DICOM service: DICOM from the VPN (addresses preserved), health from the NLB",
            allow_all_outbound=False,
        )
        vpn = ec2.Peer.ipv4(self.client_cidr.value_as_string)
        for port in DEVICE_PORTS:
            self.load_balancer_sg.add_ingress_rule(vpn, ec2.Port.tcp(port), "DICOM from the VPN")
            self.load_balancer_sg.add_egress_rule(self.service_sg, ec2.Port.tcp(port), "to the tasks")
            self.service_sg.add_ingress_rule(vpn, ec2.Port.tcp(port), "DICOM from the VPN")
        self.load_balancer_sg.add_egress_rule(self.service_sg, ec2.Port.tcp(HEALTH_PORT), "health checks")
        self.service_sg.add_ingress_rule(
            self.load_balancer_sg, ec2.Port.tcp(HEALTH_PORT), "NLB health checks"
        )
        self.service_sg.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS endpoints only (isolated)"
        )
        self.service_sg.add_egress_rule(ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(2049), "EFS spool")

        network.admit_to_endpoints(self.service_sg, "HTTPS from the DICOM tasks")

        spool_sg = ec2.SecurityGroup(
            self, "SpoolSg", vpc=vpc, description="EFS spool: NFS from the tasks", allow_all_outbound=False
        )
        spool_sg.add_ingress_rule(self.service_sg, ec2.Port.tcp(2049), "NFS from the DICOM tasks")
        self.spool = efs.FileSystem(
            self,
            "Spool",
            vpc=vpc,
            encrypted=True,
            kms_key=key,
            security_group=spool_sg,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            removal_policy=RemovalPolicy.RETAIN,  # it may hold acknowledged objects not yet in S3
            enable_automatic_backups=False,
        )
        access_point = self.spool.add_access_point(
            "SpoolAccess",
            path="/spool",
            create_acl=efs.Acl(owner_uid=SPOOL_OWNER, owner_gid=SPOOL_OWNER, permissions="750"),
            posix_user=efs.PosixUser(uid=SPOOL_OWNER, gid=SPOOL_OWNER),
        )

        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        task = ecs.FargateTaskDefinition(self, "Task", cpu=TASK_CPU_UNITS, memory_limit_mib=4096)
        task.add_volume(
            name="spool",
            efs_volume_configuration=ecs.EfsVolumeConfiguration(
                file_system_id=self.spool.file_system_id,
                transit_encryption="ENABLED",
                authorization_config=ecs.AuthorizationConfig(
                    access_point_id=access_point.access_point_id, iam="ENABLED"
                ),
            ),
        )
        # Scratch space under the read-only root: TLS key material is written there only to
        # be loaded, then removed (`dicom_task.tls_context`).
        task.add_volume(name="tmp")
        # The operator puts PEM text in it; empty, TLS stays off. Its keys exist from the
        # start, so a task never fails to start for a missing one.
        self.tls_secret = secretsmanager.Secret(
            self,
            "TlsCertificate",
            description="DICOM TLS: certificate, privateKey and (for mutual TLS) clientCa, as PEM",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(dict.fromkeys(TLS_SECRET_KEYS.values(), "")),
                generate_string_key="unused",
            ),
        )
        environment = settings_env(ScpSettings, resource_values) | {
            "ORCA_SPOOL_DIR": SPOOL_PATH,
            "ORCA_DICOM_PORT": str(DICOM_PORT),
            "ORCA_TLS_PORT": str(TLS_PORT),
            "ORCA_HEALTH_PORT": str(HEALTH_PORT),
            # One receiving process per vCPU (services/dicom_scp/main.py), said outright
            # rather than read from what the task's VM reports.
            "ORCA_RECEIVERS": str(TASK_CPU_UNITS // 1024),
            "POWERTOOLS_SERVICE_NAME": SERVICE,
        }
        container = task.add_container(
            "Scp",
            # The build context is the repository, cut down by its .dockerignore.
            image=ecs.ContainerImage.from_asset(str(root), file="services/dicom_scp/Dockerfile"),
            environment=environment,
            secrets={
                "ORCA_AE_TITLE": ecs.Secret.from_ssm_parameter(self.ae_title),
                **{
                    variable: ecs.Secret.from_secrets_manager(self.tls_secret, field)
                    for variable, field in TLS_SECRET_KEYS.items()
                },
            },
            logging=ecs.LogDriver.aws_logs(
                stream_prefix="dicom",
                log_group=encrypted_log_group(self, "Logs", key=key, retention=log_retention),
            ),
            port_mappings=[
                ecs.PortMapping(container_port=port, protocol=ecs.Protocol.TCP)
                for port in (*DEVICE_PORTS, HEALTH_PORT)
            ],
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    "import sys, urllib.request; sys.exit(urllib.request.urlopen("
                    f"'http://127.0.0.1:{HEALTH_PORT}/health', timeout=4).status != 200)",
                ],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                start_period=Duration.seconds(30),
            ),
            # SIGTERM, then this long for associations in flight (the service stops at 100 s).
            stop_timeout=Duration.seconds(120),
            readonly_root_filesystem=True,
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=SPOOL_PATH, source_volume="spool", read_only=False),
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False),  # noqa: S108
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=2,
            min_healthy_percent=100,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.service_sg],
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        self.spool.grant_read_write(task.task_role)
        self._grant_task(
            task.task_role,
            originals=originals,
            tables=tables,
            key=key,
        )

        self.load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.load_balancer_sg],
            cross_zone_enabled=True,
            deletion_protection=True,
        )
        self.target_groups = {}
        for name, port in (("Dicom", DICOM_PORT), ("DicomTls", TLS_PORT)):
            # TCP straight through: TLS ends in the task, where a client certificate is checked.
            listener = self.load_balancer.add_listener(name, port=port, protocol=elbv2.Protocol.TCP)
            self.target_groups[port] = listener.add_targets(
                f"{name}Tasks",
                port=port,
                protocol=elbv2.Protocol.TCP,
                targets=[self.service.load_balancer_target(container_name="Scp", container_port=port)],
                preserve_client_ip=True,  # each node's own CIDR is checked against the device's address
                deregistration_delay=Duration.seconds(120),  # as long as a task may finish its associations
                health_check=elbv2.HealthCheck(
                    protocol=elbv2.Protocol.HTTP,
                    port=str(HEALTH_PORT),
                    path="/health",
                    interval=Duration.seconds(30),
                ),
            )

        scaling = self.service.auto_scale_task_count(min_capacity=2, max_capacity=6)
        scaling.scale_on_cpu_utilization(
            "Cpu", target_utilization_percent=60, scale_in_cooldown=Duration.minutes(10)
        )
        # S3 unreachable or refusing: acknowledged objects pile up on EFS.
        backlog = service_metric("DicomSpoolDepth", "Maximum").create_alarm(
            self,
            "SpoolBacklogAlarm",
            threshold=200,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,  # a silent service is a problem too
            alarm_description="DICOM spool backlog: objects acknowledged to devices are not reaching S3.",
        )
        backlog.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
        self.alarms = {
            "SpoolBacklog": backlog,
            # A device was told an object was not stored (spool full, or a failure writing it).
            "StoresFailed": alarm_on_any(
                self,
                "StoresFailedAlarm",
                summed(
                    {
                        "failed": service_metric("DicomStoresFailed", "Sum"),
                        "refused": service_metric("DicomStoresRefused", "Sum"),
                    }
                ),
                description="DICOM C-STOREs answered with a failure status.",
                topic=alarm_topic,
            ),
            # An acknowledged object whose spooled file cannot be read, or no longer matches
            # its CRC-32: set aside on EFS.
            "SpoolDamaged": alarm_on_any(
                self,
                "SpoolDamagedAlarm",
                service_metric("DicomSpoolDamaged", "Sum"),
                description="A spooled DICOM file was unreadable or damaged; it is kept in damaged/.",
                topic=alarm_topic,
            ),
            # A device refused period after period: it retries what it could not send, so a
            # clinic's images are waiting on it. One refused once (a title mistyped while
            # setting a device up, then corrected) is left to the log line and its reason.
            "AssociationsRefused": alarm_on_persisting(
                self,
                "AssociationsRefusedAlarm",
                service_metric("DicomAssociationsRefused", "Sum"),
                periods=3,
                description=(
                    "A DICOM device has been refused for 15 minutes (calling AE title not registered, "
                    "address outside its node's CIDR, or called AE title not ours): see the "
                    "'association refused' log lines for its reason."
                ),
                topic=alarm_topic,
            ),
            # Transfers cut off with an object arriving, period after period: a device whose
            # link keeps dropping (the VPN, a timeout shorter than its sends) resends, and
            # is cut off again. One dropped once is left to its 'association ended' line.
            "StoresInterrupted": alarm_on_persisting(
                self,
                "StoresInterruptedAlarm",
                service_metric("DicomStoresInterrupted", "Sum"),
                periods=3,
                description=(
                    "DICOM transfers have been cut off mid-object for 15 minutes: see the "
                    "'association ended' log lines with object_interrupted for the device and how."
                ),
                topic=alarm_topic,
            ),
        }
        self._acknowledge(task, originals, [self.load_balancer_sg, self.service_sg])
        rotation = (
            "A TLS certificate is renewed by its CA and put here by the operator; "
            "there is no password to rotate automatically."
        )
        acknowledge(
            self.tls_secret,
            {"AwsSolutions-SMG4": rotation, "HIPAA.Security-SecretsManagerRotationEnabled": rotation},
        )

    def serve_pacs_queries(self, function: lambda_.Function, client_group: ec2.SecurityGroup) -> None:
        """A function running PACS query and retrieve (`pacs.py`) calls the clinics' PACS over
        the VPN as our AE title, which is also where a C-MOVE sends the study; `client_group`
        is the security group only such functions have."""
        function.add_environment("ORCA_AE_TITLE", self.ae_title.string_value)
        client_group.add_egress_rule(
            ec2.Peer.ipv4(self.client_cidr.value_as_string),
            ec2.Port.all_tcp(),  # PACS listen on 104, 4242, 11112 or whatever their admin chose
            "PACS query/retrieve over the VPN",
        )

    def _grant_task(
        self,
        role: iam.IRole,
        *,
        originals: s3.IBucket,
        tables: Mapping[str, dynamodb.ITable],
        key: kms.IKey,
    ) -> None:
        role.add_to_principal_policy(new_originals_only(originals))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Scan", "dynamodb:GetItem"],
                resources=[tables["dicom_nodes_table"].table_arn],
            )
        )
        role.add_to_principal_policy(  # the Worklist SCP reads, per clinic; it never writes
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[tables["worklist_table"].table_arn])
        )
        images = tables["images_table"]
        role.add_to_principal_policy(  # a resent object: is it stored already? (originals.py)
            iam.PolicyStatement(
                actions=["dynamodb:Query", "dynamodb:GetItem"],
                resources=[
                    images.table_arn,
                    f"{images.table_arn}/index/{ImageModel.by_sha256.Meta.index_name}",
                ],
            )
        )
        role.add_to_principal_policy(  # ...and if so, the audit event on the image holding it
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[tables["audit_table"].table_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[key.key_arn])
        )

    def _acknowledge(
        self, task: ecs.FargateTaskDefinition, originals: s3.IBucket, groups: list[ec2.SecurityGroup]
    ) -> None:
        stack = Stack.of(self)
        originals_id = stack.resolve(stack.get_logical_id(originals.node.default_child))  # type: ignore[arg-type]
        acknowledge(
            task,
            {
                "AwsSolutions-ECS2": (
                    "The environment holds resource names and limits only; the AE title comes from SSM."
                ),
                f"AwsSolutions-IAM5[Resource::<{originals_id}.Arn>/{original_key('*', '*')}]": (
                    "New originals of any clinic (the device's node names it), create-only by condition."
                ),
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken accepts only resource '*'.",
                "HIPAA.Security-IAMNoInlinePolicy": (
                    "CDK's per-role default policies of this task's two roles, attached to them only."
                ),
            },
        )
        why = (
            "Rules on a parameter (the VPN's CIDR, pattern-checked) or on another security group; "
            "only the DICOM, health, NFS and HTTPS ports are opened."
        )
        for group in groups:
            acknowledge(
                group,
                {
                    "AwsSolutions-EC23": why,
                    "HIPAA.Security-EC2RestrictedCommonPorts": why,
                    "HIPAA.Security-EC2RestrictedSSH": why,
                },
            )
        tcp_only = "A TCP listener (DICOM): NLB access logs exist only for TLS listeners."
        acknowledge(
            self.load_balancer,
            {
                "AwsSolutions-ELB2": tcp_only,
                "HIPAA.Security-ELBLoggingEnabled": tcp_only,
                "HIPAA.Security-ELBv2ACMCertificateRequired": (
                    "DICOM over TCP inside the clinics' site-to-site VPN, which encrypts it. DICOM "
                    "TLS (2762) passes through as TCP and ends in the task, which checks the "
                    "device's certificate. VPC flow logs record every connection."
                ),
            },
        )
        acknowledge(
            self.spool,
            {
                "HIPAA.Security-EFSInBackupPlan": (
                    "A transit spool: each object is on it only until S3 (versioned, encrypted) has it."
                )
            },
        )
