"""DynamoDB tables, built from the PynamoDB models' own schema (`resources.TABLES`)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.nag import acknowledge, managed_policy_finding
from orca_imaging.resources import TABLES, KeyAttribute

_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}


def _attribute(key: KeyAttribute | None) -> dynamodb.Attribute | None:
    return dynamodb.Attribute(name=key.name, type=_TYPES[key.type]) if key else None


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in TABLES:
            table = dynamodb.Table(
                self,
                spec.construct_id,
                partition_key=_attribute(spec.partition),  # type: ignore[arg-type]
                sort_key=_attribute(spec.sort),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                deletion_protection=True,
                removal_policy=RemovalPolicy.RETAIN,
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.partition),  # type: ignore[arg-type]
                    sort_key=_attribute(index.sort),
                    projection_type=_PROJECTIONS[index.projection],
                )
            self.tables[spec.settings_field] = table

        vault = backup.BackupVault(self, "Vault", encryption_key=key, removal_policy=RemovalPolicy.RETAIN)
        plan = backup.BackupPlan.daily_weekly_monthly5_year_retention(self, "Backups", vault)
        selection = plan.add_selection(
            "Tables", resources=[backup.BackupResource.from_dynamo_db_table(t) for t in self.tables.values()]
        )
        acknowledge(
            selection,
            {
                managed_policy_finding("service-role/AWSBackupServiceRolePolicyForBackup"): (
                    "AWS Backup's own service role policy, required for it to snapshot the tables."
                )
            },
        )
