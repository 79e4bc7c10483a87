"""The Modality Worklist: imaging steps scheduled for a clinic's devices.

Staff schedule a step for a registered patient (`POST /dicom/worklist`); the device asks
the DICOM service's Worklist SCP (C-FIND) for its list and picks the patient from it, so
the images it sends carry the registry's chart number, birth date, the accession number
and a study UID made for the step, and are matched on arrival (`matching.py`'s exact rule).

What the SCP answers from these entries is in `worklist_scp.py`, apart from this module so
the API's cold start does not load pydicom.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

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
FIRST_YEAR = 1900


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
        # A DICOM date has a four-digit year, and the entries sort by their YYYYMMDD text.
        if value.year < FIRST_YEAR:
            raise ValueError(f"a scheduled step is in {FIRST_YEAR} or later")
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
