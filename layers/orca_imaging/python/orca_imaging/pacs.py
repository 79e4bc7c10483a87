"""PACS query and retrieve: our SCU against a PACS the clinic has registered as a DICOM node
with a host and port (`dicom_nodes.py`), for an admin bringing old studies in.

- Query: a Study Root C-FIND at study or series level, by patient name (a prefix unless it
  has wildcards of its own) or ID, study date range and modality.
- Retrieve by C-MOVE: the PACS sends the study to our AE title, as it would to any
  destination it knows; it calls our DICOM service as the node it is registered as, so what
  arrives takes the device path (spool, drainer, ingest) into the node's clinic.
- Retrieve by C-GET, for a PACS that cannot call us back: the objects come back on our own
  association, and each is in S3 (`originals.py`) before we acknowledge it, so nothing the
  PACS counts as sent is only in memory.

Either way what arrives flows through the DICOM ingest pipeline, and an object the clinic
already has is "already stored", not a second record. Every query and retrieve is audited on
the node; logs carry AE titles, UIDs and counts, never the patient data a query matches.

A query answers within the API's request. A retrieve is queued instead: a study of hundreds
of objects takes longer than API Gateway's 29 s, so the API records it (QUEUED) and answers
202 with its id; the pacs_retrieve consumer runs it (RUNNING) and records the PACS's counts
(COMPLETED) or why it could not (FAILED); the admin follows it by id. Delivery is at least
once: a finished retrieve delivered again is left as it is, and one whose run died is run
again, which stores nothing twice.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from orca_imaging import clients, repository
from orca_imaging.bodies import RequestBody
from orca_imaging.dicom_nodes import AE_TITLE
from orca_imaging.errors import BadRequestError, DependencyError, NotFoundError, RemoteNodeError
from orca_imaging.ids import UID_PATTERN, new_id
from orca_imaging.models import PacsRetrieveModel
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from orca_imaging.auth import Principal
    from orca_imaging.models import DicomNodeModel
    from orca_imaging.settings import ApiSettings, PacsSettings

MAX_MATCHES = 500


class QueryRequest(RequestBody):
    node: str = Field(pattern=AE_TITLE, description="the PACS: a DICOM node with a host and port")
    level: Literal["STUDY", "SERIES"] = "STUDY"
    patient_name: str | None = Field(default=None, alias="patientName", max_length=64)
    patient_id: str | None = Field(default=None, alias="patientId", max_length=64)
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    modality: str | None = Field(default=None, pattern=r"^[A-Z]{2,4}$")
    study_instance_uid: str | None = Field(
        default=None, alias="studyInstanceUid", pattern=UID_PATTERN, max_length=64
    )

    @model_validator(mode="after")
    def _series_of_a_study(self) -> QueryRequest:
        if self.level == "SERIES" and self.study_instance_uid is None:
            raise ValueError("a series query names its study (studyInstanceUid)")
        return self


class RetrieveRequest(RequestBody):
    node: str = Field(pattern=AE_TITLE)
    study_instance_uid: str = Field(alias="studyInstanceUid", pattern=UID_PATTERN, max_length=64)
    series_instance_uid: str | None = Field(
        default=None, alias="seriesInstanceUid", pattern=UID_PATTERN, max_length=64
    )
    method: Literal["move", "get"] = Field(
        default="move", description="`get` for a PACS that cannot open a connection to us"
    )


class RetrieveStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def query(
    principal: Principal, request: QueryRequest, settings: ApiSettings, *, correlation_id: str | None
) -> dict[str, Any]:
    node = _pacs(principal.clinic_id, request.node)
    from orca_imaging import pacs_scu  # pynetdicom loads here, not at the API's cold start

    found = pacs_scu.find(node, settings, request)
    repository.record_caller_audit(
        principal,
        "PACS_QUERIED",
        ("dicom_node", node.ae_title),
        details={"level": request.level, "matches": len(found)},
        correlation_id=correlation_id,
    )
    logger.info("PACS queried", extra={"node": node.ae_title, "level": request.level, "matches": len(found)})
    return {"level": request.level, "matches": found[:MAX_MATCHES], "truncated": len(found) > MAX_MATCHES}


def retrieve(
    principal: Principal, request: RetrieveRequest, settings: ApiSettings, *, correlation_id: str | None
) -> dict[str, Any]:
    """Queue a retrieve from the clinic's PACS; its record, QUEUED."""
    node = _pacs(principal.clinic_id, request.node)
    job = PacsRetrieveModel(
        clinic_id=principal.clinic_id,
        retrieve_id=new_id("ret"),
        node=node.ae_title,
        study_instance_uid=request.study_instance_uid,
        series_instance_uid=request.series_instance_uid,
        method=request.method,
        status=RetrieveStatus.QUEUED,
        correlation_id=correlation_id,
        created_by=principal.user_id,
    )
    repository.save_pacs_retrieve(job)  # before the message: the consumer reads it
    message = {"clinicId": job.clinic_id, "retrieveId": job.retrieve_id, "correlationId": correlation_id}
    try:
        clients.sqs().send_message(QueueUrl=settings.pacs_retrieve_queue_url, MessageBody=json.dumps(message))
    except (BotoCoreError, ClientError) as e:
        _finish(job, RetrieveStatus.FAILED, reason="the retrieve could not be queued; try again")
        raise DependencyError("the retrieve could not be queued") from e
    repository.record_caller_audit(
        principal,
        "PACS_RETRIEVE_QUEUED",
        ("dicom_node", node.ae_title),
        details={"retrieveId": job.retrieve_id, "studyInstanceUid": job.study_instance_uid},
        correlation_id=correlation_id,
    )
    logger.info("PACS retrieve queued", extra={"node": node.ae_title, "retrieve_id": job.retrieve_id})
    return describe(job)


def retrieve_status(principal: Principal, retrieve_id: str) -> dict[str, Any]:
    return describe(repository.get_pacs_retrieve(principal.clinic_id, retrieve_id))


def run_retrieve(
    clinic_id: str, retrieve_id: str, settings: PacsSettings, *, last_attempt: bool = False
) -> None:
    """The consumer's part: run a queued retrieve and record how it ended. A PACS that cannot
    be reached, or a node removed since, fails the retrieve; anything else raises, for the
    queue to deliver it again, and on the `last_attempt` fails it too."""
    job = repository.get_pacs_retrieve(clinic_id, retrieve_id)
    if job.status in (RetrieveStatus.COMPLETED, RetrieveStatus.FAILED):
        logger.info("PACS retrieve already finished", extra={"status": job.status})
        return
    job.status = RetrieveStatus.RUNNING
    repository.save_pacs_retrieve(job)
    from orca_imaging import pacs_scu  # pynetdicom loads here, not at the API's cold start

    try:
        node = _pacs(clinic_id, job.node)  # it may have been removed or changed since
        counts = pacs_scu.retrieve(
            node,
            settings,
            study_instance_uid=job.study_instance_uid,
            series_instance_uid=job.series_instance_uid,
            method=job.method,
        )
    except (RemoteNodeError, NotFoundError, BadRequestError) as e:
        metrics.add_metric(name="PacsRetrieveFailures", unit="Count", value=1)
        logger.warning("PACS retrieve failed", extra={"retrieve_id": retrieve_id, "node": job.node})
        _finish(job, RetrieveStatus.FAILED, reason=str(e))
        return
    except Exception:
        if not last_attempt:
            raise
        # Dead-lettered, it would stay RUNNING for good: the admin is told it failed, and an
        # operator alarmed (the metric).
        logger.exception("PACS retrieve failed on the last attempt", extra={"retrieve_id": retrieve_id})
        metrics.add_metric(name="PacsRetrieveErrors", unit="Count", value=1)
        _finish(job, RetrieveStatus.FAILED, reason="the retrieve failed unexpectedly; operators were alerted")
        return
    metrics.add_metric(name="PacsObjectsRetrieved", unit="Count", value=counts["completed"])
    if counts["failed"]:
        metrics.add_metric(name="PacsRetrieveFailures", unit="Count", value=1)
    logger.info("PACS retrieve finished", extra={"retrieve_id": retrieve_id, "node": job.node, **counts})
    _finish(job, RetrieveStatus.COMPLETED, counts=counts)


def _finish(
    job: PacsRetrieveModel,
    status: RetrieveStatus,
    *,
    reason: str | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    counts = counts or {}
    job.status, job.reason = status, reason
    job.completed, job.failed, job.warning = (counts.get(k) for k in ("completed", "failed", "warning"))
    repository.save_pacs_retrieve(job)
    repository.record_audit_event(
        repository.audit_event(
            clinic_id=job.clinic_id,
            action="PACS_RETRIEVED" if status == RetrieveStatus.COMPLETED else "PACS_RETRIEVE_FAILED",
            actor=job.created_by or "pacs_retrieve",
            subject_type="dicom_node",
            subject_id=job.node,
            correlation_id=job.correlation_id,
            details={"retrieveId": job.retrieve_id, "studyInstanceUid": job.study_instance_uid, **counts},
        )
    )


def describe(job: PacsRetrieveModel) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retrieveId": job.retrieve_id,
        "node": job.node,
        "studyInstanceUid": job.study_instance_uid,
        "seriesInstanceUid": job.series_instance_uid,
        "method": job.method,
        "status": job.status,
        "createdAt": job.created_at.isoformat(),
        "updatedAt": job.updated_at.isoformat(),
    }
    if job.status == RetrieveStatus.COMPLETED:
        body |= {"completed": job.completed, "failed": job.failed, "warning": job.warning}
    if job.reason:
        body["reason"] = job.reason
    return body


def _pacs(clinic_id: str, ae_title: str) -> DicomNodeModel:
    node = repository.get_clinic_dicom_node(clinic_id, ae_title)
    if not node.host or not node.port:
        raise BadRequestError("this DICOM node has no host and port: it is a device, not a PACS")
    return node
