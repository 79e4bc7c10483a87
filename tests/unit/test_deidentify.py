"""`orca-imaging anonymize`: identifiers gone, grouping kept, pixels untouched, the
de-identification recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import CORPUS
from tests.fixtures.dental_dicom import dental_object

CLI = Path(sys.executable).parent / "orca-imaging"


def test_a_study_is_de_identified_consistently_and_its_pixels_kept(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    study = generate_uid()
    for name, modality in (("pano.dcm", "PX"), ("bw.dcm", "IO")):
        data = dental_object(
            modality, rows=20, columns=30, StudyInstanceUID=study, name="Doe^Jane", patient_id="C-1"
        )
        (source / name).write_bytes(data)
    (source / "notes.txt").write_text("not DICOM")
    done = subprocess.run(
        [str(CLI), "anonymize", str(source), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "2 de-identified" in done.stderr and "1 skipped" in done.stderr
    outputs = [dcmread(p) for p in sorted((tmp_path / "out").iterdir())]
    originals = {dcmread(p).Modality: dcmread(p) for p in source.glob("*.dcm")}
    assert len(outputs) == 2
    for out in outputs:
        original = originals[out.Modality]
        assert str(out.PatientName) != "Doe^Jane" and out.PatientID != "C-1"
        assert out.PatientBirthDate != original.PatientBirthDate
        assert out.StudyInstanceUID != study and out.SOPInstanceUID != original.SOPInstanceUID
        assert out.PatientIdentityRemoved == "YES"
        assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert np.array_equal(out.pixel_array, original.pixel_array)
    assert outputs[0].StudyInstanceUID == outputs[1].StudyInstanceUID  # still one study
    assert outputs[0].PatientID == outputs[1].PatientID  # still one patient


def test_private_attributes_are_removed(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(CLI), "anonymize", str(CORPUS / "dicom" / "mr_j2k_lossless_philips.dcm"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (written,) = tmp_path.iterdir()
    assert not any(element.tag.is_private for element in dcmread(written))
