"""Data access: PynamoDB models in, domain errors out.

Every read and write takes the caller's clinic id and uses it as the partition key, so a
lookup can only ever find the caller's own clinic's items. `ClientError` and PynamoDB
errors become `orca_imaging.errors` with `raise ... from e`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    PynamoDBConnectionError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.transactions import TransactWrite

from orca_imaging.errors import ConflictError, DependencyError, NotFoundError
from orca_imaging.ids import new_event_id
from orca_imaging.models import (
    TABLE_MODELS,
    AuditEventModel,
    BatchModel,
    ClinicSettingsModel,
    DicomNodeModel,
    ImageModel,
    PacsRetrieveModel,
    PatientModel,
    WorklistEntryModel,
    scoped,
    utcnow,
)
from orca_imaging.nodes import DicomNode

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action
    from pynamodb.models import Model

    from orca_imaging.auth import Principal
    from orca_imaging.settings import TableSettings

_bound: dict[str, str | None] = {}
# One connection for transactions, like the models' own: building one builds a botocore
# client (~0.1 s), which must not happen per write.
_transactions: list[Connection] = []


def bind_tables(settings: TableSettings) -> None:
    """Point every model at its table (and at the local endpoint, if any)."""
    for field, model in TABLE_MODELS.items():
        model.Meta.table_name = getattr(settings, field)
        model.Meta.region = settings.region
        model.Meta.host = settings.endpoint_url
        model._connection = None  # drop a connection bound to an earlier endpoint
    _bound.update(region=settings.region, host=settings.endpoint_url)
    _transactions.clear()


def _connection() -> Connection:
    if not _transactions:
        _transactions.append(Connection(region=_bound.get("region"), host=_bound.get("host")))
    return _transactions[0]


def _is_condition_failure(error: Exception) -> bool:
    cause = getattr(error, "cause_response_code", None)
    if cause == "ConditionalCheckFailedException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


@contextmanager
def dynamodb(operation: str) -> Iterator[None]:
    """Turn transport failures into `DependencyError`. Only a failed condition leaves as the
    PynamoDB error it was (PutError, UpdateError, DeleteError, TransactWriteError...), for
    the caller to say what it means."""
    try:
        yield
    except (PynamoDBConnectionError, TransactWriteError) as e:
        if _is_condition_failure(e):
            raise
        raise DependencyError(f"DynamoDB {operation} failed") from e


# ---------------------------------------------------------------- audit
def audit_event(
    *,
    clinic_id: str,
    action: str,
    actor: str,
    subject_type: str,
    subject_id: str,
    correlation_id: str | None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEventModel:
    """An audit item, not yet written (so it can join a transaction)."""
    when = at or utcnow()
    return AuditEventModel(
        clinic_id=clinic_id,
        event_id=f"{when.isoformat()}#{new_event_id()}",
        action=action,
        actor=actor,
        subject_type=subject_type,
        subject_id=subject_id,
        subject_key=scoped(clinic_id, subject_id),
        at=when,
        correlation_id=correlation_id,
        details=details,
    )


def caller_audit(
    principal: Principal, action: str, subject: tuple[str, str], **kwargs: Any
) -> AuditEventModel:
    """An audit item for something the calling user did, in their clinic."""
    return audit_event(
        clinic_id=principal.clinic_id,
        action=action,
        actor=principal.user_id,
        subject_type=subject[0],
        subject_id=subject[1],
        **kwargs,
    )


def system_audit(
    clinic_id: str, image_id: str, action: str, actor: str, correlation_id: str | None, **kwargs: Any
) -> AuditEventModel:
    """An audit item for something the pipeline itself did to an image."""
    return audit_event(
        clinic_id=clinic_id,
        action=action,
        actor=actor,
        subject_type="image",
        subject_id=image_id,
        correlation_id=correlation_id,
        **kwargs,
    )


def record_caller_audit(principal: Principal, action: str, subject: tuple[str, str], **kwargs: Any) -> None:
    record_audit_event(caller_audit(principal, action, subject, **kwargs))


def audit_trail(clinic_id: str, subject_id: str) -> list[AuditEventModel]:
    with dynamodb("query audit"):
        return list(AuditEventModel.by_subject.query(scoped(clinic_id, subject_id)))


# ---------------------------------------------------------------- items of one clinic
_Item = TypeVar("_Item", bound="Model")


def _clinic_item(
    model: type[_Item], clinic_id: str, item_id: str, subject_type: str, *, consistent_read: bool = True
) -> _Item:
    """The clinic's item, or NotFoundError, also for another clinic's id: the clinic is the
    partition key, so another's item is never read. `subject_type` names it in the audit."""
    try:
        with dynamodb(f"get {subject_type}"):
            return model.get(clinic_id, item_id, consistent_read=consistent_read)
    except DoesNotExist as e:
        raise NotFoundError(
            f"{subject_type.replace('_', ' ')} not found", subject=(subject_type, item_id)
        ) from e


# ---------------------------------------------------------------- images
def get_image(clinic_id: str, image_id: str) -> ImageModel:
    return _clinic_item(ImageModel, clinic_id, image_id, "image")


def find_image(clinic_id: str, image_id: str) -> ImageModel | None:
    try:
        return get_image(clinic_id, image_id)
    except NotFoundError:
        return None


def create_image(image: ImageModel, audit: AuditEventModel) -> None:
    """Write a new image and its audit event together; the id must be new."""
    image.refresh_index_keys()
    try:
        with dynamodb("create image"), TransactWrite(connection=_connection()) as tx:
            tx.save(image, condition=ImageModel.image_id.does_not_exist())
            tx.save(audit)
    except (PutError, TransactWriteError) as e:
        raise ConflictError("image id already exists") from e


def create_or_get_image(image: ImageModel) -> ImageModel:
    """Write `image` if its id is new; otherwise the record already there (another delivery
    made it first)."""
    image.refresh_index_keys()
    try:
        with dynamodb("create image"):
            image.save(condition=ImageModel.image_id.does_not_exist())
    except PutError:
        return get_image(image.clinic_id, image.image_id)
    return image


def transition_image(
    image: ImageModel,
    audit: AuditEventModel,
    *,
    expected: Condition | None = None,
    count_in_batch: str | None = None,
    **changes: Any,
) -> bool:
    """Apply `changes` to `image` and write them with `audit`, in one transaction.

    The write is conditional on the item's version (optimistic locking) and on `expected`.
    Returns False, writing nothing, when the condition no longer holds: the caller re-reads
    and decides (for a redelivered event that means "already done").

    `count_in_batch` ("succeeded" or "failed") adds one to the image's batch counter in the
    same transaction: the count moves only if the image does, so it never counts twice.
    """
    for name, value in changes.items():
        setattr(image, name, value)
    image.updated_at = utcnow()
    image.refresh_index_keys()
    attributes = image.get_attributes()
    # Only the named fields, the timestamps and the index keys derived from them.
    touched = set(changes) | {
        "updated_at",
        "patient_key",
        "captured_at_key",
        "sha_key",
        "sop_key",
        "study_key",
        "status_key",
        "updated_at_key",
        "batch_key",
    }
    actions: list[Action] = [
        attributes[name].set(value)
        if (value := getattr(image, name)) is not None
        else attributes[name].remove()
        for name in sorted(touched)
    ]
    try:
        with dynamodb("update image"), TransactWrite(connection=_connection()) as tx:
            tx.update(image, actions=actions, condition=expected)
            tx.save(audit)
            if count_in_batch and image.batch_id:
                counter = (
                    BatchModel.succeeded_count if count_in_batch == "succeeded" else BatchModel.failed_count
                )
                tx.update(
                    BatchModel(image.clinic_id, image.batch_id),
                    actions=[counter.add(1), BatchModel.updated_at.set(utcnow())],
                    condition=BatchModel.batch_id.exists(),
                )
    except (UpdateError, TransactWriteError):
        return False
    return True


# States in which an earlier file counts as "already stored" for duplicate detection.
_KEPT = {"ACTIVE", "PENDING_MATCH", "ARCHIVED"}


def first_with_sha256(clinic_id: str, sha256: str, *, excluding: str | None = None) -> ImageModel | None:
    """The earliest kept image in the clinic with these exact bytes (ULIDs sort by age)."""
    with dynamodb("query sha256 index"):
        keys = [
            k.image_id
            for k in ImageModel.by_sha256.query(scoped(clinic_id, sha256))
            if k.image_id != excluding
        ]
    for image_id in sorted(keys):
        image = find_image(clinic_id, image_id)
        if image is not None and image.status in _KEPT:
            return image
    return None


def images_with_sop_instance(clinic_id: str, instance_uid: str, *, excluding: str) -> list[ImageModel]:
    """The clinic's kept images of this SOP Instance UID, other than `excluding`."""
    with dynamodb("query SOP instance index"):
        keys = [k.image_id for k in ImageModel.by_sop_instance.query(scoped(clinic_id, instance_uid))]
    found = (find_image(clinic_id, image_id) for image_id in sorted(keys) if image_id != excluding)
    return [image for image in found if image is not None and image.status in _KEPT]


def images_of_study(clinic_id: str, study_uid: str) -> list[ImageModel]:
    """The clinic's kept images of one study."""
    with dynamodb("query study index"):
        keys = [k.image_id for k in ImageModel.by_study.query(scoped(clinic_id, study_uid))]
    found = (find_image(clinic_id, image_id) for image_id in sorted(keys))
    return [image for image in found if image is not None and image.status in _KEPT]


def verified_patient_of_study(clinic_id: str, study_uid: str) -> str | None:
    """The patient a person linked this study to, if someone did."""
    for image in images_of_study(clinic_id, study_uid):
        if image.match_verified_by and image.patient_id:
            return image.patient_id
    return None


def images_with_status(clinic_id: str, status: str, *, limit: int) -> list[ImageModel]:
    """The clinic's images in one status, most recently updated first."""
    with dynamodb("query status index"):
        keys = [
            k.image_id
            for k in ImageModel.by_status.query(
                scoped(clinic_id, status), scan_index_forward=False, limit=limit
            )
        ]
    found = (find_image(clinic_id, image_id) for image_id in keys)
    return [image for image in found if image is not None and image.status == status]


def clinic_patients(clinic_id: str) -> list[PatientModel]:
    """The clinic's whole registry replica (a few thousand items at most per clinic)."""
    with dynamodb("query patients"):
        return list(PatientModel.query(clinic_id))


def quiet_open_series(open_key: str, quiet_since: str) -> list[ImageModel]:
    """Open CBCT volumes, in every clinic, whose last slice came before `quiet_since`.
    For the system's scheduled sweep only: each volume is then handled in its own clinic."""
    with dynamodb("query open series"):
        keys = [
            (k.clinic_id, k.image_id)
            for k in ImageModel.open_series.query(open_key, ImageModel.last_slice_at_key < quiet_since)
        ]
    found = (find_image(clinic_id, image_id) for clinic_id, image_id in keys)
    return [volume for volume in found if volume is not None]


def close_series(volume: ImageModel) -> None:
    """Take a volume off the open list (it could not be built; its slices stay)."""
    with dynamodb("close series"):
        volume.update(actions=[ImageModel.series_open_key.remove(), ImageModel.last_slice_at_key.remove()])


def add_warning(image: ImageModel, warning: str) -> None:
    """Add a warning to a finished record (e.g. a conflict found by a later object)."""
    if warning in (image.warnings or []):
        return
    with dynamodb("add a warning"):
        image.update(actions=[ImageModel.warnings.set((image.warnings or []) + [warning])])


def patient_images_with_dose(clinic_id: str, patient_id: str) -> list[ImageModel]:
    """The patient's kept images that record a dose, oldest first. A duplicate is the same
    exposure again, so it is left out."""
    with dynamodb("query patient images"):
        images = ImageModel.by_patient.query(
            scoped(clinic_id, patient_id), filter_condition=ImageModel.radiation_dose.exists()
        )
        return [i for i in images if i.status in _KEPT and not i.duplicate_of]


def patient_fingerprints(clinic_id: str, patient_id: str, *, limit: int = 1000) -> dict[str, str]:
    """Image id -> perceptual hash of the patient's kept photos, newest first."""
    with dynamodb("query patient images"):
        images = ImageModel.by_patient.query(
            scoped(clinic_id, patient_id), scan_index_forward=False, limit=limit
        )
        return {i.image_id: i.perceptual_hash for i in images if i.perceptual_hash and i.status in _KEPT}


def images_in_batch(clinic_id: str, batch_id: str) -> list[ImageModel]:
    with dynamodb("query batch images"):
        return list(ImageModel.by_batch.query(scoped(clinic_id, batch_id)))


def put_images(images: list[ImageModel], audit: AuditEventModel) -> None:
    """Write many new images (ids are fresh ULIDs) and one audit event, in batched writes."""
    with dynamodb("write images"), ImageModel.batch_write() as writer:
        for image in images:
            image.refresh_index_keys()
            writer.save(image)
    record_audit_event(audit)


def record_audit_event(event: AuditEventModel) -> None:
    with dynamodb("put audit event"):
        event.save()


# ---------------------------------------------------------------- patients
def get_patient(clinic_id: str, patient_id: str) -> PatientModel:
    # A replica the PMS sync writes: an eventually consistent read is enough.
    return _clinic_item(PatientModel, clinic_id, patient_id, "patient", consistent_read=False)


def save_patient(patient: PatientModel) -> None:
    patient.chart_key = scoped(patient.clinic_id, patient.chart_number) if patient.chart_number else None
    patient.updated_at = utcnow()
    with dynamodb("put patient"):
        patient.save()


def patient_with_chart(clinic_id: str, chart_number: str) -> PatientModel | None:
    """The clinic's patient with this chart number, if exactly one has it."""
    with dynamodb("query chart index"):
        found = list(PatientModel.by_chart.query(scoped(clinic_id, chart_number), limit=2))
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- DICOM nodes
_NODES_TTL_SECONDS = 10.0
_nodes_cache: tuple[float, dict[str, DicomNode]] | None = None


def dicom_nodes() -> dict[str, DicomNode]:
    """Every registered node by calling AE title, read at most every few seconds: the DICOM
    service asks at each association, and a change counts within the TTL."""
    global _nodes_cache
    now = time.monotonic()
    if _nodes_cache is None or now - _nodes_cache[0] > _NODES_TTL_SECONDS:
        with dynamodb("scan DICOM nodes"):
            nodes = {n.ae_title: DicomNode(n.ae_title, n.clinic_id, n.cidr) for n in DicomNodeModel.scan()}
        _nodes_cache = (now, nodes)
    return _nodes_cache[1]


def forget_dicom_nodes() -> None:
    global _nodes_cache
    _nodes_cache = None


def clinic_dicom_nodes(clinic_id: str) -> list[DicomNodeModel]:
    with dynamodb("scan DICOM nodes"):
        return [n for n in DicomNodeModel.scan(DicomNodeModel.clinic_id == clinic_id)]


def get_clinic_dicom_node(clinic_id: str, ae_title: str) -> DicomNodeModel:
    """The clinic's node with this AE title, or NotFoundError (also for another clinic's)."""
    try:
        with dynamodb("get DICOM node"):
            node = DicomNodeModel.get(ae_title)
    except DoesNotExist:
        node = None
    if node is None or node.clinic_id != clinic_id:
        raise NotFoundError("DICOM node not found", subject=("dicom_node", ae_title))
    return node


def put_dicom_node(node: DicomNodeModel) -> None:
    """Register a node; a title another clinic (or this one) already has is a conflict."""
    try:
        with dynamodb("put DICOM node"):
            node.save(condition=DicomNodeModel.ae_title.does_not_exist())
    except PutError as e:
        raise ConflictError("this AE title is already registered") from e
    forget_dicom_nodes()


def delete_dicom_node(clinic_id: str, ae_title: str) -> None:
    try:
        with dynamodb("delete DICOM node"):
            DicomNodeModel(ae_title=ae_title, clinic_id=clinic_id).delete(
                condition=DicomNodeModel.clinic_id == clinic_id
            )
    except DeleteError as e:
        raise NotFoundError("DICOM node not found", subject=("dicom_node", ae_title)) from e
    forget_dicom_nodes()


# ---------------------------------------------------------------- clinic settings
def clinic_settings(clinic_id: str) -> ClinicSettingsModel:
    """The clinic's settings, or the defaults when its admin has set none."""
    try:
        with dynamodb("get clinic settings"):
            return ClinicSettingsModel.get(clinic_id)
    except DoesNotExist:
        return ClinicSettingsModel(clinic_id=clinic_id)


def save_clinic_settings(settings: ClinicSettingsModel) -> None:
    settings.updated_at = utcnow()
    with dynamodb("put clinic settings"):
        settings.save()


# ---------------------------------------------------------------- batches
def get_batch(clinic_id: str, batch_id: str) -> BatchModel:
    return _clinic_item(BatchModel, clinic_id, batch_id, "batch")


def create_batch(batch: BatchModel) -> None:
    with dynamodb("create batch"):
        batch.save(condition=BatchModel.batch_id.does_not_exist())


def update_batch(batch: BatchModel, actions: list[Action], condition: Condition | None = None) -> bool:
    try:
        with dynamodb("update batch"):
            batch.update(actions=actions, condition=condition)
    except UpdateError:
        return False
    return True


# ---------------------------------------------------------------- PACS retrieves
def get_pacs_retrieve(clinic_id: str, retrieve_id: str) -> PacsRetrieveModel:
    return _clinic_item(PacsRetrieveModel, clinic_id, retrieve_id, "pacs_retrieve")


def save_pacs_retrieve(retrieve: PacsRetrieveModel) -> None:
    retrieve.updated_at = utcnow()
    with dynamodb("save PACS retrieve"):
        retrieve.save()


# ---------------------------------------------------------------- worklist
def put_worklist_entry(entry: WorklistEntryModel) -> None:
    with dynamodb("put worklist entry"):
        entry.save(WorklistEntryModel.scheduled_key.does_not_exist())


def worklist_entries(clinic_id: str, first: str, last: str) -> list[WorklistEntryModel]:
    """The clinic's entries scheduled from `first` to `last` (YYYYMMDDHHMMSS, inclusive)."""
    with dynamodb("query worklist"):
        return list(
            WorklistEntryModel.query(clinic_id, WorklistEntryModel.scheduled_key.between(first, last + "~"))
        )
