"""`orca-imaging inspect` over real files, as someone checking a migration folder would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CORPUS

CLI = Path(sys.executable).parent / "orca-imaging"
BAD_PHOTOS = {
    "jpeg_32_bytes_truncated_exif.jpg": "truncated",
    "jpeg_cut_half_canon.jpg": "truncated",
    "jpeg_truncated_real.jpg": "truncated",
    "heic_cut_30pct.heic": "truncated",  # decodes without error: missing tiles come back flat grey
}


def run(*paths: Path) -> tuple[list[dict[str, object]], str]:
    done = subprocess.run([str(CLI), "inspect", *map(str, paths)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_every_real_photo_is_accepted_with_what_the_pipeline_reads() -> None:
    reports, summary = run(CORPUS / "photos")
    assert len(reports) == len([p for p in (CORPUS / "photos").rglob("*") if p.is_file()])
    assert {r["outcome"] for r in reports} == {"accepted"}
    sx60 = next(r for r in reports if str(r["file"]).endswith("canon_sx60_orient6.jpg"))
    assert (sx60["width"], sx60["height"]) == (1536, 2048)  # after EXIF orientation 6
    assert sx60["capturedAt"].startswith("2015-02-09T22:47:44")  # type: ignore[union-attr]
    assert sx60["exif"]["model"] == "Canon PowerShot SX60 HS"  # type: ignore[index]
    assert set(sx60["variants"]) == {"thumb.jpg", "preview.jpg", "full.jpg"}  # type: ignore[arg-type]
    assert summary.strip().endswith(f"{len(reports)} accepted, 0 rejected")


def test_broken_photos_are_rejected_with_their_reason() -> None:
    reports, _ = run(*(CORPUS / "bad" / name for name in BAD_PHOTOS))
    assert {Path(str(r["file"])).name: (r["outcome"], r["reason"]) for r in reports} == {
        name: ("rejected", reason) for name, reason in BAD_PHOTOS.items()
    }


def test_a_jpeg_named_dcm_is_inspected_as_the_jpeg_it_is() -> None:
    (report,), _ = run(CORPUS / "bad" / "not_dicom_jpeg_renamed.dcm")
    assert (report["kind"], report["outcome"]) == ("jpeg", "accepted")
