"""CBCT volumes: slices grouped by series, ordered in space, previewed in three planes.

A CBCT arrives as hundreds of single-frame CT objects, one by one. Each slice is an image
of its own; its series gets one volume record that lists the slices as they come (id and
position). A series is complete when the expected count is reached (ImagesInAcquisition),
or after a quiet period with no new slice, like Orthanc's StableAge: a scheduled sweep
finds those. An enhanced multi-frame CT is one object, and is a complete volume at once.

The volume is built slice by slice: each is read, decoded and reduced to its contribution
to the coronal and sagittal planes and the maximum-intensity projection, then dropped. So
memory stays at one slice plus a few slice-count-by-width planes (a 500-slice 512x512
volume needs about 3 MB of planes, not its 256 MB of voxels).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import iter_pixels

from orca_imaging.dicom import auto_window, eight_bits, finite_numbers, first_number, pixels_decoded
from orca_imaging.errors import FileRejectedError
from orca_imaging.variants import Variant, small_variants

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pydicom.dataset import Dataset

# Two neighbours closer than this (mm) are one position twice; further apart than this many
# times the usual spacing, slices are missing between them.
SAME_POSITION_MM = 1e-3
GAP_FACTOR = 1.5
PLANES = ("axial", "coronal", "sagittal", "mip")


@dataclass(frozen=True)
class SlicePlacement:
    """Where one slice lies along the volume's axis, from its own header."""

    position: float | None  # mm along the slice normal; None when the header has no geometry
    instance: int | None


def placement(dataset: Dataset, frame: int | None = None) -> SlicePlacement:
    """ImagePositionPatient projected on the normal of ImageOrientationPatient (PS3.3 C.7.6.2).

    For a frame of an enhanced object, the per-frame plane position and orientation."""
    position, orientation = dataset.get("ImagePositionPatient"), dataset.get("ImageOrientationPatient")
    if frame is not None:
        shared = (dataset.get("SharedFunctionalGroupsSequence") or [None])[0]
        frames = dataset.get("PerFrameFunctionalGroupsSequence") or []
        groups = frames[frame] if frame < len(frames) else None
        position = _functional(groups, "PlanePositionSequence", "ImagePositionPatient") or position
        orientation = (
            _functional(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
            or _functional(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
            or orientation
        )
    instance = dataset.get("InstanceNumber")
    number = int(instance) if isinstance(instance, int) else None
    # Text, NaN or infinity (a device's bug, or damage): placed by its instance number, as a
    # slice without geometry is.
    position, orientation = finite_numbers(position, 3), finite_numbers(orientation, 6)
    if position is None or orientation is None:
        return SlicePlacement(None, number)
    normal = np.cross(orientation[:3], orientation[3:])
    return SlicePlacement(float(np.dot(normal, position)), number)


def _functional(groups: Any, sequence: str, keyword: str) -> Any:
    items = groups.get(sequence) if groups is not None else None
    return items[0].get(keyword) if items else None


@dataclass(frozen=True)
class Order:
    """The slices in spatial order, with what is wrong with the series."""

    keys: list[str]  # in order, duplicates left out
    spacing_mm: float | None
    gaps: int  # places where slices are missing
    duplicates: int  # slices at a position another slice already has


def order(slices: dict[str, SlicePlacement]) -> Order:
    """Sort by position (instance number where a header has no geometry)."""
    placed = {k: p for k, p in slices.items() if p.position is not None}
    if len(placed) < len(slices):  # no geometry for some: instance numbers are all we have
        keys = sorted(slices, key=lambda k: (slices[k].instance or 0, k))
        return Order(keys, None, 0, 0)
    keys = sorted(placed, key=lambda k: (placed[k].position, k))
    kept, duplicates = [keys[0]] if keys else [], 0
    for key in keys[1:]:
        if abs((placed[key].position or 0) - (placed[kept[-1]].position or 0)) < SAME_POSITION_MM:
            duplicates += 1
        else:
            kept.append(key)
    steps = np.diff([placed[k].position for k in kept]) if len(kept) > 1 else np.array([])
    spacing = float(np.median(steps)) if steps.size else None
    gaps = int(np.sum(steps > GAP_FACTOR * spacing)) if spacing else 0
    return Order(kept, spacing, gaps, duplicates)


class PlaneBuilder:
    """Accumulates the three reformats and the MIP of `total` slices, each given with its
    place in spatial order (in any order: an enhanced CT stores its frames as it likes).
    Of each slice only its middle row and column and its column maxima are kept, plus the
    whole middle slice."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._planes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.middle: np.ndarray | None = None
        self.shape: tuple[int, int] | None = None

    @property
    def count(self) -> int:
        return len(self._planes)

    def add(self, index: int, values: np.ndarray) -> None:
        if values.ndim != 2:
            raise FileRejectedError("invalid_dicom", "a CBCT slice is not a single grey frame")
        if self.shape is None:
            self.shape = values.shape
        elif values.shape != self.shape:
            raise FileRejectedError("invalid_dicom", "the series' slices differ in size")
        rows, columns = values.shape
        self._planes[index] = (
            values[rows // 2, :].astype(np.float32),  # coronal
            values[:, columns // 2].astype(np.float32),  # sagittal
            values.max(axis=0).astype(np.float32),  # MIP
        )
        if index == self.total // 2:
            self.middle = values.astype(np.float32)

    def plane(self, which: int) -> np.ndarray:
        """0 coronal, 1 sagittal, 2 MIP: one line per slice, first slice first."""
        return np.stack([self._planes[i][which] for i in sorted(self._planes)])

    def pictures(self, window: tuple[float, float] | None) -> dict[str, Image.Image]:
        """8-bit pictures, head up: the axis of slices runs bottom (first) to top (last)."""
        if self.middle is None or not self._planes:
            raise FileRejectedError("invalid_dicom", "the series has no slice to show")
        planes = {
            "axial": self.middle,
            "coronal": np.flipud(self.plane(0)),
            "sagittal": np.flipud(self.plane(1)),
            "mip": np.flipud(self.plane(2)),
        }
        low, high = window or auto_window(planes["axial"])
        return {
            name: Image.fromarray(eight_bits(plane, low, high), mode="L") for name, plane in planes.items()
        }


def window_of(dataset: Dataset) -> tuple[float, float] | None:
    """The first window centre/width, as (low, high) in rescaled values; None when either is
    missing or not a number, or the width is not positive."""
    centre, width = (first_number(dataset.get(k)) for k in ("WindowCenter", "WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    return centre - width / 2, centre + width / 2


def slice_values(data: bytes) -> tuple[np.ndarray, Dataset]:
    """One single-frame slice's rescaled values (e.g. Hounsfield units) and its header;
    FileRejectedError `undecodable_pixels` when its pixel data cannot be decoded."""
    with warnings.catch_warnings(), pixels_decoded():
        warnings.simplefilter("ignore")
        dataset = dcmread(io.BytesIO(data), force=True)
        return apply_modality_lut(dataset.pixel_array, dataset).astype(np.float32), dataset


def enhanced_frames(data: bytes) -> Iterator[tuple[int, np.ndarray]]:
    """Each frame of an enhanced multi-frame CT, decoded one at a time, rescaled;
    FileRejectedError `undecodable_pixels` when one cannot be decoded."""
    with warnings.catch_warnings(), pixels_decoded():
        warnings.simplefilter("ignore")
        dataset = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        for index, frame in enumerate(iter_pixels(io.BytesIO(data))):
            yield index, _rescale_frame(frame, dataset, index)


def _rescale_frame(frame: np.ndarray, dataset: Dataset, index: int) -> np.ndarray:
    """Rescale with the frame's own Pixel Value Transformation, else the shared one."""
    for groups in (
        (dataset.get("PerFrameFunctionalGroupsSequence") or [None] * (index + 1))[index],
        (dataset.get("SharedFunctionalGroupsSequence") or [None])[0],
    ):
        items = groups.get("PixelValueTransformationSequence") if groups is not None else None
        if items:
            slope = float(items[0].get("RescaleSlope", 1))
            intercept = float(items[0].get("RescaleIntercept", 0))
            return (frame.astype(np.float32) * slope + intercept).astype(np.float32)
    return apply_modality_lut(frame, dataset).astype(np.float32)


def plane_variants(pictures: dict[str, Image.Image]) -> list[Variant]:
    """A JPEG per plane, plus the usual thumbnail and preview made from the MIP."""
    made = {name: small_variants(pictures[name]) for name in PLANES}
    named = [
        Variant(f"{name}.jpg", preview.data, preview.width, preview.height)
        for name, (_, preview) in made.items()
    ]
    return [*made["mip"], *named]


def summary(built: PlaneBuilder, ordered: Order, dataset: Dataset, *, complete_by: str) -> dict[str, Any]:
    """What the volume record says about the volume."""
    rows, columns = built.shape or (0, 0)
    spacing = finite_numbers(dataset.get("PixelSpacing"), 2)
    return {
        "dimensions": {"columns": columns, "rows": rows, "slices": built.count},
        "spacingMm": {
            "column": spacing[1] if spacing else None,
            "row": spacing[0] if spacing else None,
            "slice": round(ordered.spacing_mm, 4) if ordered.spacing_mm else None,
        },
        "gaps": ordered.gaps,
        "duplicates": ordered.duplicates,
        "orderedBy": "ImagePositionPatient" if ordered.spacing_mm is not None else "InstanceNumber",
        "completeBy": complete_by,  # "expected_count", "quiet_period" or "single_object"
    }
