"""Photo quality: a 0-100 score from measured properties, with notes naming each problem.

Measured on the 800 px preview (the same for every source size):
- sharpness: the variance of the Laplacian of the grey image (Pech-Pacheco et al., 2000);
- exposure: mean brightness, and the share of the frame in a saturated plateau at its
  brightest or darkest level (clipped detail stays lost however the copy is re-levelled);
- resolution: the photo's pixels against the minimum its protocol slot asks for.

Each property maps to (0, 1] by a strictly monotone curve and the score is their weighted
geometric mean, so making any property worse lowers the score. The curves are calibrated on
the real photos in the corpus: well-taken clinical photos (intraoral close-ups are soft by
nature, Laplacian variance 25-50 at 800 px) land above the default retake threshold; the
corpus's black frame and blank grey frame land far below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_RETAKE_THRESHOLD = 40.0

# Curve constants (calibrated on ../shared/corpus/photos, see the module docstring).
_SHARPNESS_SCALE = 40.0  # Laplacian variance at which sharpness reaches 1 - 1/e
_IDEAL_MEAN, _MEAN_SPREAD = 125.0, 70.0
# A tenth of the frame clipped costs a photo about a third of its score.
_CLIP_WEIGHT = 10.0
# Any photo has a few pixels at its extremes; only plateaus beyond this share count.
_PLATEAU_NOISE = 0.002
_WEIGHTS = {"sharpness": 0.40, "brightness": 0.25, "clipping": 0.35}


@dataclass(frozen=True)
class Quality:
    score: float
    notes: list[str] = field(default_factory=list)
    laplacian_variance: float = 0.0
    mean_brightness: float = 0.0
    clipped_highlights: float = 0.0
    clipped_shadows: float = 0.0


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def laplacian_variance(grey: np.ndarray) -> float:
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def assess(preview: Image.Image, *, pixels: int, min_pixels: int | None = None) -> Quality:
    """Score a photo from its preview; `pixels` is the full photo's width x height."""
    grey = _grey(preview)
    variance = laplacian_variance(grey)
    mean = float(grey.mean())
    highlights = float((grey >= 250).mean())
    shadows = float((grey <= 5).mean())
    # Plateaus at the frame's own extremes (JPEG noise spreads a clip over ~2 levels).
    top, bottom = float(grey.max()), float(grey.min())
    plateaus = float((grey >= top - 2).mean()) + float((grey <= bottom + 2).mean()) if top > bottom else 1.0

    sharpness = 1 - math.exp(-variance / _SHARPNESS_SCALE)
    brightness = math.exp(-(((mean - _IDEAL_MEAN) / _MEAN_SPREAD) ** 2))
    clipping = math.exp(-_CLIP_WEIGHT * max(plateaus - _PLATEAU_NOISE, 0.0))
    resolution = min(1.0, pixels / min_pixels) if min_pixels else 1.0
    parts = {"sharpness": sharpness, "brightness": brightness, "clipping": clipping}
    score = 100 * resolution * math.prod(max(v, 1e-9) ** _WEIGHTS[k] for k, v in parts.items())

    notes = []
    if variance < 1:
        notes.append("no_detail")
    elif sharpness < 0.3:
        notes.append("blurry")
    if mean < 50:
        notes.append("underexposed")
    elif mean > 205:
        notes.append("overexposed")
    if highlights > 0.05:
        notes.append("highlights_clipped")
    if shadows > 0.25:
        notes.append("shadows_clipped")
    if resolution < 1:
        notes.append("resolution_below_minimum")
    return Quality(
        score=round(score, 1),
        notes=notes,
        laplacian_variance=round(variance, 2),
        mean_brightness=round(mean, 1),
        clipped_highlights=round(highlights, 4),
        clipped_shadows=round(shadows, 4),
    )
