"""DICOM ingest, pure part: every corpus object read as pydicom reads it, categories and
codes, dose, previews wherever a decoder can decode, and every broken object's reason."""

from __future__ import annotations

import io
import json
import subprocess
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from orca_imaging import dicom, volumes
from orca_imaging.errors import FileRejectedError
from orca_imaging.models import ImageCategory
from tests.conftest import CORPUS, corpus_files, damaged_copies, require_tool
from tests.fixtures.dental_dicom import dental_object, rle_object, with_ds, with_vr

DICOM_FILES = corpus_files("dicom")


def pydicom_reads(path: Path) -> tuple[object, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, force=True)
    keywords = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")
    return tuple(ds.get(keyword) or None for keyword in keywords)


def decodable(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dcmread(path, force=True).pixel_array  # noqa: B018 (decoding is the point)
        except Exception:
            return False
    return True


@pytest.mark.parametrize("path", DICOM_FILES, ids=lambda p: p.name)
def test_every_corpus_object_is_read_as_pydicom_reads_it(path: Path) -> None:
    data = path.read_bytes()
    dataset = dicom.read_dicom(data)
    summary = dicom.describe(dataset)
    uids = summary["uids"]
    assert (
        uids.get("study"),
        uids.get("series"),
        uids["instance"],
        uids["sopClass"],
        summary["acquisition"].get("modality"),
    ) == tuple(str(v) if v is not None else None for v in pydicom_reads(path))
    category, code = dicom.categorise(dataset)
    expected = ImageCategory.CBCT if summary["acquisition"].get("modality") == "CT" else ImageCategory.OTHER
    assert (category, code) == (expected, "CBCT" if expected == ImageCategory.CBCT else None)
    document = dicom.dicom_json(dataset)
    assert "7FE00010" not in document and document["00080018"]["Value"] == [uids["instance"]]
    preview = dicom.render_preview(data, dataset)
    if decodable(path):
        assert preview.unavailable is None
        names = {v.name: v for v in preview.variants}
        assert set(names) == {"thumb.jpg", "preview.jpg"}
        assert max(names["preview.jpg"].width, names["preview.jpg"].height) <= 800
        assert max(names["thumb.jpg"].width, names["thumb.jpg"].height) <= 150
    else:
        assert preview.variants == [] and preview.unavailable


BAD_DICOM = {
    "dcm_cut_half_ct_small.dcm": "truncated",
    "dcm_pixeldata_truncated.dcm": "truncated",
    "dcm_rtplan_truncated.dcm": "truncated",
    "dcm_meta_missing_transfer_syntax.dcm": "not_dicom",
    "dcm_no_meta_stray_leading_byte.dcm": "not_dicom",
    "not_dicom_jpeg_renamed.dcm": "not_dicom",
}
# Valid objects whose pixel data no installed decoder reads: kept, with the reason.
KEPT_WITHOUT_PREVIEW = (
    "dcm_bad_vr_value.dcm",
    "dcm_j2k_embedded_seq_delimiter.dcm",
    "dcm_jpeg12bit_invalid_sos.dcm",
)


@pytest.mark.parametrize(("name", "reason"), BAD_DICOM.items())
def test_a_broken_object_is_rejected_with_its_reason(name: str, reason: str) -> None:
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom((CORPUS / "bad" / name).read_bytes())
    assert caught.value.reason == reason and caught.value.message


@pytest.mark.parametrize("name", KEPT_WITHOUT_PREVIEW)
def test_a_valid_object_with_undecodable_pixels_is_kept_without_preview(name: str) -> None:
    data = (CORPUS / "bad" / name).read_bytes()
    dataset = dicom.read_dicom(data)
    preview = dicom.render_preview(data, dataset)
    assert preview.variants == [] and preview.unavailable and "could not be decoded" in preview.unavailable
    assert dicom.dicom_json(dataset)["00080018"]["Value"] == [str(dataset.SOPInstanceUID)]


def test_the_bad_dicom_list_covers_every_dicom_in_bad() -> None:
    sniffed_dicom = {p.name for p in (CORPUS / "bad").iterdir() if p.suffix.lower() == ".dcm"}
    assert sniffed_dicom == set(BAD_DICOM) | set(KEPT_WITHOUT_PREVIEW)


@pytest.mark.parametrize(
    ("modality", "attributes", "category", "code"),
    [
        ("PX", {}, ImageCategory.PANORAMIC, "OPG"),
        ("IO", {"SeriesDescription": "Bitewing left"}, ImageCategory.BITEWING, "BW"),
        ("IO", {"ImageType": ["ORIGINAL", "PRIMARY", "BITEWING"]}, ImageCategory.BITEWING, "BW"),
        ("IO", {"SeriesDescription": "Upper molar"}, ImageCategory.PERIAPICAL, "PA"),
        ("DX", {"StudyDescription": "Lateral Ceph"}, ImageCategory.CEPHALOMETRIC, "CEPH"),
        ("DX", {"ViewPosition": "LAT", "BodyPartExamined": "SKULL"}, ImageCategory.CEPHALOMETRIC, "CEPH"),
        ("CR", {"ViewPosition": "PA", "BodyPartExamined": "HEAD"}, ImageCategory.CEPHALOMETRIC, "CEPH"),
        ("DX", {"ViewPosition": "PA", "BodyPartExamined": "CHEST"}, ImageCategory.OTHER, None),
        ("DX", {}, ImageCategory.OTHER, None),
    ],
)
def test_categories_follow_the_rules(
    modality: str, attributes: dict[str, object], category: ImageCategory, code: str | None
) -> None:
    dataset = dicom.read_dicom(dental_object(modality, rows=40, columns=60, **attributes))
    assert dicom.categorise(dataset) == (category, code)


def test_a_ceph_carries_its_calibration_dose_and_exposure() -> None:
    data = dental_object(
        "DX",
        StudyDescription="Lateral Ceph",
        ImagerPixelSpacing=[0.1, 0.1],
        PixelSpacing=[0.11, 0.11],
        ImageAndFluoroscopyAreaDoseProduct=0.052,
        KVP=80,
        XRayTubeCurrent=10,
        ExposureTime=1200,
        Exposure=12,
    )
    dataset = dicom.read_dicom(data)
    summary = dicom.describe(dataset)
    assert summary["calibration"] == {"pixelSpacing": [0.11, 0.11], "imagerPixelSpacing": [0.1, 0.1]}
    assert dicom.radiation_dose(dataset) == {
        "doses": [{"quantity": "DAP", "value": 0.052, "unit": "dGy*cm2"}],
        "exposure": {"kVp": 80.0, "tubeCurrentmA": 10.0, "exposureTimeMs": 1200.0, "mAs": 12.0},
    }
    assert dicom.capture_time(dataset) == datetime(2026, 10, 15, 10, 15, tzinfo=UTC)
    assert summary["equipment"] == {"manufacturer": "Planmeca", "model": "ProMax 2D"}


def test_a_panoramic_at_full_size_gets_its_preview() -> None:
    data = dental_object("PX", rows=1400, columns=2900)
    preview = dicom.render_preview(data, dicom.read_dicom(data))
    sizes = {v.name: (v.width, v.height) for v in preview.variants}
    assert sizes == {"preview.jpg": (800, 386), "thumb.jpg": (150, 72)}


def picture(data: bytes) -> np.ndarray:
    preview = dicom.render_preview(data, dicom.read_dicom(data))
    (found,) = [v for v in preview.variants if v.name == "preview.jpg"]
    return np.asarray(Image.open(io.BytesIO(found.data)).convert("L"), dtype=np.float64)


def test_monochrome1_is_inverted_and_a_window_is_applied() -> None:
    normal = picture(dental_object("DX", rows=60, columns=80))
    inverted = picture(dental_object("DX", rows=60, columns=80, PhotometricInterpretation="MONOCHROME1"))
    assert np.corrcoef(normal.ravel(), inverted.ravel())[0, 1] < -0.95
    narrow = picture(dental_object("DX", rows=60, columns=80, WindowCenter=2048, WindowWidth=200))
    # A narrow window pushes most pixels to black or white.
    assert np.mean((narrow < 10) | (narrow > 245)) > np.mean((normal < 10) | (normal > 245)) + 0.2


def test_a_dose_report_gives_its_totals_with_their_units() -> None:
    from pydicom.uid import generate_uid

    from tests.fixtures.dental_dicom import ct_dose_report

    dataset = dicom.read_dicom(ct_dose_report(generate_uid(), dlp=88.5, ctdi=[3.1, 2.9]))
    assert dicom.is_dose_report(dataset)
    assert dicom.radiation_dose(dataset) == {
        "doses": [{"quantity": "DLP", "value": 88.5, "unit": "mGy.cm"}],
        "exposure": {},
        "source": "rdsr",
        "irradiationEvents": 2,
        "ctdiVolPerEvent": [3.1, 2.9],
    }
    assert dicom.render_preview(b"", dataset).unavailable == "the object has no pixel data"


def test_a_few_frames_are_shown_side_by_side_and_many_by_the_middle_one() -> None:
    def frames(count: int) -> bytes:
        from pydicom import dcmread

        ds = dcmread(io.BytesIO(dental_object("DX", rows=40, columns=30)))
        ramp = np.stack([np.full((40, 30), 400 * (i + 1), dtype=np.uint16) for i in range(count)])
        ds.NumberOfFrames, ds.PixelData = count, ramp.tobytes()
        out = io.BytesIO()
        ds.save_as(out)
        return out.getvalue()

    few = frames(3)
    sizes = {v.name: (v.width, v.height) for v in dicom.render_preview(few, dicom.read_dicom(few)).variants}
    assert sizes["preview.jpg"] == (90, 40)  # three 30-wide frames in a row
    many = frames(9)
    preview = dicom.render_preview(many, dicom.read_dicom(many))
    assert {v.name: (v.width, v.height) for v in preview.variants}["preview.jpg"] == (30, 40)


def ingest_steps(data: bytes) -> FileRejectedError | None:
    """Every step the ingest takes with an object's bytes; its rejection, if it is rejected."""
    try:
        dataset = dicom.read_dicom(data)
    except FileRejectedError as rejection:
        return rejection
    recorded = [dicom.describe(dataset), dicom.radiation_dose(dataset), dicom.dicom_json(dataset)]
    json.dumps(recorded, allow_nan=False)  # what the record holds, as a browser must parse it
    dicom.categorise(dataset)
    dicom.patient_of(dataset)
    dicom.capture_time(dataset)
    dicom.render_preview(data, dataset)
    volumes.placement(dataset)  # as a CBCT slice: its place in the series, and its window
    volumes.window_of(dataset)
    return None


BAD_FILES = [p for p in corpus_files("bad") if p.suffix == ".dcm"]


@pytest.mark.parametrize("path", DICOM_FILES + BAD_FILES, ids=lambda p: p.name)
def test_a_damaged_object_is_taken_in_or_rejected_with_a_reason_never_crashes(path: Path) -> None:
    # Anything else escaping a step would fail the delivery again and again, to the
    # dead-letter queue, with no reason on the record. This sweep found five ways it did:
    # a cut inside an element's tag or length, a deflated body cut short, an unknown VR, a
    # length its VR cannot have, and a panic in the RLE decoder (a BaseException).
    reasons = {"truncated", "not_dicom", "invalid_dicom"}
    for data in damaged_copies(path.read_bytes(), path.name):
        rejection = ingest_steps(data)
        assert rejection is None or (rejection.reason in reasons and rejection.message)


def test_a_standard_element_that_cannot_be_read_rejects_the_object_by_its_tag() -> None:
    data = with_vr(dental_object("PX", rows=20, columns=30), (0x0008, 0x0060), b"CS", b"C9")
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data)
    assert caught.value.reason == "invalid_dicom" and "(0008,0060)" in caught.value.message


def test_a_private_element_that_cannot_be_read_is_left_out_and_the_object_taken_in() -> None:
    with_private = dcmread(io.BytesIO(dental_object("PX", rows=20, columns=30)))
    with_private.add_new(0x00090010, "LO", "ORCA TEST")  # the private block's creator
    with_private.add_new(0x00091010, "LO", "vendor's own")
    out = io.BytesIO()
    with_private.save_as(out)
    data = with_vr(out.getvalue(), (0x0009, 0x1010), b"LO", b"Q7")
    dataset = dicom.read_dicom(data)
    assert 0x00091010 not in dataset and dataset[0x00090010].value == "ORCA TEST"
    assert "00091010" not in dicom.dicom_json(dataset) and dicom.render_preview(data, dataset).variants


def test_rle_runs_past_the_frame_keep_the_object_without_a_preview() -> None:
    fill = bytes([0x81, 7])  # one byte repeated 128 times: one segment's 64 bytes, twice over
    literal = bytes([63]) + bytes(64)  # 64 bytes as they are: one segment exactly
    sound = rle_object([literal, literal])
    assert dicom.render_preview(sound, dicom.read_dicom(sound)).variants
    # pylibjpeg-rle panics writing past the frame: a BaseException, not an Exception.
    overrun = rle_object([literal, fill * 3])
    preview = dicom.render_preview(overrun, dicom.read_dicom(overrun))
    assert preview.variants == []
    assert preview.unavailable == "pixel data could not be decoded: the decoder panicked"


def test_numbers_json_cannot_hold_are_null_in_the_record() -> None:
    data = dental_object("DX", rows=20, columns=30, PixelSpacing=[0.1, 0.1], KVP=80)
    data = with_ds(with_ds(data, (0x0028, 0x0030), b"nan\\inf"), (0x0018, 0x0060), b"-inf")
    document = dicom.dicom_json(dicom.read_dicom(data))
    assert document["00280030"]["Value"] == [None, None] and document["00180060"]["Value"] == [None]
    json.dumps(document, allow_nan=False)


# What dcmtk writes: (tool, option, transfer syntax, lossless).
DCMTK_SYNTAXES = [
    ("dcmconv", "+ti", "1.2.840.10008.1.2", True),  # implicit VR little endian
    ("dcmconv", "+tb", "1.2.840.10008.1.2.2", True),  # explicit VR big endian
    ("dcmconv", "+td", "1.2.840.10008.1.2.1.99", True),  # deflated
    ("dcmcjpeg", "+eb", "1.2.840.10008.1.2.4.50", False),  # JPEG baseline (8-bit)
    ("dcmcjpeg", "+ee", "1.2.840.10008.1.2.4.51", False),  # JPEG extended (12-bit)
    ("dcmcjpeg", "+el", "1.2.840.10008.1.2.4.57", True),  # JPEG lossless
    ("dcmcjpeg", "+e1", "1.2.840.10008.1.2.4.70", True),  # JPEG lossless, first-order prediction
    ("dcmcjpls", "+el", "1.2.840.10008.1.2.4.80", True),  # JPEG-LS lossless
    ("dcmcjpls", "+en", "1.2.840.10008.1.2.4.81", False),  # JPEG-LS near-lossless
    ("dcmcrle", "+ff", "1.2.840.10008.1.2.5", True),  # RLE, a fragment per frame
]
TRANSCODED_SOURCES = {
    "12-bit radiograph": lambda: dental_object("IO", rows=300, columns=400),
    "signed CT": lambda: (CORPUS / "dicom" / "ct_small_explicit_le.dcm").read_bytes(),
    "RGB ultrasound": lambda: (CORPUS / "dicom" / "us_rgb_big_endian.dcm").read_bytes(),
}


def preview_pixels(data: bytes) -> np.ndarray:
    preview = dicom.render_preview(data, dicom.read_dicom(data))
    (picture,) = [v for v in preview.variants if v.name == "preview.jpg"]
    return np.asarray(Image.open(io.BytesIO(picture.data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(
    ("source", "tool", "option", "syntax", "lossless"),
    [
        (source, *syntax)
        for source in TRANSCODED_SOURCES
        for syntax in DCMTK_SYNTAXES
        # dcmcjpls writes no near-lossless JPEG-LS of signed pixels.
        if (source, syntax[2]) != ("signed CT", "1.2.840.10008.1.2.4.81")
    ],
    ids=str,
)
def test_one_object_in_every_transfer_syntax_dcmtk_writes_gives_the_same_preview(
    tmp_path: Path, source: str, tool: str, option: str, syntax: str, lossless: bool
) -> None:
    # Devices send what they were set up to: the preview must not depend on it (a decoder
    # missing, or a window taken from the wrong bit depth, would show here).
    require_tool(tool)
    original = tmp_path / "original.dcm"
    original.write_bytes(TRANSCODED_SOURCES[source]())
    converted = tmp_path / "converted.dcm"
    subprocess.run([tool, option, str(original), str(converted)], check=True, capture_output=True)
    data = converted.read_bytes()
    assert str(dicom.read_dicom(data).file_meta.TransferSyntaxUID) == syntax
    difference = np.abs(preview_pixels(data) - preview_pixels(original.read_bytes())).mean()
    # Lossy coding moved it by 0.4-2.1 levels of 255 here.
    assert difference == 0 if lossless else difference < 3


@pytest.mark.parametrize("element", [b"\x08\x00\x60\x00CS", b"\x28\x00\x30\x00DS"])  # before; after Rows
@pytest.mark.parametrize("inside", [0, 2, 5])  # on its boundary; inside its tag; its length
def test_an_image_cut_before_its_pixel_data_is_truncated(element: bytes, inside: int) -> None:
    # pydicom ends the dataset quietly there: only the image's missing pixels tell.
    data = (CORPUS / "dicom" / "ct_small_explicit_le.dcm").read_bytes()
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data[: data.index(element) + inside])
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize("element", [b"\x08\x00\x08\x00CS", b"\x08\x00\x16\x00UI"])  # ImageType; SOP Class
@pytest.mark.parametrize("inside", [0, 2, 5])
def test_an_object_cut_before_its_sop_uids_is_truncated_not_foreign(element: bytes, inside: int) -> None:
    data = (CORPUS / "dicom" / "ct_small_explicit_le.dcm").read_bytes()
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data[: data.index(element) + inside])
    assert caught.value.reason == "truncated" and "SOP" in caught.value.message


def test_a_part_10_file_of_file_meta_alone_is_truncated() -> None:
    data = (CORPUS / "dicom" / "ct_small_explicit_le.dcm").read_bytes()
    group_length = int(dicom.read_dicom(data).file_meta.FileMetaInformationGroupLength)
    # The preamble and DICM, the group's length element (12 bytes), then the rest of the group.
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data[: 132 + 12 + group_length])
    assert caught.value.reason == "truncated"


def test_a_dicomdir_has_no_sop_uids_and_is_no_object() -> None:
    data = Path(get_testdata_file("DICOMDIR")).read_bytes()  # type: ignore[arg-type]
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data)
    assert caught.value.reason == "not_dicom"


def test_a_deflated_object_cut_short_is_truncated() -> None:
    data = (CORPUS / "dicom" / "ot_deflated.dcm").read_bytes()
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data[: len(data) // 2])
    assert caught.value.reason == "truncated" and "deflated" in caught.value.message


def test_a_file_cut_inside_a_meta_elements_length_is_truncated() -> None:
    data = (CORPUS / "dicom" / "ct_small_explicit_le.dcm").read_bytes()
    version = data.index(b"\x02\x00\x01\x00OB")  # (0002,0001): OB, two reserved bytes, a 4-byte length
    with pytest.raises(FileRejectedError) as caught:
        dicom.read_dicom(data[: version + 10])
    assert caught.value.reason == "truncated"
