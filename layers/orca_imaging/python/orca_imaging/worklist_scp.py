"""The Modality Worklist SCP's answers: a device's C-FIND matched against its clinic's
scheduled steps (`worklist.py`). The DICOM service calls `find` with the calling node's
clinic, never anything from the query, so a device only ever sees its own clinic's entries.

Each step comes with a study made for it (`step_study_uid`) and the accession number staff
gave it, which a device that took the patient from the list sends its images with (IHE's
Scheduled Workflow): ingest links such an image to the patient the step was booked for
(`booked_patient`).
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from orca_imaging import repository
from orca_imaging.worklist import DAY_END, DAY_START

if TYPE_CHECKING:
    from orca_imaging.models import WorklistEntryModel

# How far from an image's capture a step may be scheduled and still be its own: a device's
# clock, the clinic's time zone against UTC, a step done the day after it was booked.
BOOKING_SLACK = timedelta(days=2)


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
    ds.StudyInstanceUID = step_study_uid(entry.clinic_id, entry.entry_id)
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


def step_study_uid(clinic_id: str, entry_id: str) -> str:
    """The study made for a scheduled step: the same at every query, and no other step's."""
    return str(generate_uid(entropy_srcs=[clinic_id, entry_id]))


def booked_patient(
    clinic_id: str, *, study_uid: str | None, accession: str | None, around: datetime
) -> str | None:
    """The patient a step of the clinic's worklist was booked for, when the image is that
    step's: in the study made for it, or, from a device that makes its own studies, with
    its accession number, when the steps that have it are one patient's. The steps scheduled
    within `BOOKING_SLACK` of `around` (the image's capture) are looked at; an image with
    neither a study made here nor an accession number is not looked up at all."""
    in_a_step = bool(study_uid and study_uid.startswith(PYDICOM_ROOT_UID))
    if not in_a_step and not accession:
        return None
    first, last = around - BOOKING_SLACK, around + BOOKING_SLACK
    steps = repository.worklist_entries(clinic_id, f"{first:%Y%m%d}{DAY_START}", f"{last:%Y%m%d}{DAY_END}")
    for step in steps if in_a_step else ():
        if step_study_uid(clinic_id, step.entry_id) == study_uid:
            return step.patient_id
    patients = {step.patient_id for step in steps if accession and step.accession_number == accession}
    return patients.pop() if len(patients) == 1 else None
