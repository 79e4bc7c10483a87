"""DICOM objects: read and validate, describe, categorise, read the dose, render a preview.

Pure: bytes in, models out, no AWS. Reading accepts Part-10 files with a preamble, files cut
before the preamble (starting at the file meta group) and raw datasets with no file meta at
all (pydicom tries the little-endian transfer syntaxes). What is not a DICOM object, or is
one cut short, is rejected with a specific reason. An object that is valid but whose pixel
data no installed decoder can decode is kept; only its preview is missing, with the reason.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image
from pydicom import config, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from orca_imaging.errors import FileRejectedError
from orca_imaging.models import ImageCategory
from orca_imaging.variants import PREVIEW_PX, Variant, small_variants

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pydicom.tag import BaseTag

# Devices write many small oddities (a UID with a leading zero, a DS with too many digits);
# the object is judged here, by what matters, not by pydicom's warning per value.
config.settings.reading_validation_mode = config.IGNORE
# pydicom's own log lines quote values (names, IDs): PHI, so only its errors are let through.
logging.getLogger("pydicom").setLevel(logging.ERROR)

DEFLATED_LE = "1.2.840.10008.1.2.1.99"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
DEFER_BYTES = 64 * 1024
# Binary values above this are left out of `dicomData` (pixel data, overlays, icons, LUTs).
BULK_BYTES = 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF


def read_dicom(data: bytes) -> Dataset:
    """The dataset, or FileRejectedError: `not_dicom`, `invalid_dicom` or `truncated`.

    Every element but the deferred large ones is read here, so an object with an element
    that cannot be read (a VR no standard knows, a length its VR cannot have) is rejected
    with that element's tag, rather than failing later in whatever first touches it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on every oddity; we judge below
            # Values over the threshold (pixel data, above all) are not read now: metadata
            # costs the same for a 16x16 slice and a 200 MB volume. They are read on access.
            dataset = dcmread(io.BytesIO(data), force=True, defer_size=DEFER_BYTES)
    except struct.error as e:  # pydicom unpacks a tag or a length from fewer bytes than it needs
        raise FileRejectedError("truncated", "the file ends inside an element's tag or length") from e
    except zlib.error as e:
        if "truncated" in str(e) or "incomplete" in str(e):
            raise FileRejectedError("truncated", "the deflated dataset ends early") from e
        raise FileRejectedError("invalid_dicom", "the deflated dataset cannot be inflated") from e
    except BytesLengthException as e:  # its message quotes the value: not passed on
        raise FileRejectedError(
            "invalid_dicom", "an element of the file meta group has a length its VR cannot have"
        ) from e
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, NotImplementedError) as e:
        raise FileRejectedError("not_dicom", "the file is not a DICOM object") from e
    missing = [name for name in ("SOPClassUID", "SOPInstanceUID") if _absent(dataset, name)]
    if len(missing) == 2 and _cut_before_its_uids(dataset):
        raise FileRejectedError("truncated", "the file ends before its SOP Class and Instance UIDs")
    if missing:
        raise FileRejectedError(
            "not_dicom" if len(missing) == 2 else "invalid_dicom",
            f"not a DICOM object: no {' and no '.join(missing)}",
        )
    if _transfer_syntax(dataset) != DEFLATED_LE:  # a deflated body's offsets are not the file's
        for tag, element in dataset._dict.items():
            if not isinstance(element, RawDataElement) or element.length == _UNDEFINED_LENGTH:
                continue
            if element.value_tell + element.length > len(data):
                raise FileRejectedError(
                    "truncated",
                    f"the file ends inside element {tag}: it holds {len(data) - element.value_tell} "
                    f"of its {element.length} bytes",
                )
    unreadable = _unreadable_element(dataset)
    if unreadable is not None:
        raise FileRejectedError("invalid_dicom", f"element {unreadable} cannot be read as its VR says")
    if _image_without_pixels(dataset):
        raise FileRejectedError("truncated", "the object is an image but ends before its pixel data")
    return dataset


_SOP_INSTANCE_UID = 0x00080018


def _cut_before_its_uids(dataset: Dataset) -> bool:
    """A Part 10 file (pydicom found its preamble and DICM) whose dataset stops before
    (0008,0016) and (0008,0018), among the first elements of every object: it was cut there,
    or right after its file meta. pydicom reads what comes before the cut and stops quietly.
    (A DICOMDIR has no SOP UIDs either, but holds group 0004: it is no object, and stays
    `not_dicom`.)"""
    part_10 = getattr(dataset, "preamble", None) is not None
    return part_10 and all(0x00080000 <= tag < _SOP_INSTANCE_UID for tag in dataset.keys())


# Where an image's samples are: pixel data (integer, float, double float), or the spectroscopy
# data an MR spectroscopy object has instead.
_SAMPLE_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009, 0x56000020)


def _image_without_pixels(dataset: Dataset) -> bool:
    """An image (an "... Image Storage" SOP class, or rows and columns) with no samples: the
    file was cut before its pixel data. pydicom ends the dataset quietly where the file ends
    on an element's boundary, or inside an element's header, so nothing else would tell."""
    sop_class = UID(str(_get(dataset, "SOPClassUID") or ""))
    is_image = "Image Storage" in sop_class.name or (
        bool(_get(dataset, "Rows")) and bool(_get(dataset, "Columns"))
    )
    return is_image and not any(tag in dataset for tag in _SAMPLE_TAGS)


def _absent(dataset: Dataset, keyword: str) -> bool:
    """Whether the element is missing or empty. One that is there but cannot be read is
    not absent: `_unreadable_element` names it."""
    try:
        return not _text(dataset.get(keyword))
    except Exception:  # noqa: BLE001  # whatever pydicom raises converting it
        return False


def _unreadable_element(dataset: Dataset) -> BaseTag | None:
    """The first standard element, in items of sequences too, whose value pydicom cannot
    convert. A private one that cannot be read is dropped from the dataset, not the file:
    vendors write their own elements loosely, and none of ours reads them. Deferred values
    (large, not sequences) are left for whatever reads them: pixel data is judged by the
    preview, which keeps the object when it cannot be decoded."""
    for tag, raw in list(dataset._dict.items()):
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length and raw.VR != "SQ":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                element = dataset[tag]
        except Exception:  # noqa: BLE001  # NotImplementedError, BytesLengthException, struct.error, ...
            if not tag.is_private:
                return tag
            del dataset[tag]
            continue
        if element.VR == "SQ":
            for item in element.value:
                unreadable = _unreadable_element(item)
                if unreadable is not None:
                    return unreadable
    return None


def _transfer_syntax(dataset: Dataset) -> str | None:
    meta = getattr(dataset, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid else None


# ---------------------------------------------------------------- description
def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value) or None
    text = str(value).strip().replace("\x00", "")
    return text or None


def first_number(value: Any) -> float | None:
    """The first of a number element's values, if it is a finite number."""
    try:
        number = float(value[0] if isinstance(value, MultiValue | list | tuple) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _get(dataset: Dataset, keyword: str) -> Any:
    """A value, or None when it is absent or cannot be parsed (e.g. an IS of "1A")."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dataset.get(keyword)
    except (ValueError, TypeError, OverflowError):
        return None


def _date(value: Any) -> date | None:
    text = _text(value)
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _time(value: Any) -> time | None:
    text = (_text(value) or "").split(".")[0]
    for pattern in ("%H%M%S", "%H%M", "%H"):
        try:
            return datetime.strptime(text, pattern).time() if text else None
        except ValueError:
            continue
    return None


def capture_time(dataset: Dataset) -> datetime | None:
    """Acquisition, else content, else series, else study date and time (read as UTC
    unless the object states its offset from UTC)."""
    for day_tag, time_tag in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        day = _date(_get(dataset, day_tag))
        if day is not None:
            moment = datetime.combine(day, _time(_get(dataset, time_tag)) or time())
            return moment.replace(tzinfo=UTC)
    return None


def _person_name(value: Any) -> dict[str, str] | None:
    if not value:
        return None
    name = PersonName(value) if not isinstance(value, PersonName) else value
    parts = {"family": name.family_name, "given": name.given_name, "middle": name.middle_name}
    return {k: v for k, v in parts.items() if v} or None


@dataclass(frozen=True)
class DicomPatient:
    name: dict[str, str] | None  # PN components: family, given, middle
    patient_id: str | None
    birth_date: date | None
    sex: str | None


def patient_of(dataset: Dataset) -> DicomPatient:
    return DicomPatient(
        name=_person_name(_get(dataset, "PatientName")),
        patient_id=_text(_get(dataset, "PatientID")),
        birth_date=_date(_get(dataset, "PatientBirthDate")),
        sex=_text(_get(dataset, "PatientSex")),
    )


# The record's text fields, by group, and the attribute each is read from.
_TEXT_FIELDS = {
    "uids": {
        "study": "StudyInstanceUID",
        "series": "SeriesInstanceUID",
        "instance": "SOPInstanceUID",
        "sopClass": "SOPClassUID",
    },
    "acquisition": {
        "modality": "Modality",
        "bodyPart": "BodyPartExamined",
        "viewPosition": "ViewPosition",
        "imageType": "ImageType",
        "studyDescription": "StudyDescription",
        "seriesDescription": "SeriesDescription",
        "studyDate": "StudyDate",
        "studyTime": "StudyTime",
        "acquisitionDate": "AcquisitionDate",
        "acquisitionTime": "AcquisitionTime",
    },
    "equipment": {
        "manufacturer": "Manufacturer",
        "model": "ManufacturerModelName",
        "station": "StationName",
        "deviceSerial": "DeviceSerialNumber",
    },
}


def describe(dataset: Dataset) -> dict[str, Any]:
    """The fields the record shows, grouped as the issue lists them (None left out)."""
    frames = _get(dataset, "NumberOfFrames")
    groups: dict[str, Any] = {
        group: {name: _text(_get(dataset, keyword)) for name, keyword in fields.items()}
        for group, fields in _TEXT_FIELDS.items()
    }
    groups["geometry"] = {
        "rows": _get(dataset, "Rows"),
        "columns": _get(dataset, "Columns"),
        "frames": int(frames) if isinstance(frames, int | float) else (1 if "PixelData" in dataset else 0),
        "bitsAllocated": _get(dataset, "BitsAllocated"),
        "bitsStored": _get(dataset, "BitsStored"),
        "photometric": _text(_get(dataset, "PhotometricInterpretation")),
    }
    groups["calibration"] = {
        "pixelSpacing": finite_numbers(_get(dataset, "PixelSpacing"), 2),
        "imagerPixelSpacing": finite_numbers(_get(dataset, "ImagerPixelSpacing"), 2),
        "sliceThickness": first_number(_get(dataset, "SliceThickness")),
    }
    groups["series"] = {
        "instanceNumber": first_number(_get(dataset, "InstanceNumber")),
        "imagesInAcquisition": first_number(_get(dataset, "ImagesInAcquisition")),
    }
    described: dict[str, Any] = {
        key: {k: v for k, v in group.items() if v is not None} for key, group in groups.items()
    }
    described["transferSyntax"] = _transfer_syntax(dataset) or "none in file (read as little endian)"
    return described


def finite_numbers(value: Any, count: int) -> list[float] | None:
    """A multi-valued number element's `count` values, or None when it is missing, holds
    another count, or holds text, NaN or infinity (a device's bug, or damage)."""
    if not isinstance(value, MultiValue | list | tuple) or len(value) != count:
        return None
    numbers = [n for n in map(first_number, value) if n is not None]
    return numbers if len(numbers) == count else None


def dicom_json(dataset: Dataset) -> dict[str, Any]:
    """The whole dataset as DICOM JSON (PS3.18 F.2) without pixel data and large binaries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Values over the threshold come back as {"BulkDataURI": ...}; those are then left out.
        # Pixel data is left out before conversion, so its deferred bytes are never read.
        described = Dataset(
            {tag: dataset.get_item(tag) for tag in dataset.keys() if not _is_pixels(f"{tag:08X}")}
        )
        described.file_meta = getattr(dataset, "file_meta", FileMetaDataset())
        document = described.to_json_dict(
            bulk_data_threshold=BULK_BYTES,
            bulk_data_element_handler=lambda _: "",
            suppress_invalid_tags=True,  # a value that cannot be read (an IS of "1A") is left out
        )
    kept: dict[str, Any] = _plain_json(document)
    return kept


def _is_pixels(tag: str) -> bool:
    """Pixel data (7FE0,00xx) and overlay bitmaps (60xx,3000), however small."""
    return tag.startswith("7FE0") or (tag.startswith("60") and tag.endswith("3000"))


def _plain_json(node: Any) -> Any:
    """The document without bulk data references, and with null for any value JSON cannot
    hold: a DS of "NaN" or "inf" (which devices write) would make the record's JSON
    unreadable to a browser."""
    if isinstance(node, dict):
        return {
            k: _plain_json(v) for k, v in node.items() if not (isinstance(v, dict) and "BulkDataURI" in v)
        }
    if isinstance(node, list):
        return [_plain_json(v) for v in node]
    if isinstance(node, float) and not math.isfinite(node):
        return None
    return node


# ---------------------------------------------------------------- categories
@dataclass(frozen=True)
class CategoryRule:
    """One rule: the modalities it applies to, optional evidence, and what it assigns.

    Evidence is words looked for (case-insensitively) in the image type, the series and
    study descriptions, the view position and the body part. A rule with `views` or
    `body_parts` also matches on those attributes exactly.
    """

    modalities: tuple[str, ...]
    category: ImageCategory
    code: str | None
    words: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, rule: dict[str, Any]) -> CategoryRule:
        """A rule as the settings API stores it (see `records.CategoryRuleRequest`)."""
        return cls(
            modalities=tuple(m.upper() for m in rule["modalities"]),
            category=ImageCategory(rule["category"]),
            code=rule.get("code"),
            words=tuple(w.upper() for w in rule.get("words") or ()),
            views=tuple(v.upper() for v in rule.get("views") or ()),
            body_parts=tuple(b.upper() for b in rule.get("bodyParts") or ()),
        )

    def matches(self, modality: str, dataset: Dataset) -> bool:
        if modality not in self.modalities:
            return False
        if not (self.words or self.views or self.body_parts):
            return True
        text = " ".join(
            _text(_get(dataset, tag)) or ""
            for tag in (
                "ImageType",
                "SeriesDescription",
                "StudyDescription",
                "ViewPosition",
                "BodyPartExamined",
            )
        ).upper()
        view = (_text(_get(dataset, "ViewPosition")) or "").upper()
        body = (_text(_get(dataset, "BodyPartExamined")) or "").upper()
        return (
            any(word in text for word in self.words)
            or (bool(self.views) and view in self.views and (not self.body_parts or body in self.body_parts))
            or (not self.views and bool(self.body_parts) and body in self.body_parts)
        )


# First match wins. The spec's short codes: OPG, CEPH, CBCT, PA (periapical), BW (bitewing).
CATEGORY_RULES: tuple[CategoryRule, ...] = (
    CategoryRule(("PX",), ImageCategory.PANORAMIC, "OPG"),
    CategoryRule(("IO",), ImageCategory.BITEWING, "BW", words=("BITEWING", "BITE WING", "BW")),
    CategoryRule(("IO",), ImageCategory.PERIAPICAL, "PA"),
    CategoryRule(
        ("DX", "CR"),
        ImageCategory.CEPHALOMETRIC,
        "CEPH",
        words=("CEPH",),
        views=("LAT", "LL", "RL", "PA", "AP"),
        body_parts=("SKULL", "HEAD"),
    ),
    CategoryRule(("CT",), ImageCategory.CBCT, "CBCT"),
)


def categorise(
    dataset: Dataset, rules: tuple[CategoryRule, ...] = CATEGORY_RULES
) -> tuple[ImageCategory, str | None]:
    modality = (_text(_get(dataset, "Modality")) or "").upper()
    if not modality and _text(_get(dataset, "SOPClassUID")) == ENHANCED_CT_STORAGE:
        modality = "CT"
    for rule in rules:
        if rule.matches(modality, dataset):
            return rule.category, rule.code
    return ImageCategory.OTHER, None


# ---------------------------------------------------------------- radiation dose
# (keyword, quantity, unit) of the dose attributes an image may carry (PS3.3 C.8.7.8, C.8.15.2.1, C.8.7.10).
_DOSE_TAGS = (
    ("ImageAndFluoroscopyAreaDoseProduct", "DAP", "dGy*cm2"),
    ("CTDIvol", "CTDIvol", "mGy"),
    ("EntranceDoseInmGy", "entranceDose", "mGy"),
    ("EntranceDose", "entranceDose", "dGy"),
)
_EXPOSURE_TAGS = (
    ("KVP", "kVp"),
    ("XRayTubeCurrent", "tubeCurrentmA"),
    ("ExposureTime", "exposureTimeMs"),
    ("Exposure", "mAs"),
)


RDSR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.68",  # Radiopharmaceutical Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
}
# DCM codes of the totals a dose report states (PS3.16 TID 10001, 10011, 10012).
_RDSR_TOTALS = {
    "113722": "DAP",  # Dose Area Product Total
    "113813": "DLP",  # CT Dose Length Product Total
    "113725": "doseRP",  # Dose (RP) Total
    "113812": "events",  # Total Number of Irradiation Events
}
_RDSR_EVENT_CTDI = "113830"  # Mean CTDIvol, per CT acquisition


def is_dose_report(dataset: Dataset) -> bool:
    return _text(_get(dataset, "SOPClassUID")) in RDSR_CLASSES


def _content_numbers(items: Any) -> Iterator[tuple[str, float, str]]:
    """(concept code, value, unit code) of every NUM item in an SR content tree."""
    for item in items or []:
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        measured = (item.get("MeasuredValueSequence") or [None])[0]
        if concept is not None and measured is not None and item.get("ValueType") == "NUM":
            unit = (measured.get("MeasurementUnitsCodeSequence") or [None])[0]
            value = first_number(measured.get("NumericValue"))
            if value is not None:
                yield str(concept.CodeValue), value, str(unit.CodeValue) if unit is not None else ""
        yield from _content_numbers(item.get("ContentSequence"))


def dose_report(dataset: Dataset) -> dict[str, Any]:
    """The totals of a Radiation Dose SR, with the units it states, and its CT events' CTDIvol."""
    doses, events = [], 0
    ctdi: list[float] = []
    for code, value, unit in _content_numbers(dataset.get("ContentSequence")):
        quantity = _RDSR_TOTALS.get(code)
        if quantity == "events":
            events = int(value)
        elif quantity:
            doses.append({"quantity": quantity, "value": value, "unit": unit})
        elif code == _RDSR_EVENT_CTDI:
            ctdi.append(value)
    return {
        "doses": doses,
        "exposure": {},
        "source": "rdsr",
        "irradiationEvents": events,
        "ctdiVolPerEvent": ctdi,
    }


def radiation_dose(dataset: Dataset) -> dict[str, Any] | None:
    """The dose and exposure the object records, each dose with its unit; None if none."""
    if is_dose_report(dataset):
        return dose_report(dataset)
    doses = [
        {"quantity": quantity, "value": value, "unit": unit}
        for keyword, quantity, unit in _DOSE_TAGS
        if (value := first_number(_get(dataset, keyword))) is not None
    ]
    exposure = {
        name: value
        for keyword, name in _EXPOSURE_TAGS
        if (value := first_number(_get(dataset, keyword))) is not None
    }
    if not doses and not exposure:
        return None
    return {"doses": doses, "exposure": exposure}


# ---------------------------------------------------------------- preview
@dataclass(frozen=True)
class Preview:
    variants: list[Variant]  # thumbnail and preview; empty when unavailable
    unavailable: str | None  # why there is no preview, when there is none


# Up to this many frames are shown side by side (a few views of one exposure); more are a
# cine loop or a stack, shown by their middle frame.
MOSAIC_MAX_FRAMES = 4


def render_preview(data: bytes, dataset: Dataset) -> Preview:
    """An 8-bit picture of the frame (a mosaic of a few, or the middle one of many), as a
    viewer would first show it."""
    if "PixelData" not in dataset:
        return Preview([], "the object has no pixel data")
    frames = _get(dataset, "NumberOfFrames")
    count = int(frames) if isinstance(frames, int) and frames > 1 else 1
    try:
        with warnings.catch_warnings(), pixels_decoded():
            warnings.simplefilter("ignore")
            native = _native_grey(dataset) if count == 1 else None
            if native is not None:
                image = _shrunk(_windowed_by_table(native, dataset, stored_bits=int(dataset.BitsStored)))
            elif count == 1:
                image = _to_picture(dataset.pixel_array, dataset)
            elif count <= MOSAIC_MAX_FRAMES:
                image = _mosaic(
                    [_to_picture(pixel_array(io.BytesIO(data), index=i), dataset) for i in range(count)]
                )
            else:
                image = _to_picture(pixel_array(io.BytesIO(data), index=count // 2), dataset)
    except FileRejectedError as e:  # the object stays, its preview does not
        return Preview([], e.message)
    return Preview(small_variants(image), None)


@contextmanager
def pixels_decoded() -> Iterator[None]:
    """Any failure of a pixel decoder inside becomes FileRejectedError `undecodable_pixels`.

    Decoders fail in many ways (ValueError, RuntimeError from pylibjpeg, ...), and one written
    in Rust (pylibjpeg-rle) panics on some damaged data with pyo3's PanicException, which is
    a BaseException so that `except Exception` lets it through, killing a whole Lambda batch."""
    try:
        yield
    except FileRejectedError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _undecodable(type(e).__name__) from e
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit
        raise _undecodable("the decoder panicked") from e


def _undecodable(why: str) -> FileRejectedError:
    return FileRejectedError("undecodable_pixels", f"pixel data could not be decoded: {why}")


def _mosaic(tiles: list[Image.Image]) -> Image.Image:
    """Frames side by side, in order, on black."""
    mode = "RGB" if any(t.mode == "RGB" for t in tiles) else "L"
    width, height = sum(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new(mode, (width, height))
    left = 0
    for tile in tiles:
        sheet.paste(tile.convert(mode), (left, 0))
        left += tile.width
    return sheet


def _to_picture(pixels: np.ndarray, dataset: Dataset) -> Image.Image:
    photometric = (_text(_get(dataset, "PhotometricInterpretation")) or "MONOCHROME2").upper()
    if photometric == "PALETTE COLOR":
        return _shrunk(Image.fromarray(_to_uint8(apply_color_lut(pixels, dataset))))
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):  # colour (pydicom gives RGB from YBR)
        return _shrunk(Image.fromarray(_to_uint8(pixels[..., :3])))
    invert = photometric == "MONOCHROME1"  # 0 is white
    if pixels.ndim == 2 and pixels.dtype in (np.uint8, np.int8, np.uint16, np.int16):
        return _shrunk(_windowed_by_table(pixels, dataset, stored_bits=8 * pixels.dtype.itemsize))
    # 32-bit or float pixels (e.g. dose grids): no table, the same steps on the values.
    values = _voi(apply_modality_lut(pixels, dataset), dataset)
    low, high = _window(values, dataset)
    return _shrunk(Image.fromarray(eight_bits(values, low, high, invert=invert), mode="L"))


# The auto-window's percentiles come from every 4th pixel of every 4th row: ample for a
# histogram, a sixteenth of the work.
_SAMPLE_STEP = 4


def _windowed(dataset: Dataset) -> bool:
    return bool(_get(dataset, "VOILUTSequence")) or _get(dataset, "WindowCenter") is not None


def _voi(modality: np.ndarray, dataset: Dataset) -> np.ndarray:
    """The VOI LUT or the first window applied, when the object has one."""
    if _get(dataset, "VOILUTSequence"):
        return np.asarray(
            apply_voi_lut(np.rint(modality).astype(np.int32), dataset, index=0), dtype=np.float32
        )
    if _get(dataset, "WindowCenter") is not None:
        return np.asarray(
            apply_voi_lut(np.asarray(modality, dtype=np.float64), dataset, index=0), dtype=np.float32
        )
    return np.asarray(modality, dtype=np.float32)


def _window(values: np.ndarray, dataset: Dataset) -> tuple[float, float]:
    """Black and white: the VOI's output range, or (no VOI) the 0.5-99.5 percentiles of a
    sample, so a few hot pixels don't flatten the rest."""
    if _windowed(dataset):
        return float(values.min()), float(values.max())
    return auto_window(values[::_SAMPLE_STEP, ::_SAMPLE_STEP])


def auto_window(values: np.ndarray) -> tuple[float, float]:
    """The 0.5-99.5 percentiles: the window when an object gives none."""
    low, high = np.percentile(values, (0.5, 99.5))
    return float(low), float(high)


def eight_bits(values: np.ndarray, low: float, high: float, *, invert: bool = False) -> np.ndarray:
    scaled: np.ndarray = np.clip((np.asarray(values, dtype=np.float32) - low) / ((high - low) or 1.0), 0, 1)
    if invert:
        scaled = 1.0 - scaled
    eight: np.ndarray = (scaled * 255 + 0.5).astype(np.uint8)
    return eight


_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _native_grey(dataset: Dataset) -> np.ndarray | None:
    """The stored codes of one uncompressed little-endian grey frame, read in place (no
    decode, no copy), or None when the object is anything else."""
    geometry = (_get(dataset, "Rows"), _get(dataset, "Columns"), _get(dataset, "BitsAllocated"))
    if (
        _transfer_syntax(dataset) not in _NATIVE_LITTLE_ENDIAN
        or _get(dataset, "SamplesPerPixel") not in (None, 1)
        or (_get(dataset, "PhotometricInterpretation") or "") not in ("MONOCHROME1", "MONOCHROME2")
        or not all(isinstance(v, int) for v in geometry)
        or geometry[2] not in (8, 16)
        or not isinstance(_get(dataset, "BitsStored"), int)
    ):
        return None
    rows, columns, allocated = geometry
    raw = dataset.PixelData
    if len(raw) < rows * columns * allocated // 8:
        return None
    codes = np.frombuffer(raw, dtype="<u2" if allocated == 16 else "u1", count=rows * columns)
    return codes.reshape(rows, columns)


def _windowed_by_table(pixels: np.ndarray, dataset: Dataset, *, stored_bits: int) -> Image.Image:
    """Integer pixels to 8 bits through one lookup table: every possible code goes once
    through the masking of unused bits, the sign, the modality LUT, the VOI and the
    inversion; then each pixel is one table read (an 8 MB panoramic: about 4 ms where the
    arithmetic per pixel took 12)."""
    photometric = (_text(_get(dataset, "PhotometricInterpretation")) or "MONOCHROME2").upper()
    unsigned = cast(
        "np.ndarray[Any, np.dtype[np.unsignedinteger[Any]]]", pixels.view(f"u{pixels.dtype.itemsize}")
    )
    codes = np.arange(256 if pixels.dtype.itemsize == 1 else 65536, dtype=np.int64)
    stored = codes & ((1 << stored_bits) - 1)
    if pixels.dtype.kind == "i" or _get(dataset, "PixelRepresentation") == 1:
        sign = 1 << (stored_bits - 1)
        stored = (stored ^ sign) - sign  # two's complement within the stored bits
    modality = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float32)
    voi = _voi(modality, dataset)
    if _windowed(dataset):
        low, high = float(voi.min()), float(voi.max())
    else:
        low, high = auto_window(modality[unsigned[::_SAMPLE_STEP, ::_SAMPLE_STEP]])
    table = eight_bits(voi, low, high, invert=photometric == "MONOCHROME1")
    return Image.fromarray(np.take(table, unsigned), mode="L")


def _shrunk(image: Image.Image) -> Image.Image:
    """At most the preview size: a whole-factor box reduction, as a display windows at full
    resolution and then scales, then one bicubic step for the remaining factor below two
    (where Lanczos' extra lobes change nothing visible and cost half again)."""
    factor = max(1, max(image.size) // PREVIEW_PX)
    reduced = image.reduce(factor) if factor > 1 else image
    scale = PREVIEW_PX / max(reduced.size)
    if scale >= 1:
        return reduced
    size = (max(1, round(reduced.width * scale)), max(1, round(reduced.height * scale)))
    return reduced.resize(size, Image.Resampling.BICUBIC)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    top = float(pixels.max()) or 1.0
    return (pixels.astype(np.float64) / top * 255).round().astype(np.uint8)
