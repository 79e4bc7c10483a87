"""API Gateway REST with a Cognito user-pool authorizer on every method, from `resources.ROUTES`.

Groups in the user pool are the spec's roles; the custom `clinicId` attribute is the
clinic claim. The web uploader is served from the same origin (behind CloudFront), so the
API needs no CORS preflight and every method, without exception, requires a token.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as waf
from constructs import Construct

from infra.constructs.logs import encrypted_log_group
from infra.constructs.nag import acknowledge, managed_policy_finding
from orca_imaging.auth import Role
from orca_imaging.resources import ROUTES


class ImagingApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: dict[str, lambda_.IFunction],
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        throttle_rate: int,
        throttle_burst: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            custom_attributes={"clinicId": cognito.StringAttribute(mutable=False, min_len=1, max_len=64)},
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for role in Role:
            cognito.CfnUserPoolGroup(
                self, f"Group-{role.value}", user_pool_id=self.user_pool.user_pool_id, group_name=role.value
            )
        self.client = self.user_pool.add_client(
            "WebClient", auth_flows=cognito.AuthFlow(user_srp=True), generate_secret=False
        )
        authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[self.user_pool])

        access_logs = encrypted_log_group(self, "AccessLogs", key=key, retention=log_retention)
        self.rest_api = apigw.RestApi(
            self,
            "Api",
            description="Orca imaging intake API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,  # request bodies may hold PHI
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        integrations = {name: apigw.LambdaIntegration(fn) for name, fn in functions.items()}
        for route in ROUTES:
            resource = self.rest_api.root.resource_for_path(route.path)
            resource.add_method(
                route.method,
                integrations[route.function],
                authorizer=authorizer,
                authorization_type=apigw.AuthorizationType.COGNITO,
                request_validator=validator,
            )

        acl = waf.CfnWebACL(
            self,
            "Firewall",
            scope="REGIONAL",
            default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="OrcaImagingApi", sampled_requests_enabled=False
            ),
            rules=[
                waf.CfnWebACL.RuleProperty(
                    name=name,
                    priority=priority,
                    override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
                    statement=waf.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=waf.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=name
                        )
                    ),
                    visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=False
                    ),
                )
                for priority, name in enumerate(
                    ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"]
                )
            ],
        )
        # WAF only delivers to log groups whose name starts with "aws-waf-logs-".
        firewall_logs = encrypted_log_group(
            self,
            "FirewallLogs",
            key=key,
            retention=log_retention,
            name=f"aws-waf-logs-{Stack.of(self).stack_name}-api",
        )
        waf.CfnLoggingConfiguration(
            self,
            "FirewallLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[firewall_logs.log_group_arn],
        )
        waf.CfnWebACLAssociation(
            self,
            "FirewallAssociation",
            resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )

        acknowledge(
            self.rest_api.deployment_stage,
            {
                "HIPAA.Security-APIGWCacheEnabledAndEncrypted": (
                    "No cache: every response is per caller and may carry short-lived presigned URLs."
                ),
                "HIPAA.Security-APIGWSSLEnabled": (
                    "Backend client certificates apply to HTTP integrations; every integration is Lambda."
                ),
            },
        )
        acknowledge(
            self.rest_api,
            {
                managed_policy_finding("service-role/AmazonAPIGatewayPushToCloudWatchLogs"): (
                    "API Gateway's account-level logging role; the managed policy only writes logs."
                ),
            },
        )
