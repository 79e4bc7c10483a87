"""The one list of what the system is made of: tables, buckets, queues, functions, routes.

The CDK constructs (`infra/`) and the embedded local stack (`orca_imaging.local`) both
build from this module, so what runs on a laptop is what is deployed. Table key schemas
are read from the PynamoDB models themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orca_imaging.keys import INTAKE_PREFIX
from orca_imaging.models import TABLE_MODELS
from orca_imaging.settings import ApiSettings, AwsSettings, ConsumerSettings, PacsSettings

if TYPE_CHECKING:
    from pynamodb.models import Model


# ---------------------------------------------------------------- tables
@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: Literal["S", "N", "B"]


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition: KeyAttribute
    sort: KeyAttribute | None
    projection: Literal["ALL", "KEYS_ONLY"]


@dataclass(frozen=True)
class TableSpec:
    construct_id: str
    settings_field: str
    partition: KeyAttribute
    sort: KeyAttribute | None
    indexes: tuple[IndexSpec, ...]


def _key(schema: Any, key_schema: Any, kind: str) -> KeyAttribute | None:
    types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    for element in key_schema:
        if element["KeyType"] == kind:
            return KeyAttribute(element["AttributeName"], types[element["AttributeName"]])
    return None


def table_spec(settings_field: str, model: type[Model]) -> TableSpec:
    """A table's keys and global indexes, exactly as the PynamoDB model declares them."""
    schema = model._get_schema()
    partition = _key(schema, schema["key_schema"], "HASH")
    assert partition is not None
    indexes = tuple(
        IndexSpec(
            name=gsi["index_name"],
            partition=_key(schema, gsi["key_schema"], "HASH"),  # type: ignore[arg-type]
            sort=_key(schema, gsi["key_schema"], "RANGE"),
            projection=gsi["projection"]["ProjectionType"],  # type: ignore[arg-type]
        )
        for gsi in sorted(schema.get("global_secondary_indexes", []), key=lambda g: g["index_name"])
    )
    construct_id = "".join(part.title() for part in settings_field.removesuffix("_table").split("_"))
    return TableSpec(
        construct_id=f"{construct_id}Table",
        settings_field=settings_field,
        partition=partition,
        sort=_key(schema, schema["key_schema"], "RANGE"),
        indexes=indexes,
    )


TABLES: tuple[TableSpec, ...] = tuple(table_spec(f, m) for f, m in TABLE_MODELS.items())


# ---------------------------------------------------------------- buckets
@dataclass(frozen=True)
class BucketSpec:
    construct_id: str
    settings_field: str
    # Browsers upload straight to this bucket with presigned POSTs and multipart PUTs.
    browser_upload: bool


BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec("OriginalsBucket", "originals_bucket", browser_upload=True),
    BucketSpec("DerivedBucket", "derived_bucket", browser_upload=False),
)


# ---------------------------------------------------------------- functions
@dataclass(frozen=True)
class FunctionSpec:
    name: str  # the folder under functions/
    entry: str  # module:callable
    settings: type[AwsSettings]
    memory_mb: int
    timeout_seconds: int
    description: str
    calls_pacs: bool = False  # PACS query/retrieve: network egress to the clinics' VPN
    folder: str = ""  # under functions/, when it shares another function's; else its name

    @property
    def code_folder(self) -> str:
        return self.folder or self.name

    @property
    def handler(self) -> str:
        """Lambda's dotted handler string."""
        module, func = self.entry.split(":")
        return f"{module}.{func}"


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        name="upload_url",
        entry="functions.upload_url.handler:lambda_handler",
        settings=ApiSettings,
        memory_mb=512,
        timeout_seconds=29,  # API Gateway's own limit: a PACS query may take it
        description="Imaging API: upload targets, batches, records",
        calls_pacs=True,
    ),
    FunctionSpec(
        name="process_image",
        entry="functions.process_image.handler:lambda_handler",
        settings=ConsumerSettings,
        memory_mb=1769,  # one full vCPU; see README, "Lambda sizing"
        timeout_seconds=120,
        description="Intake consumer: receives, validates and processes originals",
    ),
    FunctionSpec(
        name="dicom_ingest",
        entry="functions.dicom_ingest.handler:lambda_handler",
        settings=ConsumerSettings,
        memory_mb=1769,  # builds a CBCT slice by slice: one vCPU, memory for one slice + planes
        timeout_seconds=900,
        description="Scheduled: builds CBCT volumes whose series has gone quiet",
    ),
    FunctionSpec(
        name="pacs_retrieve",
        folder="dicom_ingest",  # DICOM coming in, from a PACS
        entry="functions.dicom_ingest.retrieve:lambda_handler",
        settings=PacsSettings,
        memory_mb=1024,  # a C-GET holds one object at a time, up to a CBCT archive's slice
        timeout_seconds=900,  # a study of hundreds of objects: Lambda's limit, not the API's 29 s
        description="Runs queued PACS retrieves (C-MOVE to us, or C-GET into S3)",
        calls_pacs=True,
    ),
)


def function(name: str) -> FunctionSpec:
    return next(f for f in FUNCTIONS if f.name == name)


# ---------------------------------------------------------------- queues
@dataclass(frozen=True)
class QueueSpec:
    construct_id: str
    consumer: str  # a FunctionSpec name
    batch_size: int
    max_receive_count: int
    # Fed by a bucket's ObjectCreated events under a prefix...
    bucket_field: str | None = None
    prefix: str = ""
    # ...or by functions, which find its URL in this settings field.
    url_field: str | None = None
    senders: tuple[str, ...] = ()
    # AWS advises a visibility timeout of at least six times the consumer's timeout.
    visibility_timeout_seconds: int = field(default=0)
    # The metric the consumer adds when, on a message's last receive, it settles the work
    # as failed rather than let SQS dead-letter it: alarmed like a dead letter.
    gave_up_metric: str | None = None

    def visibility_timeout(self) -> int:
        return self.visibility_timeout_seconds or 6 * function(self.consumer).timeout_seconds


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        construct_id="Intake",
        consumer="process_image",
        bucket_field="originals_bucket",
        prefix=INTAKE_PREFIX,
        batch_size=10,
        max_receive_count=5,
        # A file whose processing fails on every receive is rejected `processing_failed` on
        # the last: dead-lettered, it would stay PROCESSING, and its batch never complete.
        gave_up_metric="ProcessingFailed",
    ),
    QueueSpec(
        construct_id="PacsRetrieves",
        consumer="pacs_retrieve",
        url_field="pacs_retrieve_queue_url",
        senders=("upload_url",),
        batch_size=1,  # each retrieve takes its own invocation's 15 minutes
        # A PACS that cannot be reached fails the retrieve on the record, not the message:
        # only an unexpected error is tried again, and on the last receive it fails it too.
        max_receive_count=2,
        gave_up_metric="PacsRetrieveErrors",
    ),
)


def queue_feeding(consumer: str) -> QueueSpec:
    """The queue whose messages `consumer` (a FunctionSpec name) receives."""
    return next(spec for spec in QUEUES if spec.consumer == consumer)


# ---------------------------------------------------------------- API
API_BASE = "/api/imaging"


@dataclass(frozen=True)
class RouteSpec:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str  # API Gateway style: /api/imaging/images/{id}
    function: str  # a FunctionSpec name


ROUTES: tuple[RouteSpec, ...] = tuple(
    RouteSpec(method, f"{API_BASE}{path}", "upload_url")  # type: ignore[arg-type]
    for method, path in (
        ("POST", "/upload"),
        ("POST", "/upload/batch"),
        ("GET", "/upload/batch/{batch_id}"),
        ("DELETE", "/upload/batch/{batch_id}"),
        ("GET", "/upload/{image_id}/parts"),
        ("POST", "/upload/{image_id}/parts"),
        ("POST", "/upload/{image_id}/complete"),
        ("DELETE", "/upload/{image_id}"),
        ("POST", "/dicom/import"),
        ("POST", "/3d/import"),
        ("GET", "/dicom/pending"),
        ("POST", "/dicom/match"),
        ("GET", "/dicom/nodes"),
        ("POST", "/dicom/nodes"),
        ("DELETE", "/dicom/nodes/{ae_title}"),
        ("GET", "/dicom/worklist"),
        ("POST", "/dicom/worklist"),
        ("POST", "/dicom/query"),
        ("POST", "/dicom/retrieve"),
        ("GET", "/dicom/retrieve/{retrieve_id}"),
        ("GET", "/images/{image_id}"),
        ("DELETE", "/images/{image_id}"),
        ("GET", "/patients/{patient_id}/images"),
        ("GET", "/patients/{patient_id}/radiation"),
        ("PUT", "/patients/{patient_id}"),
        ("GET", "/settings"),
        ("PUT", "/settings"),
        ("GET", "/openapi.json"),
    )
)


def settings_env(settings: type[AwsSettings], values: dict[str, str]) -> dict[str, str]:
    """The environment a function needs: every field of its settings that `values` names.

    Raises KeyError for a resource field with no value, so no function is deployed
    or started without, say, its table.
    """
    env: dict[str, str] = {}
    for name, info in settings.model_fields.items():
        if name in ("region", "endpoint_url"):
            continue
        if name in values:
            env[f"ORCA_{name.upper()}"] = values[name]
        elif info.is_required():
            raise KeyError(f"no value for required setting {name}")
    return env


SETTINGS_WITH_RESOURCES = (ApiSettings, ConsumerSettings, PacsSettings)


# ---------------------------------------------------------------- state machines
DEFINITIONS = Path(__file__).with_name("definitions")


@dataclass(frozen=True)
class StateMachineSpec:
    construct_id: str
    settings_field: str  # where functions find its ARN
    definition_file: str  # under definitions/
    # ${Placeholder} in the definition -> the settings field whose value replaces it
    substitutions: dict[str, str]

    def definition(self, values: dict[str, str]) -> str:
        """The definition with every placeholder replaced, for a local deploy."""
        text = (DEFINITIONS / self.definition_file).read_text()
        for placeholder, field_name in self.substitutions.items():
            text = text.replace("${" + placeholder + "}", values[field_name])
        return text


STATE_MACHINES: tuple[StateMachineSpec, ...] = (
    StateMachineSpec(
        construct_id="BatchTracker",
        settings_field="batch_state_machine_arn",
        definition_file="batch.asl.json",
        substitutions={
            "BatchesTable": "batches_table",
            "ImagesTable": "images_table",
            "EventBusName": "event_bus_name",
        },
    ),
)


# ---------------------------------------------------------------- schedules
@dataclass(frozen=True)
class ScheduleSpec:
    construct_id: str
    function: str  # a FunctionSpec name
    rate_seconds: int
    # The metric the function adds for an item of work that failed and is left for the next
    # run: persisting, it is an item that will never be done (alarmed, with the function's
    # own errors).
    error_metric: str | None = None


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("SeriesSweep", "dicom_ingest", rate_seconds=60, error_metric="VolumeBuildErrors"),
)
