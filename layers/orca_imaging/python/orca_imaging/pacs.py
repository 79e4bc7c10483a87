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
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from orca_imaging import repository
from orca_imaging.bodies import RequestBody
from orca_imaging.dicom_nodes import AE_TITLE
from orca_imaging.errors import BadRequestError
from orca_imaging.ids import UID_PATTERN
from orca_imaging.observability import logger, metrics

if TYPE_CHECKING:
    from orca_imaging.auth import Principal
    from orca_imaging.models import DicomNodeModel
    from orca_imaging.settings import ApiSettings

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


def query(
    principal: Principal, request: QueryRequest, settings: ApiSettings, *, correlation_id: str | None
) -> dict[str, Any]:
    node = _pacs(principal, request.node)
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
    node = _pacs(principal, request.node)
    from orca_imaging import pacs_scu  # pynetdicom loads here, not at the API's cold start

    counts = pacs_scu.retrieve(node, settings, request)
    result = {"method": request.method, **counts}
    repository.record_caller_audit(
        principal,
        "PACS_RETRIEVED",
        ("dicom_node", node.ae_title),
        details={"studyInstanceUid": request.study_instance_uid, **result},
        correlation_id=correlation_id,
    )
    metrics.add_metric(name="PacsObjectsRetrieved", unit="Count", value=counts["completed"])
    if counts["failed"]:
        metrics.add_metric(name="PacsRetrieveFailures", unit="Count", value=counts["failed"])
    logger.info("PACS retrieve finished", extra={"node": node.ae_title, **result})
    return result


def _pacs(principal: Principal, ae_title: str) -> DicomNodeModel:
    node = repository.get_clinic_dicom_node(principal.clinic_id, ae_title)
    if not node.host or not node.port:
        raise BadRequestError("this DICOM node has no host and port: it is a device, not a PACS")
    return node
