"""Typed settings, one model per entry point, validated at start.

Resource names have no default: a function deployed without its table or bucket fails at
import with a `ConfigurationError` naming the variable, instead of writing somewhere else.
Limits and tunables do have defaults, documented in the README's configuration table.

Each field `name` is read from `ORCA_NAME` (or its alias). Plain pydantic models and a
ten-line reader, not pydantic-settings: that package imports every source it supports
(Azure Key Vault, AWS Secrets Manager, dotenv...) at import, ~30 ms of each cold start.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orca_imaging.errors import ConfigurationError

ENV_PREFIX = "ORCA_"


class AwsSettings(BaseModel):
    """Where the AWS APIs are. `endpoint_url` is set only by the embedded local stack."""

    model_config = ConfigDict(frozen=True)

    region: str = Field(validation_alias="AWS_REGION")
    endpoint_url: str | None = None


class TableSettings(AwsSettings):
    images_table: str
    audit_table: str
    patients_table: str
    batches_table: str
    clinics_table: str
    dicom_nodes_table: str
    worklist_table: str
    pacs_retrieves_table: str


class StorageSettings(TableSettings):
    originals_bucket: str
    derived_bucket: str
    kms_key_id: str


class DicomIdentity(BaseModel):
    """Our AE title: what devices call, and how we call a PACS and name ourselves as the
    destination of its C-MOVE."""

    ae_title: str = Field(default="ORCA", min_length=1, max_length=16)


class PacsSettings(StorageSettings, DicomIdentity):
    """The pacs_retrieve consumer: our SCU against a clinic's PACS."""

    # How long to wait for each of the PACS's answers; a C-MOVE or C-GET answers once per
    # object it sends.
    pacs_timeout_seconds: int = Field(default=10, gt=0)


class ApiSettings(PacsSettings):
    """The upload_url function. It runs PACS queries itself (within API Gateway's 29 s) and
    queues retrieves, which can take far longer."""

    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    # Time to upload = fixed allowance + size / slowest link we plan for.
    upload_ttl_base_seconds: int = Field(default=300, gt=0)
    upload_min_bytes_per_second: int = Field(default=256 * 1024, gt=0)
    upload_ttl_max_seconds: int = Field(default=12 * 3600, gt=0)
    view_url_ttl_seconds: int = Field(default=300, gt=0, le=3600)
    batch_state_machine_arn: str
    max_batch_files: int = Field(default=1000, gt=0, le=1000)
    # How long a batch waits for files that were never uploaded before failing them.
    batch_upload_timeout_seconds: int = Field(default=6 * 3600, gt=0)
    batch_poll_seconds: int = Field(default=10, gt=0)
    # Files above this go up in parts (CBCT archives, big scans); S3's minimum part is 5 MiB.
    multipart_threshold_bytes: int = Field(default=100 * 1024**2, ge=5 * 1024**2)
    multipart_part_bytes: int = Field(default=16 * 1024**2, ge=5 * 1024**2)
    pacs_retrieve_queue_url: str


class ConsumerSettings(StorageSettings):
    """The SQS consumers."""

    event_bus_name: str
    # Below this quality score a photo is flagged `needsRetake` and RetakeNeeded is sent.
    retake_threshold: float = Field(default=40.0, ge=0, le=100)
    # A CBCT series with no new slice for this long is complete (Orthanc's StableAge is 60).
    series_stable_seconds: int = Field(default=90, gt=0)


class ScpSettings(StorageSettings, DicomIdentity):
    """The DICOM service (Fargate)."""

    dicom_port: int = Field(default=11112, gt=0, lt=65536)
    health_port: int = Field(default=8080, gt=0, lt=65536)
    # On EFS in AWS, so a replaced task finds and drains what the last one acknowledged.
    spool_dir: Path = Path("/spool")
    spool_max_bytes: int = Field(default=20 * 1024**3, gt=0)
    max_associations: int = Field(default=16, gt=0)  # per receiving process
    # Processes receiving on the DICOM ports; 0: one per core the task has.
    receivers: int = Field(default=0, ge=0)
    max_pdu_bytes: int = Field(default=128 * 1024, ge=4096)
    stop_timeout_seconds: int = Field(default=100, gt=0)  # within ECS's stopTimeout (120 s)
    # DICOM TLS, on when a certificate is set: PEM text (from Secrets Manager in AWS). With a
    # client CA, a device must also present a certificate that CA signed.
    tls_port: int = Field(default=2762, ge=0, lt=65536)
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_client_ca: str | None = None


SettingsT = TypeVar("SettingsT", bound=AwsSettings)


def env_names(settings_type: type[AwsSettings]) -> dict[str, str]:
    """Each field's validation key (its alias, else its name) and the variable it is read from."""
    names = {}
    for field, info in settings_type.model_fields.items():
        alias = info.validation_alias
        names[field if alias is None else str(alias)] = (
            ENV_PREFIX + field.upper() if alias is None else str(alias)
        )
    return names


@cache
def load(settings_type: type[SettingsT]) -> SettingsT:
    """Build and validate one settings model from the environment, once per process."""
    names = env_names(settings_type)
    try:
        return settings_type.model_validate(
            {key: os.environ[variable] for key, variable in names.items() if variable in os.environ}
        )
    except ValidationError as e:
        missing = sorted(names.get(str(err["loc"][0]), str(err["loc"][0])) for err in e.errors())
        raise ConfigurationError(
            f"invalid or missing settings for {settings_type.__name__}: {', '.join(missing)}"
        ) from e
