"""The same bytes twice in a clinic: warned at request time, flagged, and stored once."""

from __future__ import annotations

import hashlib

from orca_imaging.auth import Role
from orca_imaging.local.stack import LocalStack
from tests.conftest import CORPUS
from tests.integration.conftest import ApiClient

PHOTO = CORPUS / "photos" / "Pentax_K10D.jpg"


def test_an_exact_duplicate_points_at_the_first_and_its_bytes_expire(stack: LocalStack) -> None:
    staff = ApiClient(stack, "clinic-dup", Role.CLINICAL_STAFF)
    admin = ApiClient(stack, "clinic-dup", Role.CLINIC_ADMIN)
    assert admin.put("/patients/pat_1", {}).status_code == 204
    first = staff.upload(PHOTO)["imageId"]
    original = staff.wait_for_status(first, "ACTIVE")

    second_target = staff.upload(PHOTO)  # no sha256 declared: found after upload
    second = staff.wait_for_status(second_target["imageId"], "ACTIVE")
    assert second["duplicateOf"] == first
    assert second["warnings"] == [f"duplicate_of:{first}"]
    assert (second["storageKey"], second["objectVersion"]) == (
        original["storageKey"],
        original["objectVersion"],
    )
    assert second["variantKeys"] == original["variantKeys"]

    # Its own copy of the bytes is tagged for the lifecycle rule, not kept as an original.
    assert stack.resources is not None
    s3 = stack.client("s3")
    tags = s3.get_object_tagging(
        Bucket=stack.resources.values["originals_bucket"], Key=second_target["fields"]["key"]
    )
    assert {"Key": "orca-abandoned", "Value": "true"} in tags["TagSet"]
    derived = s3.list_objects_v2(
        Bucket=stack.resources.values["derived_bucket"],
        Prefix=f"clinic/clinic-dup/derived/{second_target['imageId']}/",
    )
    assert derived.get("KeyCount", 0) == 0  # no second set of variants either


def test_a_declared_duplicate_is_warned_about_when_requested(stack: LocalStack) -> None:
    staff = ApiClient(stack, "clinic-dup", Role.CLINICAL_STAFF)
    admin = ApiClient(stack, "clinic-dup", Role.CLINIC_ADMIN)
    assert admin.put("/patients/pat_1", {}).status_code == 204
    first = staff.upload(PHOTO)["imageId"]
    staff.wait_for_status(first, "ACTIVE")
    digest = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    body = {
        "fileName": "again.jpg",
        "size": PHOTO.stat().st_size,
        "contentType": "image/jpeg",
        "sha256": digest,
    }
    single = staff.post("/upload", {**body, "patientId": "pat_1"}).json()
    batch = staff.post("/upload/batch", {"patientId": "pat_1", "files": [body]}).json()
    for target in (single, batch["targets"][0]):
        assert target["warnings"] and target["warnings"][0].startswith("duplicate_of:img_")


def test_duplicates_are_per_clinic(stack: LocalStack) -> None:
    for clinic in ("clinic-dup-x", "clinic-dup-y"):
        ApiClient(stack, clinic, Role.CLINIC_ADMIN).put("/patients/pat_1", {})
    x = ApiClient(stack, "clinic-dup-x", Role.DOCTOR)
    y = ApiClient(stack, "clinic-dup-y", Role.DOCTOR)
    x.wait_for_status(x.upload(PHOTO)["imageId"], "ACTIVE")
    in_y = y.wait_for_status(y.upload(PHOTO)["imageId"], "ACTIVE")
    assert "duplicateOf" not in in_y  # another clinic's copy is invisible, even to dedup


def test_a_re_export_is_a_possible_duplicate_for_the_same_patient(stack: LocalStack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    admin = ApiClient(stack, "clinic-near", Role.CLINIC_ADMIN)
    for patient in ("pat_1", "pat_2"):
        assert admin.put(f"/patients/{patient}", {}).status_code == 204
    staff = ApiClient(stack, "clinic-near", Role.CLINICAL_STAFF)
    source = CORPUS / "photos" / "ortho_intraoral_nikon_d90.jpg"
    first = staff.upload(source, patient="pat_1")["imageId"]
    staff.wait_for_status(first, "ACTIVE")

    re_export = tmp_path / "smaller.jpg"  # the same photo, exported again at half size and lower quality
    image = Image.open(source)
    image.resize((image.width // 2, image.height // 2)).save(re_export, "JPEG", quality=70)
    near = staff.wait_for_status(staff.upload(re_export, patient="pat_1")["imageId"], "ACTIVE")
    assert near["possibleDuplicateOf"] == first
    assert f"possible_duplicate_of:{first}" in near["warnings"]
    assert "duplicateOf" not in near  # not the same bytes

    for_other = tmp_path / "other.jpg"  # near the same picture, but different bytes
    image.resize((image.width // 2, image.height // 2)).save(for_other, "JPEG", quality=71)
    other_patient = staff.wait_for_status(staff.upload(for_other, patient="pat_2")["imageId"], "ACTIVE")
    assert "possibleDuplicateOf" not in other_patient and "duplicateOf" not in other_patient  # per patient
    different = staff.wait_for_status(
        staff.upload(CORPUS / "photos" / "iphone6.jpg", patient="pat_1")["imageId"], "ACTIVE"
    )
    assert "possibleDuplicateOf" not in different
