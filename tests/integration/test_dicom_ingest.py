"""DICOM ingest end to end on the local stack: import over HTTP, categories and previews,
exact patient matching, conflicts on one SOP Instance UID, broken objects beside good ones."""

from __future__ import annotations

import io
import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

import requests
from pydicom import dcmread
from pydicom.uid import generate_uid

from orca_imaging.auth import Role
from tests.conftest import CORPUS, corpus_files
from tests.fixtures.dental_dicom import cbct_series, ct_dose_report, dental_object, enhanced_ct
from tests.integration.conftest import ApiClient, watch_events
from tests.integration.test_batches import wait_for_batch
from tests.unit.test_dicom import BAD_DICOM, KEPT_WITHOUT_PREVIEW

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack


def dicom_batch(client: ApiClient, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    """Import these named objects as one DICOM batch and wait for it to finish."""
    body = {
        "files": [
            {"fileName": name, "size": len(data), "contentType": "application/dicom"}
            for name, data in files.items()
        ],
        **extra,
    }
    response = client.post("/dicom/import", body)
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    for target, data in zip(batch["targets"], files.values(), strict=True):
        posted = requests.post(target["url"], data=target["fields"], files={"file": data}, timeout=60)
        assert posted.status_code == 204, posted.text
    batch["view"] = wait_for_batch(client, batch["batchId"], "COMPLETED", "COMPLETED_WITH_ERRORS")
    return batch


def test_a_panoramic_links_to_its_patient_by_chart_and_birth_date(stack: LocalStack) -> None:
    clinic = f"clinic-{uuid.uuid4().hex[:10]}"
    admin = ApiClient(stack, clinic, Role.CLINIC_ADMIN)
    registry = {"chartNumber": "C-100", "birthDate": "2011-04-02", "familyName": "Doe", "givenName": "Jane"}
    assert admin.put("/patients/pat_9", registry).status_code == 204
    doctor = ApiClient(stack, clinic, Role.DOCTOR)
    files = {
        "pano.dcm": dental_object(
            "PX", rows=700, columns=1450, patient_id="C-100", birth_date=date(2011, 4, 2)
        ),
        "other-birthday.dcm": dental_object(
            "PX", rows=70, columns=145, patient_id="C-100", birth_date=date(2011, 4, 3)
        ),
        "unknown-chart.dcm": dental_object(
            "IO", rows=70, columns=100, patient_id="C-999", SeriesDescription="BW"
        ),
    }
    batch = dicom_batch(doctor, files)
    assert batch["view"]["status"] == "COMPLETED", batch["view"]["errors"]
    pano, other, unknown = (doctor.get(f"/images/{t['imageId']}").json() for t in batch["targets"])

    assert (pano["status"], pano["patientId"]) == ("ACTIVE", "pat_9")
    assert (pano["fileType"], pano["category"], pano["modality"], pano["modalityCode"]) == (
        "XRAY",
        "PANORAMIC",
        "PX",
        "OPG",
    )
    assert pano["dicomSummary"]["geometry"]["rows"] == 700 and pano["capturedAtSource"] == "dicom"
    assert "7FE00010" not in pano["dicomData"] and pano["dicomData"]["00100020"]["Value"] == ["C-100"]
    preview = requests.get(pano["urls"]["preview"], timeout=30)
    assert preview.headers["Content-Type"] == "image/jpeg" and preview.content.startswith(b"\xff\xd8")
    # The original is stored exactly as sent.
    assert requests.get(pano["urls"]["original"], timeout=30).content == files["pano.dcm"]

    # A birth date that disagrees, or a chart nobody has: a person decides.
    assert (other["status"], other.get("patientId")) == ("PENDING_MATCH", None)
    assert (unknown["status"], unknown["category"], unknown["modalityCode"]) == (
        "PENDING_MATCH",
        "BITEWING",
        "BW",
    )


def test_one_sop_instance_uid_with_other_bytes_keeps_both_and_flags_both(
    stack: LocalStack, fresh_doctor: ApiClient
) -> None:
    conflict_events = watch_events(stack, "DicomConflict", key="imageId")
    uid = generate_uid()
    first = dicom_batch(
        fresh_doctor,
        {"a.dcm": dental_object("IO", rows=50, columns=60, sop_instance_uid=uid)},
        patientId="pat_1",
    )
    second = dicom_batch(
        fresh_doctor,
        {
            "b.dcm": dental_object(
                "IO", rows=50, columns=60, sop_instance_uid=uid, SeriesDescription="retaken"
            )
        },
        patientId="pat_1",
    )
    one, two = (fresh_doctor.get(f"/images/{b['targets'][0]['imageId']}").json() for b in (first, second))
    assert one["status"] == two["status"] == "ACTIVE"
    assert f"sop_conflict:{one['imageId']}" in two["warnings"]
    assert f"sop_conflict:{two['imageId']}" in one["warnings"]
    assert conflict_events(two["imageId"])["conflictsWith"] == [one["imageId"]]
    # The same bytes again are a duplicate of the first, not a conflict.
    again = dicom_batch(
        fresh_doctor, {"a.dcm": requests.get(one["urls"]["original"], timeout=30).content}, patientId="pat_1"
    )
    repeat = fresh_doctor.get(f"/images/{again['targets'][0]['imageId']}").json()
    assert repeat["duplicateOf"] == one["imageId"]


def test_every_corpus_dicom_and_every_bad_one_in_one_import(fresh_doctor: ApiClient) -> None:
    good = {f"good-{i}-{p.name}": p.read_bytes() for i, p in enumerate(corpus_files("dicom"))}
    bad = {name: (CORPUS / "bad" / name).read_bytes() for name in [*BAD_DICOM, *KEPT_WITHOUT_PREVIEW]}
    batch = dicom_batch(fresh_doctor, good | bad, patientId="pat_1")
    view = batch["view"]
    by_name = {t["fileName"]: t["imageId"] for t in batch["targets"]}
    reasons = {e["imageId"]: e["reason"] for e in view["errors"]}
    assert reasons == {by_name[name]: reason for name, reason in BAD_DICOM.items()}
    assert (view["succeeded"], view["failed"]) == (len(good) + len(KEPT_WITHOUT_PREVIEW), len(BAD_DICOM))
    for name in KEPT_WITHOUT_PREVIEW:
        record = fresh_doctor.get(f"/images/{by_name[name]}").json()
        assert record["status"] == "ACTIVE" and "could not be decoded" in record["previewUnavailable"]


def test_a_patients_radiation_lists_each_exposure_and_totals_per_unit(fresh_doctor: ApiClient) -> None:
    ceph = dental_object(
        "DX",
        rows=60,
        columns=80,
        StudyDescription="Lateral Ceph",
        ImageAndFluoroscopyAreaDoseProduct=0.05,
        KVP=80,
    )
    files = {
        "ceph.dcm": ceph,
        "pano.dcm": dental_object("PX", rows=60, columns=120, ImageAndFluoroscopyAreaDoseProduct=0.1),
        "cbct.dcm": dental_object("CT", rows=32, columns=32, CTDIvol=3.5),
        "no-dose.dcm": dental_object("IO", rows=30, columns=40),
    }
    batch = dicom_batch(fresh_doctor, files, patientId="pat_1")
    dicom_batch(fresh_doctor, {"ceph-again.dcm": ceph}, patientId="pat_1")  # a duplicate is no new exposure
    radiation = fresh_doctor.get("/patients/pat_1/radiation")
    assert radiation.status_code == 200, radiation.text
    body = radiation.json()
    ids = {t["fileName"]: t["imageId"] for t in batch["targets"]}
    assert {e["imageId"] for e in body["exposures"]} == {ids["ceph.dcm"], ids["pano.dcm"], ids["cbct.dcm"]}
    ceph_entry = next(e for e in body["exposures"] if e["imageId"] == ids["ceph.dcm"])
    assert ceph_entry["exposure"] == {"kVp": 80.0} and ceph_entry["category"] == "CEPHALOMETRIC"
    assert body["totals"] == [
        {"quantity": "CTDIvol", "unit": "mGy", "value": 3.5},
        {"quantity": "DAP", "unit": "dGy*cm2", "value": 0.15},
    ]
    assert fresh_doctor.get("/patients/nobody/radiation").status_code == 404


def test_a_person_verifies_a_pending_study_and_its_later_images_follow(stack: LocalStack) -> None:
    clinic = f"clinic-{uuid.uuid4().hex[:10]}"
    admin = ApiClient(stack, clinic, Role.CLINIC_ADMIN)
    for patient_id, family, given, born in (
        ("pat_a", "Doe", "Jane", "2011-04-02"),
        ("pat_b", "Roe", "Max", "2009-01-20"),
    ):
        body = {
            "chartNumber": patient_id.upper(),
            "familyName": family,
            "givenName": given,
            "birthDate": born,
        }
        assert admin.put(f"/patients/{patient_id}", body).status_code == 204
    staff = ApiClient(stack, clinic, Role.CLINICAL_STAFF)
    study = generate_uid()
    # The device knows her as "DOE^JANE" under its own id: no exact rule links that.
    first = dicom_batch(
        staff,
        {
            "pa.dcm": dental_object(
                "IO", rows=40, columns=50, patient_id="DEV-7", name="DOE^JANE", StudyInstanceUID=study
            )
        },
    )
    image_id = first["targets"][0]["imageId"]
    (waiting,) = [i for i in staff.get("/dicom/pending").json()["items"] if i["imageId"] == image_id]
    assert waiting["studyUid"] == study and waiting["dicomPatient"]["id"] == "DEV-7"
    assert [c["patientId"] for c in waiting["candidates"]][0] == "pat_a"

    assert (
        staff.post(
            "/dicom/match", {"patientId": "pat_a", "imageIds": [image_id], "studyUid": study}
        ).status_code
        == 400
    )
    verified = staff.post("/dicom/match", {"patientId": "pat_a", "studyUid": study})
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"patientId": "pat_a", "linked": [image_id]}
    record = staff.get(f"/images/{image_id}").json()
    assert (record["status"], record["patientId"], record["matchVerifiedBy"]) == (
        "ACTIVE",
        "pat_a",
        "usr_test",
    )
    assert all(i["imageId"] != image_id for i in staff.get("/dicom/pending").json()["items"])
    assert staff.post("/dicom/match", {"patientId": "pat_a", "studyUid": study}).status_code == 409

    later = dicom_batch(
        staff,
        {
            "bw.dcm": dental_object(
                "IO", rows=40, columns=50, patient_id="DEV-7", name="DOE^JANE", StudyInstanceUID=study
            )
        },
    )
    follower = staff.get(f"/images/{later['targets'][0]['imageId']}").json()
    assert (follower["status"], follower["patientId"]) == ("ACTIVE", "pat_a")


def test_a_clinic_that_verifies_everything_gets_no_automatic_link(stack: LocalStack) -> None:
    clinic = f"clinic-{uuid.uuid4().hex[:10]}"
    admin = ApiClient(stack, clinic, Role.CLINIC_ADMIN)
    registry = {
        "chartNumber": "C-1",
        "birthDate": "2011-04-02",
        "familyName": "Doe",
        "givenName": "Jane",
        "sex": "F",
    }
    assert admin.put("/patients/pat_1", registry).status_code == 204
    assert admin.put("/settings", {"dicomAutoLink": "never"}).json()["dicomAutoLink"] == "never"
    batch = dicom_batch(admin, {"pano.dcm": dental_object("PX", rows=40, columns=90, patient_id="C-1")})
    record = admin.get(f"/images/{batch['targets'][0]['imageId']}").json()
    assert record["status"] == "PENDING_MATCH"
    assert record["matchCandidates"][0] == {"patientId": "pat_1", "score": 100.0}


def test_a_cbct_becomes_one_volume_once_all_slices_are_in(fresh_doctor: ApiClient) -> None:
    # 60 slices here (each costs a round of moto transactions); the 200-slice series is
    # built in tests/unit/test_volumes.py.
    files = cbct_series(slices=60, size=64, expected=True)
    batch = dicom_batch(
        fresh_doctor, {f"slice-{n:03d}": data for n, data in enumerate(files)}, patientId="pat_1"
    )
    assert batch["view"]["status"] == "COMPLETED", batch["view"]["errors"]
    a_slice = fresh_doctor.get(f"/images/{batch['targets'][0]['imageId']}").json()
    assert (a_slice["category"], a_slice["modalityCode"]) == ("CBCT", "CBCT")
    volume = fresh_doctor.get(f"/images/{a_slice['volumeId']}").json()
    assert (volume["status"], volume["patientId"], volume["category"]) == ("ACTIVE", "pat_1", "CBCT")
    assert volume["volume"]["dimensions"] == {"columns": 64, "rows": 64, "slices": 60}
    assert volume["volume"]["spacingMm"] == {"column": 0.2, "row": 0.2, "slice": 0.2}
    assert (volume["volume"]["gaps"], volume["volume"]["duplicates"]) == (0, 0)
    assert volume["volume"]["completeBy"] == "expected_count"
    for plane in ("axial", "coronal", "sagittal", "mip", "thumb", "preview"):
        picture = requests.get(volume["urls"][plane], timeout=30)
        assert picture.content.startswith(b"\xff\xd8"), plane
    # The volume is on the patient's list beside its slices.
    listed, cursor = set(), None
    while True:
        page = fresh_doctor.get(
            "/patients/pat_1/images", category="CBCT", limit=200, **({"cursor": cursor} if cursor else {})
        ).json()
        listed |= {i["imageId"] for i in page["images"]}
        if not (cursor := page.get("nextCursor")):
            break
    assert volume["imageId"] in listed and len(listed) == 61


def test_a_series_with_no_known_count_is_built_when_it_goes_quiet(
    stack: LocalStack, fresh_doctor: ApiClient
) -> None:
    files = cbct_series(slices=30, size=32, skip=(10, 11), repeat=(20,))
    batch = dicom_batch(fresh_doctor, {f"s{n:02d}": data for n, data in enumerate(files)}, patientId="pat_1")
    volume_id = fresh_doctor.get(f"/images/{batch['targets'][0]['imageId']}").json()["volumeId"]
    assert fresh_doctor.get(f"/images/{volume_id}").json()["status"] == "PROCESSING"

    def swept() -> dict[str, Any] | None:
        stack.run_schedule("SeriesSweep")
        record: dict[str, Any] = fresh_doctor.get(f"/images/{volume_id}").json()
        return record if record["status"] == "ACTIVE" else None

    volume = stack.wait_until(swept, timeout=180, interval=2)
    assert volume["volume"]["dimensions"]["slices"] == 28 and volume["volume"]["completeBy"] == "quiet_period"
    assert (volume["volume"]["gaps"], volume["volume"]["duplicates"]) == (1, 1)
    assert set(volume["warnings"]) == {"slices_missing:1", "slices_duplicated:1"}


def test_an_enhanced_ct_is_ingested_as_its_own_volume(fresh_doctor: ApiClient) -> None:
    batch = dicom_batch(fresh_doctor, {"enhanced.dcm": enhanced_ct(frames=30, size=32)}, patientId="pat_1")
    record = fresh_doctor.get(f"/images/{batch['targets'][0]['imageId']}").json()
    assert (record["status"], record["category"]) == ("ACTIVE", "CBCT")
    assert record["volume"]["dimensions"] == {"columns": 32, "rows": 32, "slices": 30}
    assert {"axial", "coronal", "sagittal", "mip"} <= set(record["urls"])


def half_the_pixels(data: bytes) -> bytes:
    """The object with its pixel data cut to half, the element's length saying so: read
    whole, but its frames cannot be decoded."""
    dataset = dcmread(io.BytesIO(data))
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 2]
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


def test_volumes_with_pixels_that_cannot_be_decoded_are_kept_and_built_from_what_can(
    fresh_doctor: ApiClient,
) -> None:
    series = cbct_series(slices=12, size=32, expected=True)
    series[5] = half_the_pixels(series[5])
    files = {"enhanced.dcm": half_the_pixels(enhanced_ct(frames=10, size=32))}
    files |= {f"slice-{n:02d}": data for n, data in enumerate(series)}
    batch = dicom_batch(fresh_doctor, files, patientId="pat_1")
    assert batch["view"]["status"] == "COMPLETED", batch["view"]["errors"]
    enhanced = fresh_doctor.get(f"/images/{batch['targets'][0]['imageId']}").json()
    assert enhanced["status"] == "ACTIVE" and "volume" not in enhanced
    assert enhanced["previewUnavailable"] == "pixel data could not be decoded: ValueError"
    # The slice that cannot be decoded is kept, and its volume is built without it.
    a_slice = fresh_doctor.get(f"/images/{batch['targets'][1]['imageId']}").json()
    volume = fresh_doctor.get(f"/images/{a_slice['volumeId']}").json()
    assert volume["status"] == "ACTIVE" and volume["volume"]["dimensions"]["slices"] == 11
    assert volume["warnings"] == ["slices_unreadable:1"] and volume["volume"]["gaps"] == 0


def test_a_study_with_a_dose_report_is_counted_by_its_report(fresh_doctor: ApiClient) -> None:
    study = generate_uid()
    files = {
        "cbct.dcm": dental_object("CT", rows=16, columns=16, StudyInstanceUID=study, CTDIvol=3.0),
        "rdsr.dcm": ct_dose_report(study, dlp=42.0, ctdi=[3.0]),
        "pano.dcm": dental_object("PX", rows=20, columns=40, ImageAndFluoroscopyAreaDoseProduct=0.1),
    }
    batch = dicom_batch(fresh_doctor, files, patientId="pat_1")
    ids = {t["fileName"]: t["imageId"] for t in batch["targets"]}
    body = fresh_doctor.get("/patients/pat_1/radiation").json()
    by_id = {e["imageId"]: e for e in body["exposures"]}
    assert by_id[ids["rdsr.dcm"]]["source"] == "rdsr" and by_id[ids["rdsr.dcm"]]["countedInTotals"]
    assert (
        by_id[ids["cbct.dcm"]]["doseReport"] == ids["rdsr.dcm"]
        and not by_id[ids["cbct.dcm"]]["countedInTotals"]
    )
    assert body["totals"] == [
        {"quantity": "DAP", "unit": "dGy*cm2", "value": 0.1},
        {"quantity": "DLP", "unit": "mGy.cm", "value": 42.0},
    ]


def test_a_clinics_own_category_rule_is_tried_before_the_defaults(
    stack: LocalStack, fresh_doctor: ApiClient
) -> None:
    admin = ApiClient(stack, fresh_doctor.clinic, Role.CLINIC_ADMIN)
    # This clinic's ceph unit writes only "LATERAL" in the series description.
    rule = {"modalities": ["DX"], "category": "CEPHALOMETRIC", "code": "CEPH", "words": ["LATERAL"]}
    assert admin.put("/settings", {"dicomCategoryRules": [{**rule, "category": "NOPE"}]}).status_code == 400
    saved = admin.put("/settings", {"dicomCategoryRules": [rule]})
    assert saved.status_code == 200 and saved.json()["dicomCategoryRules"] == [
        {**rule, "views": [], "bodyParts": []}
    ]
    files = {
        "lat.dcm": dental_object("DX", rows=20, columns=30, SeriesDescription="LATERAL"),
        "pano.dcm": dental_object("PX", rows=20, columns=30),
    }
    batch = dicom_batch(fresh_doctor, files, patientId="pat_1")
    lat, pano = (fresh_doctor.get(f"/images/{t['imageId']}").json() for t in batch["targets"])
    assert (lat["category"], lat["modalityCode"]) == ("CEPHALOMETRIC", "CEPH")
    assert (pano["category"], pano["modalityCode"]) == ("PANORAMIC", "OPG")  # the defaults still apply
