"""Quality scores: a property over every real photo, and the corpus's own retake cases."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance, ImageFilter

from orca_imaging.photos import process_photo
from orca_imaging.quality import DEFAULT_RETAKE_THRESHOLD, Quality, assess
from tests.conftest import CORPUS, corpus_files


@cache
def preview(path: Path) -> tuple[Image.Image, int, Quality]:
    photo = process_photo(path.read_bytes(), datetime(2026, 11, 22, tzinfo=UTC))
    image = Image.open(io.BytesIO(next(v.data for v in photo.variants if v.name == "preview.jpg")))
    image.load()
    return image, photo.width * photo.height, photo.quality


# A copy cannot be made worse than no detail at all: the corpus's black frame, blank grey
# frame and 1x1 PNG are retake cases themselves (checked below), not sources for the property.
SOURCES = [p for p in corpus_files("photos") if "no_detail" not in preview(p)[2].notes]


def overexposed(image: Image.Image, median_target: float) -> Image.Image:
    """Scaled until the median pixel sits at `median_target`: past the right exposure."""
    median = float(np.median(np.asarray(image.convert("L"))))
    return ImageEnhance.Brightness(image).enhance(max(median_target / max(median, 1.0), 1.2))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
@settings(max_examples=8, deadline=None)
@given(
    radius=st.floats(1.5, 5.0),
    factor=st.floats(0.15, 0.45),
    median_target=st.floats(235.0, 252.0),
)
def test_a_blurred_darkened_or_overexposed_copy_scores_lower(
    path: Path, radius: float, factor: float, median_target: float
) -> None:
    image, pixels, source = preview(path)
    for label, copy in (
        ("blurred", image.filter(ImageFilter.GaussianBlur(radius))),
        ("darkened", ImageEnhance.Brightness(image).enhance(factor)),
        ("over-exposed", overexposed(image, median_target)),
    ):
        worse = assess(copy, pixels=pixels)
        assert worse.score < source.score, (label, worse, source)


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("canon_eos1300d_18mp.jpg", "underexposed"),  # a nearly black frame
        ("samsung_sm-g930f.jpg", "no_detail"),  # a uniform grey frame
    ],
)
def test_the_corpus_retake_cases_are_flagged(name: str, note: str) -> None:
    quality = preview(CORPUS / "photos" / name)[2]
    assert quality.score < DEFAULT_RETAKE_THRESHOLD and note in quality.notes


def test_clinical_photos_pass_the_default_threshold() -> None:
    for name in ("ortho_intraoral_nikon_d90.jpg", "intraoral_photo_0-0.png", "intraoral_photo_0-2.png"):
        assert preview(CORPUS / "photos" / name)[2].score >= DEFAULT_RETAKE_THRESHOLD, name


def test_resolution_below_the_slot_minimum_is_named_and_costs_score() -> None:
    image, pixels, source = preview(CORPUS / "photos" / "iphone6.jpg")
    small = assess(image, pixels=pixels, min_pixels=pixels * 4)
    assert "resolution_below_minimum" in small.notes and small.score < source.score
