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

from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from orca_imaging import clients, repository
from orca_imaging.bodies import RequestBody
from orca_imaging.dicom_nodes import AE_TITLE
from orca_imaging.errors import BadRequestError, RemoteNodeError
from orca_imaging.ids import new_image_id
from orca_imaging.observability import logger, metrics
from orca_imaging.originals import ReceivedOriginals
from orca_imaging.spool import Arrival

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from orca_imaging.auth import Principal
    from orca_imaging.models import DicomNodeModel
    from orca_imaging.settings import ApiSettings

UID = r"^[0-9]+(\.[0-9]+)*$"
MAX_MATCHES = 500
# PS3.4 C.4.1.1.4 / C.4.2.1.5: C-FIND and C-MOVE/C-GET statuses.
SUCCESS, PENDING, PENDING_WARNING = 0x0000, 0xFF00, 0xFF01
SUBOPERATIONS_FAILED = 0xB000
PROCESSING_FAILURE = 0xC001  # PS3.4 B.2.3: a C-STORE we could not keep

# What each level asks for, and the name each answer has in our response.
RETURN_KEYS = {
    "STUDY": {
        "StudyInstanceUID": "studyInstanceUid",
        "PatientName": "patientName",
        "PatientID": "patientId",
        "PatientBirthDate": "patientBirthDate",
        "StudyDate": "studyDate",
        "StudyTime": "studyTime",
        "StudyDescription": "studyDescription",
        "AccessionNumber": "accessionNumber",
        "ModalitiesInStudy": "modalities",
        "NumberOfStudyRelatedInstances": "numberOfInstances",
    },
    "SERIES": {
        "StudyInstanceUID": "studyInstanceUid",
        "SeriesInstanceUID": "seriesInstanceUid",
        "Modality": "modality",
        "SeriesNumber": "seriesNumber",
        "SeriesDescription": "seriesDescription",
        "SeriesDate": "seriesDate",
        "NumberOfSeriesRelatedInstances": "numberOfInstances",
    },
}


class QueryRequest(RequestBody):
    node: str = Field(pattern=AE_TITLE, description="the PACS: a DICOM node with a host and port")
    level: Literal["STUDY", "SERIES"] = "STUDY"
    patient_name: str | None = Field(default=None, alias="patientName", max_length=64)
    patient_id: str | None = Field(default=None, alias="patientId", max_length=64)
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    modality: str | None = Field(default=None, pattern=r"^[A-Z]{2,4}$")
    study_instance_uid: str | None = Field(default=None, alias="studyInstanceUid", pattern=UID, max_length=64)

    @model_validator(mode="after")
    def _series_of_a_study(self) -> QueryRequest:
        if self.level == "SERIES" and self.study_instance_uid is None:
            raise ValueError("a series query names its study (studyInstanceUid)")
        return self


class RetrieveRequest(RequestBody):
    node: str = Field(pattern=AE_TITLE)
    study_instance_uid: str = Field(alias="studyInstanceUid", pattern=UID, max_length=64)
    series_instance_uid: str | None = Field(
        default=None, alias="seriesInstanceUid", pattern=UID, max_length=64
    )
    method: Literal["move", "get"] = Field(
        default="move", description="`get` for a PACS that cannot open a connection to us"
    )


def query(
    principal: Principal, request: QueryRequest, settings: ApiSettings, *, correlation_id: str | None
) -> dict[str, Any]:
    node = _pacs(principal, request.node)
    keys = RETURN_KEYS[request.level]
    unique = "StudyInstanceUID" if request.level == "STUDY" else "SeriesInstanceUID"
    found_by_uid: dict[str, dict[str, Any]] = {}
    with _association(node, settings, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
        for identifier in _query_identifiers(request):
            for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                code = _status(status, node, "C-FIND")
                if code in (PENDING, PENDING_WARNING) and found is not None:
                    match = {name: _json(found.get(keyword)) for keyword, name in keys.items()}
                    if isinstance(match.get("modalities"), str):  # one modality: not multi-valued
                        match["modalities"] = [match["modalities"]]
                    found_by_uid.setdefault(str(found.get(unique, "")), match)
        if request.level == "STUDY" and request.modality:
            found_by_uid = {
                uid: match
                for uid, match in found_by_uid.items()
                if request.modality in _modalities(assoc, node, match)
            }
    matches = list(found_by_uid.values())[:MAX_MATCHES]
    repository.record_caller_audit(
        principal,
        "PACS_QUERIED",
        ("dicom_node", node.ae_title),
        details={"level": request.level, "matches": len(matches)},
        correlation_id=correlation_id,
    )
    logger.info(
        "PACS queried", extra={"node": node.ae_title, "level": request.level, "matches": len(matches)}
    )
    return {"level": request.level, "matches": matches, "truncated": len(found_by_uid) > MAX_MATCHES}


def retrieve(
    principal: Principal, request: RetrieveRequest, settings: ApiSettings, *, correlation_id: str | None
) -> dict[str, Any]:
    node = _pacs(principal, request.node)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if request.series_instance_uid else "STUDY"
    identifier.StudyInstanceUID = request.study_instance_uid
    if request.series_instance_uid:
        identifier.SeriesInstanceUID = request.series_instance_uid
    if request.method == "move":
        model = StudyRootQueryRetrieveInformationModelMove
        with _association(node, settings, [model]) as assoc:
            final = _final_status(assoc.send_c_move(identifier, settings.ae_title, model), node)
    else:
        model = StudyRootQueryRetrieveInformationModelGet
        receiver = _GetReceiver(node, settings)
        with _association(node, settings, [model], receiver=receiver) as assoc:
            final = _final_status(assoc.send_c_get(identifier, model), node)
    counts = {
        "completed": int(final.get("NumberOfCompletedSuboperations", 0) or 0),
        "failed": int(final.get("NumberOfFailedSuboperations", 0) or 0),
        "warning": int(final.get("NumberOfWarningSuboperations", 0) or 0),
    }
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


# ---------------------------------------------------------------- the SCU
def _pacs(principal: Principal, ae_title: str) -> DicomNodeModel:
    node = repository.get_clinic_dicom_node(principal.clinic_id, ae_title)
    if not node.host or not node.port:
        raise BadRequestError("this DICOM node has no host and port: it is a device, not a PACS")
    return node


@contextmanager
def _association(
    node: DicomNodeModel, settings: ApiSettings, models: list[str], *, receiver: _GetReceiver | None = None
) -> Iterator[Association]:
    """An association with the PACS for these models, released on leaving."""
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.pacs_timeout_seconds
    ae.maximum_pdu_size = 128 * 1024
    for model in models:
        ae.add_requested_context(model)
    roles = []
    if receiver is not None:  # C-GET: the PACS stores to us on this association
        for context in StoragePresentationContexts[: 128 - len(models)]:  # 128 contexts at most
            storage = str(context.abstract_syntax)
            ae.add_requested_context(storage, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(storage, scp_role=True))
    assoc = ae.associate(
        str(node.host),
        int(node.port or 0),
        ae_title=node.ae_title,
        ext_neg=roles or None,  # type: ignore[arg-type]
        evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)] if receiver else None,
    )
    if not assoc.is_established:
        metrics.add_metric(name="PacsAssociationsFailed", unit="Count", value=1)
        logger.warning("PACS association failed", extra={"node": node.ae_title})
        raise RemoteNodeError("the PACS could not be reached or refused the association")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _modalities(assoc: Association, node: DicomNodeModel, study: dict[str, Any]) -> list[str]:
    """A study's modalities: as the PACS gave them, or from its series where the PACS does
    not support ModalitiesInStudy (dcmqrscp ignores it as a filter and leaves it empty)."""
    if not study["modalities"]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study["studyInstanceUid"]
        identifier.Modality = ""
        found = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        series = [ds for status, ds in found if _status(status, node, "C-FIND") != SUCCESS and ds is not None]
        study["modalities"] = sorted({str(ds.Modality) for ds in series if ds.get("Modality")})
    return list(study["modalities"])


def _status(status: Dataset | None, node: DicomNodeModel, operation: str) -> int:
    """The response's status code; an absent one (timeout, abort) or a failure raises."""
    if not status or "Status" not in status:
        raise RemoteNodeError(f"the PACS did not answer the {operation}")
    code = int(status.Status)
    if code not in (SUCCESS, PENDING, PENDING_WARNING, SUBOPERATIONS_FAILED):
        logger.warning("PACS request failed", extra={"node": node.ae_title, "status": f"0x{code:04X}"})
        raise RemoteNodeError(f"the PACS failed the {operation} (status 0x{code:04X})")
    return code


def _final_status(responses: Iterator[tuple[Dataset, Dataset | None]], node: DicomNodeModel) -> Dataset:
    """The last response of a C-MOVE or C-GET: it carries the sub-operation counts."""
    final: Dataset | None = None
    for status, _ in responses:
        if _status(status, node, "retrieve") not in (PENDING, PENDING_WARNING):
            final = status
    if final is None:
        raise RemoteNodeError("the PACS ended the retrieve without a final status")
    return final


def _query_identifiers(request: QueryRequest) -> Iterator[Dataset]:
    """One C-FIND, or one per spelling of the name: PN matching is case-sensitive in the
    standard and in many PACS (dcmqrscp; not Orthanc), and staff type "doe" for DOE^JANE
    or Doe^Jane. The answers are merged by UID."""
    if not request.patient_name:
        yield _query_identifier(request, None)
        return
    typed = request.patient_name
    for name in dict.fromkeys([typed, typed.upper(), typed.title()]):
        yield _query_identifier(request, name if {"*", "?"} & set(name) else f"{name}*")


def _query_identifier(request: QueryRequest, patient_name: str | None) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = request.level
    for keyword in RETURN_KEYS[request.level]:
        setattr(identifier, keyword, "")
    if patient_name:
        identifier.PatientName = patient_name
        identifier.SpecificCharacterSet = "ISO_IR 192"
    if request.patient_id:
        identifier.PatientID = request.patient_id
    if request.date_from or request.date_to:
        first = request.date_from.strftime("%Y%m%d") if request.date_from else ""
        last = request.date_to.strftime("%Y%m%d") if request.date_to else ""
        identifier.StudyDate = f"{first}-{last}"
    if request.modality:
        setattr(identifier, "ModalitiesInStudy" if request.level == "STUDY" else "Modality", request.modality)
    if request.study_instance_uid:
        identifier.StudyInstanceUID = request.study_instance_uid
    return identifier


def _json(value: Any) -> Any:
    """An element's value as JSON: multi-valued as a list, numbers as numbers, names as text."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value]
    if isinstance(value, int | float):  # IS and DS values are ints and floats
        return value
    return str(value)


class _GetReceiver:
    """C-STORE sub-operations of a C-GET: each object in S3 before its Success."""

    def __init__(self, node: DicomNodeModel, settings: ApiSettings) -> None:
        self.node = node
        self.originals = ReceivedOriginals(
            clients.s3(), bucket=settings.originals_bucket, kms_key_id=settings.kms_key_id
        )

    def on_store(self, event: Event) -> int:
        arrival = Arrival(
            clinic_id=self.node.clinic_id,
            image_id=new_image_id(),
            calling_ae=self.node.ae_title,
            source_address=str(self.node.host),
            received_at=datetime.now(UTC).isoformat(),
            sop_instance_uid=str(event.request.AffectedSOPInstanceUID),  # type: ignore[union-attr]
        )
        try:
            self.originals.keep(arrival, event.encoded_dataset())
        except Exception:  # the PACS counts it failed, and the admin retrieves again
            logger.exception("C-GET object not stored", extra={"image_id": arrival.image_id})
            return PROCESSING_FAILURE
        return SUCCESS
