"""The VPC the functions and the DICOM service run in.

Isolated subnets only: there is no route to the internet, so the functions' HTTPS egress
can reach nothing but the gateway endpoints (S3, DynamoDB) and the interface endpoints.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.logs import encrypted_log_group
from infra.constructs.nag import acknowledge

INTERFACE_ENDPOINTS = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "Events": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
    "StepFunctions": ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
    # What a Fargate task needs to start and run here: its image, logs, SSM values, metrics.
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}


class Network(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        flow_logs = encrypted_log_group(self, "FlowLogs", key=key, retention=log_retention)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        self.functions_security_group = ec2.SecurityGroup(
            self,
            "FunctionsSg",
            vpc=self.vpc,
            description="Imaging functions: HTTPS egress to AWS endpoints only",
            allow_all_outbound=False,
        )
        self.functions_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS; isolated subnets route only to VPC endpoints"
        )
        # Its one rule, egress to the clinics' VPN, is added by the DICOM service, which holds
        # that range; only functions that call PACS get this group.
        self.pacs_client_security_group = ec2.SecurityGroup(
            self,
            "PacsClientSg",
            vpc=self.vpc,
            description="Functions calling PACS: egress to the VPN only",
            allow_all_outbound=False,
        )
        self.endpoints_security_group = endpoint_sg = ec2.SecurityGroup(
            self,
            "EndpointsSg",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from the functions and the DICOM tasks",
            allow_all_outbound=False,
        )
        self.admit_to_endpoints(self.functions_security_group, "HTTPS from functions")
        why = "Ingress only from our own security groups (references, not CIDRs), on 443."
        acknowledge(
            endpoint_sg,
            {
                "AwsSolutions-EC23": why,
                "HIPAA.Security-EC2RestrictedCommonPorts": why,
                "HIPAA.Security-EC2RestrictedSSH": why,
            },
        )
        acknowledge(
            self.vpc,
            {
                "HIPAA.Security-VPCDefaultSecurityGroupClosed": (
                    "CDK strips the default security group's rules at deploy "
                    "(@aws-cdk/aws-ec2:restrictDefaultSecurityGroup in cdk.json)."
                ),
                "HIPAA.Security-IAMNoInlinePolicy": (
                    "The flow-log role's own policy: it writes to one log group."
                ),
            },
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True, security_groups=[endpoint_sg]
            )

    def admit_to_endpoints(self, clients: ec2.ISecurityGroup, description: str) -> None:
        """Let this security group's members reach the AWS service endpoints (HTTPS)."""
        self.endpoints_security_group.add_ingress_rule(clients, ec2.Port.tcp(443), description)
