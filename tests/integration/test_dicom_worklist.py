"""The Modality Worklist: staff schedule a step through the API, a device (dcmtk findscu)
reads its list from the DICOM service, and the image it then sends arrives matched."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from pydicom import dcmread

from orca_imaging.auth import Role
from tests.conftest import require_tool
from tests.fixtures.dental_dicom import dental_object
from tests.integration.conftest import ApiClient
from tests.integration.test_dicom_service import STORESCU, new_clinic_with_node, run, service_port

if TYPE_CHECKING:
    from pathlib import Path

    from orca_imaging.local.stack import LocalStack

FINDSCU = "/usr/bin/findscu"
DAY = "2026-11-22"


def schedule(client: ApiClient, **entry: Any) -> dict[str, Any]:
    body = {"patientId": "pat_wl", "scheduledAt": f"{DAY}T09:30:00", "modality": "PX", **entry}
    response = client.post("/dicom/worklist", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def worklist_query(stack: LocalStack, calling: str, out: Path, *keys: str) -> list[Any]:
    """findscu -W as a device asks: its modality and day, the attributes it wants back."""
    require_tool(FINDSCU)
    out.mkdir()
    wanted = ["PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyInstanceUID"]
    command = [FINDSCU, "-W", "-X", "-od", str(out), "-aet", calling, "-aec", "ORCA"]
    for key in [*keys, *wanted]:
        command += ["-k", key]
    done = subprocess.run(
        [*command, "127.0.0.1", str(service_port(stack))], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def taken_from(step: Any, path: Path, **attributes: Any) -> Path:
    """A panoramic a device took of the patient it picked from its worklist (`step`), with
    these attributes besides."""
    path.write_bytes(
        dental_object(
            "PX", patient_id=step.PatientID, name=str(step.PatientName), birth_date=None, **attributes
        )
    )
    return path


def test_a_device_reads_its_clinics_worklist_and_its_image_arrives_matched(
    stack: LocalStack, tmp_path: Path
) -> None:
    admin, ae_title = new_clinic_with_node(stack)
    registry = {
        "chartNumber": "CH-4711",
        "familyName": "Muller",
        "givenName": "Anna",
        "birthDate": "2012-05-09",
    }
    assert admin.put("/patients/pat_wl", registry).status_code == 204
    staff = ApiClient(stack, admin.clinic, Role.CLINICAL_STAFF)
    schedule(staff, accessionNumber="ACC-1", stationAeTitle=ae_title, procedureDescription="Panoramic")
    schedule(staff, accessionNumber="ACC-2", modality="CT")  # another modality: not this device's
    schedule(staff, accessionNumber="ACC-3", scheduledAt="2026-11-23T09:00:00")  # another day
    other, _ = new_clinic_with_node(stack)  # another clinic's patient, same day and modality
    assert other.put("/patients/pat_wl", {"chartNumber": "OTHER-1"}).status_code == 204
    schedule(other, accessionNumber="ACC-OTHER")

    (step,) = worklist_query(
        stack,
        ae_title,
        tmp_path / "responses",
        "ScheduledProcedureStepSequence[0].Modality=PX",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261122",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    )
    assert str(step.PatientName) == "Muller^Anna" and step.PatientID == "CH-4711"
    assert step.PatientBirthDate == "20120509" and step.AccessionNumber == "ACC-1"
    item = step.ScheduledProcedureStepSequence[0]
    assert item.Modality == "PX" and item.ScheduledStationAETitle == ae_title
    assert "ScheduledProcedureStepDescription" not in item  # only what was asked for

    # The device takes the patient from the list and sends its image with those values.
    image = taken_from(
        step,
        tmp_path / "pano.dcm",
        PatientBirthDate=step.PatientBirthDate,
        AccessionNumber=step.AccessionNumber,
        StudyInstanceUID=step.StudyInstanceUID,
    )
    assert run(STORESCU, stack, ae_title, image).returncode == 0

    def matched() -> list[dict[str, Any]] | None:
        items = admin.get("/patients/pat_wl/images").json()["images"]
        return items or None

    (record,) = stack.wait_until(matched, timeout=60)
    assert record["status"] == "ACTIVE" and record["source"] == "dicom_scp"
    assert record["studyId"] == str(step.StudyInstanceUID)  # the study made for the booked step


def test_an_image_of_a_booked_step_is_that_patients_without_a_birth_date_to_check(
    stack: LocalStack, tmp_path: Path
) -> None:
    """Staff chose the patient when they booked the step; a device that took the step from
    the list sends its images in the study made for it, or (one that makes its own
    studies) with the step's accession number. So they link to that patient also where the
    chart-number rule cannot (no birth date in the registry, here); an image with neither
    waits for a person, as any other would."""
    admin, ae_title = new_clinic_with_node(stack)
    assert admin.put("/patients/pat_wl", {"chartNumber": "CH-77", "familyName": "Ito"}).status_code == 204
    schedule(admin, accessionNumber="ACC-77", stationAeTitle=ae_title)
    (step,) = worklist_query(stack, ae_title, tmp_path / "responses")
    assert step.PatientBirthDate == ""  # nothing for the chart-number rule to agree on

    def taken_on_the_day(name: str, study_uid: str, accession: str) -> Path:
        day = DAY.replace("-", "")
        return taken_from(
            step,
            tmp_path / name,
            AccessionNumber=accession,
            StudyInstanceUID=study_uid,
            StudyDate=day,
            AcquisitionDate=day,
        )

    in_the_step = taken_on_the_day("pano.dcm", str(step.StudyInstanceUID), "")
    with_its_accession = taken_on_the_day("ceph.dcm", "1.2.3.4.77", str(step.AccessionNumber))
    neither = taken_on_the_day("other.dcm", "1.2.3.4.78", "")
    assert run(STORESCU, stack, ae_title, in_the_step, with_its_accession, neither).returncode == 0

    def linked() -> list[dict[str, Any]] | None:
        images = admin.get("/patients/pat_wl/images").json()["images"]
        return images if len(images) == 2 else None

    studies = {image["studyId"] for image in stack.wait_until(linked, timeout=60)}
    assert studies == {str(step.StudyInstanceUID), "1.2.3.4.77"}
    (waiting,) = stack.wait_until(lambda: admin.get("/dicom/pending").json()["items"] or None, timeout=60)
    assert waiting["studyUid"] == "1.2.3.4.78"


def test_the_worklist_api_lists_by_day_and_station_for_admins_only(stack: LocalStack) -> None:
    admin, ae_title = new_clinic_with_node(stack)
    assert admin.put("/patients/pat_wl", {"chartNumber": "CH-1"}).status_code == 204
    schedule(admin, accessionNumber="A-1", stationAeTitle=ae_title)
    schedule(admin, accessionNumber="A-2", stationAeTitle="OTHER-ROOM")
    schedule(admin, accessionNumber="A-3", stationAeTitle=ae_title, scheduledAt="2026-11-24T08:00:00")
    listed = admin.get("/dicom/worklist", **{"from": DAY, "to": DAY, "stationAeTitle": ae_title})
    assert [e["accessionNumber"] for e in listed.json()["entries"]] == ["A-1"]
    assert len(admin.get("/dicom/worklist").json()["entries"]) == 3
    staff = ApiClient(stack, admin.clinic, Role.CLINICAL_STAFF)
    assert staff.get("/dicom/worklist").status_code == 403
    # A patient the clinic does not have cannot be scheduled.
    missing = admin.post(
        "/dicom/worklist",
        {
            "patientId": "pat_nobody",
            "accessionNumber": "A-9",
            "scheduledAt": f"{DAY}T10:00:00",
            "modality": "PX",
        },
    )
    assert missing.status_code == 404
    # A year a DICOM date cannot hold (found by schemathesis: it was a 500).
    ancient = {
        "patientId": "pat_wl",
        "accessionNumber": "A-8",
        "scheduledAt": "0207-10-01T17:32:41",
        "modality": "PX",
    }
    too_early = admin.post("/dicom/worklist", ancient)
    assert too_early.status_code == 400 and "scheduledAt" in too_early.text
