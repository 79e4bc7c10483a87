"""`orca-imaging anonymize IN OUT`: de-identified copies of DICOM files for demo and test
environments (PS3.15 Annex E, Basic Application Level Confidentiality Profile).

dicognito does the replacing: names, identifiers, addresses and UIDs get new values and
dates shift into the past, consistently across all the files of one run, so studies and
series stay grouped. On top of it, private attributes are removed (the basic profile keeps
none) and the object says what was done (Patient Identity Removed, the profile's code).
Pixel data is not touched: burned-in text is not detected, so `BurnedInAnnotation` other
than "NO" is reported for a person to check.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset

from orca_imaging.errors import FileRejectedError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

BASIC_PROFILE = ("113100", "DCM", "Basic Application Confidentiality Profile")


@dataclass(frozen=True)
class Deidentified:
    source: Path
    output: Path | None
    problem: str | None  # why it was not written, or what a person should check


def deidentify(paths: Iterable[Path], out_dir: Path) -> list[Deidentified]:
    from dicognito.anonymizer import Anonymizer  # a dev tool: not shipped to Lambda

    anonymizer = Anonymizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = dcmread(path, force=True)
                if "SOPInstanceUID" not in dataset:
                    raise FileRejectedError("not_dicom", "not a DICOM object")
                anonymizer.anonymize(dataset)
                _mark(dataset)
                output = out_dir / f"{dataset.SOPInstanceUID}.dcm"
                dataset.save_as(output, enforce_file_format="PixelData" in dataset)
        except (FileRejectedError, OSError, ValueError, AttributeError) as e:
            results.append(Deidentified(path, None, f"skipped: {getattr(e, 'message', type(e).__name__)}"))
            continue
        burned_in = str(dataset.get("BurnedInAnnotation", "")).upper()
        results.append(
            Deidentified(
                path, output, "check pixels: burned-in annotation" if burned_in not in ("", "NO") else None
            )
        )
    return results


def _mark(dataset: Dataset) -> None:
    """Remove private attributes and record the de-identification (PS3.15 E.1.1)."""
    dataset.remove_private_tags()
    dataset.PatientIdentityRemoved = "YES"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE
    dataset.DeidentificationMethodCodeSequence = [code]
