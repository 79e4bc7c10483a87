"""The PACS SCU behind `pacs.py`: Study Root C-FIND, C-MOVE and C-GET with pynetdicom.
Apart from `pacs.py` so that pynetdicom and pydicom load on the first PACS request, not at
every cold start of the API.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from orca_imaging.dicom_service import PENDING, PROCESSING_FAILURE, SUCCESS
from orca_imaging.dicom_transport import keep_responses_for_requests
from orca_imaging.errors import RemoteNodeError
from orca_imaging.observability import logger, metrics
from orca_imaging.originals import ReceivedOriginals
from orca_imaging.spool import Arrival

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from orca_imaging.models import DicomNodeModel
    from orca_imaging.pacs import QueryRequest
    from orca_imaging.settings import PacsSettings

# PS3.4 C.4.1.1.4 / C.4.2.1.5: the C-FIND, C-MOVE and C-GET statuses not in dicom_service.
PENDING_WARNING = 0xFF01
SUBOPERATIONS_FAILED = 0xB000

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


def find(node: DicomNodeModel, settings: PacsSettings, request: QueryRequest) -> list[dict[str, Any]]:
    """Every match, once each: merged by UID over the name's spellings, and at study level
    with a modality asked for, only studies that have it."""
    keys = RETURN_KEYS[request.level]
    unique = "StudyInstanceUID" if request.level == "STUDY" else "SeriesInstanceUID"
    found_by_uid: dict[str, dict[str, Any]] = {}
    with _association(node, settings, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
        for identifier in _query_identifiers(request):
            for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                if _status(status, node, "C-FIND") in (PENDING, PENDING_WARNING) and found is not None:
                    match = {name: _json(keyword, found.get(keyword)) for keyword, name in keys.items()}
                    found_by_uid.setdefault(str(found.get(unique, "")), match)
        matches = list(found_by_uid.values())
        if request.level == "STUDY" and request.modality:
            matches = [m for m in matches if request.modality in _modalities(assoc, node, m)]
    return matches


def retrieve(
    node: DicomNodeModel,
    settings: PacsSettings,
    *,
    study_instance_uid: str,
    series_instance_uid: str | None,
    method: str,
) -> dict[str, int]:
    """C-MOVE to our AE title, or C-GET into S3: the sub-operation counts of the last answer."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if series_instance_uid else "STUDY"
    identifier.StudyInstanceUID = study_instance_uid
    if series_instance_uid:
        identifier.SeriesInstanceUID = series_instance_uid
    if method == "move":
        model = StudyRootQueryRetrieveInformationModelMove
        with _association(node, settings, [model]) as assoc:
            final = _final_status(assoc.send_c_move(identifier, settings.ae_title, model), node)
    else:
        model = StudyRootQueryRetrieveInformationModelGet
        with _association(node, settings, [model], receiver=_GetReceiver(node, settings)) as assoc:
            final = _final_status(assoc.send_c_get(identifier, model), node)
    return {
        "completed": int(final.get("NumberOfCompletedSuboperations", 0) or 0),
        "failed": int(final.get("NumberOfFailedSuboperations", 0) or 0),
        "warning": int(final.get("NumberOfWarningSuboperations", 0) or 0),
    }


@contextmanager
def _association(
    node: DicomNodeModel, settings: PacsSettings, models: list[str], *, receiver: _GetReceiver | None = None
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
        yield keep_responses_for_requests(assoc)
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


def _json(keyword: str, value: Any) -> Any:
    """An element's value as JSON: a list where the dictionary allows several values (even
    when one came back), numbers as numbers, names and dates as text."""
    if value is None or value == "":
        return None
    if dictionary_VM(keyword) != "1":
        return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    if isinstance(value, int | float):  # IS and DS values are ints and floats
        return value
    return str(value)


class _GetReceiver:
    """C-STORE sub-operations of a C-GET: each object in S3 before its Success."""

    def __init__(self, node: DicomNodeModel, settings: PacsSettings) -> None:
        self.node = node
        self.originals = ReceivedOriginals.for_settings(settings)

    def on_store(self, event: Event) -> int:
        arrival = Arrival.now(
            clinic_id=self.node.clinic_id,
            calling_ae=self.node.ae_title,
            source_address=str(self.node.host),
            sop_instance_uid=str(event.request.AffectedSOPInstanceUID),  # type: ignore[union-attr]
        )
        try:
            self.originals.keep(arrival, event.encoded_dataset())
        except Exception:  # the PACS counts it failed, and the admin retrieves again
            logger.exception("C-GET object not stored", extra={"image_id": arrival.image_id})
            return PROCESSING_FAILURE
        return SUCCESS
