"""CBCT volumes, pure part: slices put in spatial order whatever order they came in, gaps
and duplicates found, and the planes show the phantom the right way up."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from orca_imaging import cbct, volumes
from orca_imaging.dicom import read_dicom
from orca_imaging.errors import FileRejectedError
from orca_imaging.models import ImageModel
from orca_imaging.resources import SCHEDULES
from orca_imaging.volumes import PlaneBuilder, SlicePlacement, order
from tests.fixtures.dental_dicom import cbct_series, enhanced_ct, phantom, with_ds


def test_slices_are_ordered_by_position_with_gaps_and_duplicates_found() -> None:
    slices = {
        f"s{i}": SlicePlacement(position=i * 0.5, instance=99 - i) for i in range(10) if i not in (4, 5)
    }
    slices["again"] = SlicePlacement(position=3 * 0.5, instance=1)
    found = order(slices)
    # One of the two slices at position 1.5 is kept (the first by id: deterministic).
    assert found.keys == ["s0", "s1", "s2", "again", "s6", "s7", "s8", "s9"]
    assert (found.spacing_mm, found.gaps, found.duplicates) == (0.5, 1, 1)


def test_without_geometry_instance_numbers_decide() -> None:
    found = order({"b": SlicePlacement(None, 2), "a": SlicePlacement(None, 1), "c": SlicePlacement(None, 3)})
    assert (found.keys, found.spacing_mm) == (["a", "b", "c"], None)


def test_the_placement_projects_the_position_on_the_slice_normal() -> None:
    dataset = read_dicom(cbct_series(slices=3, size=8)[0])
    assert volumes.placement(dataset).position == float(dataset.ImagePositionPatient[2])


def test_planes_from_shuffled_slices_match_the_phantom_reformatted() -> None:
    size, count = 32, 30
    files = cbct_series(slices=count, size=size)
    placed = {str(n): volumes.placement(read_dicom(data)) for n, data in enumerate(files)}
    ordered = order(placed)
    builder = PlaneBuilder(len(ordered.keys))
    for index, key in enumerate(ordered.keys):
        values, _ = volumes.slice_values(files[int(key)])
        builder.add(index, values)
    truth = phantom(size, count)
    assert np.array_equal(builder.plane(0), truth[:, size // 2, :])
    assert np.array_equal(builder.plane(2), truth.max(axis=1))
    pictures = builder.pictures(volumes.window_of(read_dicom(files[0])))  # the slices' bone window
    assert pictures["coronal"].size == (size, count) and pictures["axial"].size == (size, size)
    # Head up: the teeth (in the first third of the slices) are at the bottom of the MIP.
    mip = np.asarray(pictures["mip"], dtype=float)
    assert (mip[-count // 4 :] > 240).sum() > (mip[: count // 4] > 240).sum()


def test_an_enhanced_ct_is_a_whole_volume_in_one_object() -> None:
    from orca_imaging.cbct import build_enhanced

    data = enhanced_ct(frames=24, size=32)
    fields, variants = build_enhanced(data, read_dicom(data))
    volume = fields["volume"]
    assert volume["dimensions"] == {"columns": 32, "rows": 32, "slices": 24}
    assert (volume["gaps"], volume["duplicates"], volume["spacingMm"]["slice"]) == (0, 0, 0.2)
    names = {v.name for v in variants}
    assert names == {"thumb.jpg", "preview.jpg", "axial.jpg", "coronal.jpg", "sagittal.jpg", "mip.jpg"}
    coronal = next(v for v in variants if v.name == "coronal.jpg")
    picture = np.asarray(Image.open(io.BytesIO(coronal.data)).convert("L"), dtype=float)
    # Stored in reverse, shown in spatial order: the dense arch adds to the bottom rows.
    assert (picture[-6:] > 240).sum() > (picture[:6] > 240).sum()


def test_a_200_slice_series_sent_shuffled_is_built_in_order() -> None:
    files = cbct_series(slices=200, size=32)
    placed = {str(n): volumes.placement(read_dicom(data)) for n, data in enumerate(files)}
    ordered = order(placed)
    assert len(ordered.keys) == 200 and (ordered.gaps, ordered.duplicates) == (0, 0)
    assert ordered.spacing_mm == pytest.approx(0.2)
    builder = PlaneBuilder(len(ordered.keys))
    for index, key in enumerate(ordered.keys):
        values, _ = volumes.slice_values(files[int(key)])
        builder.add(index, values)
    assert np.array_equal(builder.plane(1), phantom(32, 200)[:, :, 16])


def test_a_volume_that_fails_to_build_does_not_hold_up_the_ones_after_it(
    monkeypatch: pytest.MonkeyPatch, log_lines: list[dict[str, Any]]
) -> None:
    # The sweep goes through the quiet series oldest first: one that raised something other
    # than a rejection would otherwise stop every sweep at the same place.
    quiet = [ImageModel(clinic_id="clinic-1", image_id=f"vol_{n}") for n in range(3)]
    built, closed = [], []
    name = "Doe^Jane"  # a slice's value (not in the raising line: a traceback shows that)

    def build(volume: ImageModel, **_: object) -> None:
        if volume.image_id == "vol_0":  # a library's message may quote a value: PHI
            raise ValueError(f"could not convert string to float: {name!r}")
        if volume.image_id == "vol_1":
            raise FileRejectedError("invalid_dicom", "none of the series' slices could be read")
        built.append(volume.image_id)

    monkeypatch.setattr(cbct.repository, "quiet_open_series", lambda *_: iter(quiet))
    monkeypatch.setattr(cbct.repository, "close_series", closed.append)
    monkeypatch.setattr(cbct, "build_series", build)
    counted: list[str] = []
    monkeypatch.setattr(cbct.metrics, "add_metric", lambda *, name, **_: counted.append(name))
    settings = SimpleNamespace(series_stable_seconds=60)
    assert cbct.sweep(s3=None, settings=settings) == 1
    # The rejected one is closed for good; the one that failed stays open for the next sweep.
    assert built == ["vol_2"] and [v.image_id for v in closed] == ["vol_1"]
    [failed] = [line for line in log_lines if line["level"] == "ERROR"]
    assert (failed["message"], failed["exception_name"], failed["image_id"]) == (
        "volume build failed; retried at the next sweep",
        "ValueError",
        "vol_0",
    )
    assert name not in json.dumps(log_lines)  # the library's message quoted it
    # Counted in the metric its schedule's alarm watches: failing sweep after sweep, it pages.
    (sweeping,) = [s for s in SCHEDULES if s.function == "dicom_ingest"]
    assert counted == [sweeping.error_metric, "VolumesFailed"]


@pytest.mark.parametrize("value", [b"a\\b\\c", b"1\\2", b"nan\\inf\\1", b"1e999\\0\\0"])
def test_a_slice_with_unusable_geometry_is_placed_by_its_instance_number(value: bytes) -> None:
    # Text, another count, NaN or infinity from a device's bug: one slice must not stop
    # its series' volume (a NaN would also upset the ordering of every other slice).
    data = with_ds(cbct_series(slices=3, size=16, expected=True)[0], (0x0020, 0x0032), value)
    assert volumes.placement(read_dicom(data)) == SlicePlacement(None, 1)


def test_a_window_or_pixel_spacing_that_is_not_numbers_is_left_out() -> None:
    data = cbct_series(slices=3, size=16, expected=True)[0]
    assert volumes.window_of(read_dicom(data)) == (400 - 1000, 400 + 1000)
    data = with_ds(with_ds(data, (0x0028, 0x1050), b"abc"), (0x0028, 0x0030), b"0.2\\x")
    dataset = read_dicom(data)
    assert volumes.window_of(dataset) is None
    built = PlaneBuilder(1)
    built.add(0, np.zeros((16, 16), dtype=np.float32))
    spacing = volumes.summary(built, order({"a": SlicePlacement(0.0, 1)}), dataset, complete_by="x")[
        "spacingMm"
    ]
    assert (spacing["row"], spacing["column"]) == (None, None)
