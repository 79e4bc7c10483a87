"""The customer-managed key, the buckets (from `resources.BUCKETS`) and their access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.nag import acknowledge
from orca_imaging.keys import ABANDONED_TAG
from orca_imaging.resources import BUCKETS


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, web_origins: list[str]) -> None:
        super().__init__(scope, construct_id)
        self.key = self._customer_key("DataKey", "Orca imaging: images, records and logs")
        # Queues get their own key: S3 notifications need a key policy naming the bucket,
        # and the bucket already names the data key, which would make a dependency cycle.
        self.messages_key = self._customer_key("MessagesKey", "Orca imaging: intake queues")
        # S3 server access logs can only be delivered to an SSE-S3 bucket.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(400), noncurrent_version_expiration=Duration.days(30)
                )
            ],
        )
        acknowledge(
            self.access_logs,
            {
                "AwsSolutions-S1": "This is the access-log bucket; logging it to itself would loop.",
                "HIPAA.Security-S3BucketLoggingEnabled": "This is the access-log bucket itself.",
                "HIPAA.Security-S3DefaultEncryptionKMS": (
                    "S3 delivers server access logs only to SSE-S3 buckets."
                ),
                "HIPAA.Security-S3BucketReplicationEnabled": (
                    "Access logs are not replicated; see the README's deployment notes."
                ),
            },
        )
        self.buckets: dict[str, s3.Bucket] = {}
        for spec in BUCKETS:
            bucket = s3.Bucket(
                self,
                spec.construct_id,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=self.key,
                bucket_key_enabled=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=True,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{spec.construct_id}/",
                removal_policy=RemovalPolicy.RETAIN,
                cors=[self._browser_cors(web_origins)] if spec.browser_upload else None,
                lifecycle_rules=[
                    s3.LifecycleRule(
                        id="AbortIncompleteMultipart",
                        abort_incomplete_multipart_upload_after=Duration.days(3),
                    ),
                    s3.LifecycleRule(
                        id="ExpireAbandonedUploads",
                        tag_filters=dict([ABANDONED_TAG]),
                        expiration=Duration.days(30),
                    ),
                ],
            )
            acknowledge(
                bucket,
                {
                    "HIPAA.Security-S3BucketReplicationEnabled": (
                        "Cross-region replication needs a bucket and key in a second region, chosen per "
                        "deployment; versioning and retention protect against loss within the region."
                    )
                },
            )
            self.buckets[spec.settings_field] = bucket

    def _customer_key(self, construct_id: str, description: str) -> kms.Key:
        return kms.Key(
            self,
            construct_id,
            description=description,
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    @staticmethod
    def _browser_cors(origins: list[str]) -> s3.CorsRule:
        return s3.CorsRule(
            allowed_methods=[
                s3.HttpMethods.POST,
                s3.HttpMethods.PUT,
                s3.HttpMethods.GET,
                s3.HttpMethods.HEAD,
            ],
            allowed_origins=origins,
            allowed_headers=["*"],
            exposed_headers=["ETag"],
            max_age=3000,
        )
