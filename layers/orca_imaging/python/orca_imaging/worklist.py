"""The Modality Worklist: imaging steps scheduled for a clinic's devices.

Staff schedule a step for a registered patient (`POST /dicom/worklist`); the device asks
the DICOM service's Worklist SCP (C-FIND) for its list and picks the patient from it, so
the images it sends carry the registry's chart number, birth date, the accession number
and a study UID made for the step, and are matched on arrival (`matching.py`'s exact rule).

A device's C-FIND only ever sees its own clinic's entries: the clinic is the calling AE
title's node, never anything in the query.
"""

from __future__ import annotations

import fnmatch
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from orca_imaging import repository
from orca_imaging.bodies import RequestBody
from orca_imaging.dicom_nodes import AE_TITLE
from orca_imaging.ids import ID_PATTERN, new_id
from orca_imaging.models import WorklistEntryModel

if TYPE_CHECKING:
    from orca_imaging.auth import Principal

# The modalities of a dental practice's X-ray devices.
Modality = Literal["PX", "IO", "DX", "CR", "CT", "XC"]
DAY_START, DAY_END = "000000", "235959"


class EntryRequest(RequestBody):
    patient_id: str = Field(alias="patientId", pattern=ID_PATTERN)
    accession_number: str = Field(alias="accessionNumber", min_length=1, max_length=16)  # DICOM SH
    station_ae_title: str | None = Field(default=None, alias="stationAeTitle", pattern=AE_TITLE)
    scheduled_at: datetime = Field(alias="scheduledAt", description="the clinic's local time")
    modality: Modality
    procedure_description: str | None = Field(default=None, alias="procedureDescription", max_length=64)

    @field_validator("scheduled_at")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=None)  # DICOM dates and times are the device's local time


def _view(entry: WorklistEntryModel) -> dict[str, Any]:
    scheduled = datetime.strptime(entry.scheduled_key.split("#")[0], "%Y%m%d%H%M%S")
    return {
        "entryId": entry.entry_id,
        "patientId": entry.patient_id,
        "accessionNumber": entry.accession_number,
        "stationAeTitle": entry.station_ae,
        "scheduledAt": scheduled.isoformat(),
        "modality": entry.modality,
        "procedureDescription": entry.procedure_description,
    }


def schedule(principal: Principal, request: EntryRequest, *, correlation_id: str | None) -> dict[str, Any]:
    patient = repository.get_patient(principal.clinic_id, request.patient_id)  # 404 if not the clinic's
    entry_id = new_id("wl")
    entry = WorklistEntryModel(
        clinic_id=principal.clinic_id,
        scheduled_key=f"{request.scheduled_at:%Y%m%d%H%M%S}#{entry_id}",
        entry_id=entry_id,
        patient_id=patient.patient_id,
        chart_number=patient.chart_number,
        family_name=patient.family_name,
        given_name=patient.given_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        accession_number=request.accession_number,
        station_ae=request.station_ae_title,
        modality=request.modality,
        procedure_description=request.procedure_description,
        created_by=principal.user_id,
    )
    repository.put_worklist_entry(entry)
    repository.record_caller_audit(
        principal, "WORKLIST_SCHEDULED", ("worklist_entry", entry_id), correlation_id=correlation_id
    )
    return _view(entry)


def listing(
    principal: Principal, *, first: date | None, last: date | None, station: str | None
) -> dict[str, Any]:
    entries = repository.worklist_entries(
        principal.clinic_id,
        f"{first:%Y%m%d}{DAY_START}" if first else "0",
        f"{last:%Y%m%d}{DAY_END}" if last else "9",
    )
    return {"entries": [_view(e) for e in entries if station is None or e.station_ae == station]}


# ---------------------------------------------------------------- the SCP's C-FIND
def find(clinic_id: str, query: Dataset) -> list[Dataset]:
    """Each of the clinic's entries the query matches, as a response with the query's keys."""
    steps = query.get("ScheduledProcedureStepSequence")
    step = steps[0] if steps else Dataset()
    first, last = _date_range(str(step.get("ScheduledProcedureStepStartDate", "")))
    matches = []
    for entry in repository.worklist_entries(clinic_id, first, last):
        full = _dataset(entry)
        item = full.ScheduledProcedureStepSequence[0]
        keys = [(step, item, k) for k in ("ScheduledStationAETitle", "Modality")] + [
            (query, full, k) for k in ("PatientID", "AccessionNumber", "PatientName")
        ]
        if all(_matches(str(asked.get(k, "")).strip(), str(have.get(k, ""))) for asked, have, k in keys):
            matches.append(_project(query, full))
    return matches


def _date_range(value: str) -> tuple[str, str]:
    """PS3.4 C.2.2.2.5 date range matching: `D`, `D1-D2`, `-D2`, `D1-` or universal."""
    if not value:
        return "0", "9"
    start, _, end = value.partition("-") if "-" in value else (value, "", value)
    return (f"{start}{DAY_START}" if start else "0", f"{end}{DAY_END}" if end else "9")


def _matches(wanted: str, value: str) -> bool:
    """Universal (empty or `*`), wildcard (`*`, `?`) or single-value matching."""
    if wanted in ("", "*"):
        return True
    if "*" in wanted or "?" in wanted:
        return fnmatch.fnmatchcase(value.casefold(), wanted.casefold())
    return value == wanted


def _dataset(entry: WorklistEntryModel) -> Dataset:
    scheduled = entry.scheduled_key.split("#")[0]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the registry's names as they are
    ds.PatientName = "^".join(part or "" for part in (entry.family_name, entry.given_name)).rstrip("^")
    ds.PatientID = entry.chart_number or entry.patient_id
    ds.PatientBirthDate = (entry.birth_date or "").replace("-", "")
    ds.PatientSex = entry.sex or ""
    ds.AccessionNumber = entry.accession_number
    # One study per step, the same at every query: the device's images join it.
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[entry.clinic_id, entry.entry_id])
    ds.RequestedProcedureID = entry.entry_id[-16:]
    ds.RequestedProcedureDescription = entry.procedure_description or ""
    step = Dataset()
    step.ScheduledStationAETitle = entry.station_ae or ""
    step.ScheduledProcedureStepStartDate = scheduled[:8]
    step.ScheduledProcedureStepStartTime = scheduled[8:]
    step.Modality = entry.modality
    step.ScheduledProcedureStepDescription = entry.procedure_description or ""
    step.ScheduledProcedureStepID = entry.entry_id[-16:]
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _project(query: Dataset, full: Dataset) -> Dataset:
    """Only the attributes the query asked for (PS3.4 C.2.2.1.2), sequences item by item."""
    out = Dataset()
    if "SpecificCharacterSet" in full:  # the top level only
        out.SpecificCharacterSet = full.SpecificCharacterSet
    for element in query:
        if element.keyword == "SpecificCharacterSet":
            continue
        if element.VR == "SQ" and element.keyword in full:
            items = element.value or [Dataset()]
            out[element.tag] = full[element.tag]
            out[element.tag].value = [_project(items[0], item) for item in full[element.tag].value]
        elif element.keyword in full:
            out[element.tag] = full[element.tag]
        else:
            out.add_new(element.tag, element.VR, None)  # asked for, unknown here: zero length
    return out
