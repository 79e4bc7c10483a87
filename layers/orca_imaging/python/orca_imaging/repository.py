"""Data access: PynamoDB models in, domain errors out.

Every read and write takes the caller's clinic id and uses it as the partition key, so a
lookup can only ever find the caller's own clinic's items. `ClientError` and PynamoDB
errors become `orca_imaging.errors` with `raise ... from e`.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DoesNotExist,
    PutError,
    PynamoDBConnectionError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.transactions import TransactWrite

from orca_imaging.errors import ConflictError, DependencyError, NotFoundError
from orca_imaging.ids import new_event_id
from orca_imaging.models import TABLE_MODELS, AuditEventModel, ImageModel, scoped, utcnow

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action
    from pynamodb.models import Model

    from orca_imaging.settings import TableSettings

_bound: dict[str, str | None] = {}


def bind_tables(settings: TableSettings) -> None:
    """Point every model at its table (and at the local endpoint, if any)."""
    for field, model in TABLE_MODELS.items():
        model.Meta.table_name = getattr(settings, field)
        model.Meta.region = settings.region
        model.Meta.host = settings.endpoint_url
        model._connection = None  # drop a connection bound to an earlier endpoint
    _bound.update(region=settings.region, host=settings.endpoint_url)


def _connection() -> Connection:
    return Connection(region=_bound.get("region"), host=_bound.get("host"))


def _is_condition_failure(error: Exception) -> bool:
    cause = getattr(error, "cause_response_code", None)
    if cause == "ConditionalCheckFailedException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


@contextmanager
def _dynamodb(operation: str) -> Iterator[None]:
    """Turn transport failures into `DependencyError`; conditions are handled by callers."""
    try:
        yield
    except PynamoDBConnectionError as e:
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


def record_audit(**kwargs: Any) -> AuditEventModel:
    event = audit_event(**kwargs)
    with _dynamodb("put audit event"):
        event.save()
    return event


def audit_trail(clinic_id: str, subject_id: str) -> list[AuditEventModel]:
    with _dynamodb("query audit"):
        return list(AuditEventModel.by_subject.query(scoped(clinic_id, subject_id)))


# ---------------------------------------------------------------- images
def get_image(clinic_id: str, image_id: str) -> ImageModel:
    """The caller's clinic's image, or NotFoundError (also for another clinic's id)."""
    try:
        with _dynamodb("get image"):
            return ImageModel.get(clinic_id, image_id, consistent_read=True)
    except DoesNotExist as e:
        raise NotFoundError("image not found") from e


def find_image(clinic_id: str, image_id: str) -> ImageModel | None:
    try:
        return get_image(clinic_id, image_id)
    except NotFoundError:
        return None


def create_image(image: ImageModel, audit: AuditEventModel) -> None:
    """Write a new image and its audit event together; the id must be new."""
    image.refresh_index_keys()
    try:
        with _dynamodb("create image"), TransactWrite(connection=_connection()) as tx:
            tx.save(image, condition=ImageModel.image_id.does_not_exist())
            tx.save(audit)
    except (PutError, TransactWriteError) as e:
        if _is_condition_failure(e):
            raise ConflictError("image id already exists") from e
        raise DependencyError("DynamoDB create image failed") from e


def transition_image(
    image: ImageModel, audit: AuditEventModel, *, expected: Condition | None = None, **changes: Any
) -> bool:
    """Apply `changes` to `image` and write them with `audit`, in one transaction.

    The write is conditional on the item's version (optimistic locking) and on `expected`.
    Returns False, writing nothing, when the condition no longer holds: the caller re-reads
    and decides (for a redelivered event that means "already done").
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
        with _dynamodb("update image"), TransactWrite(connection=_connection()) as tx:
            tx.update(image, actions=actions, condition=expected)
            tx.save(audit)
    except (UpdateError, TransactWriteError) as e:
        if _is_condition_failure(e):
            return False
        raise DependencyError("DynamoDB update image failed") from e
    return True


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_models() -> tuple[type[Model], ...]:
    return tuple(TABLE_MODELS.values())
