from __future__ import annotations

import pytest

from orca_imaging.errors import RequestValidationError
from orca_imaging.matching import NameMatch, match_name


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("{chart}_{slot}", "1001_frontal_smile.jpg", NameMatch("1001", "frontal_smile")),
        ("{chart}_{slot}", "A-77_Right_Buccal.JPG", NameMatch("A-77", "Right_Buccal")),
        ("{chart}-{any}", "A12-2019-img.jpeg", NameMatch("A12", None)),
        ("{date}_{chart}", "2019-01-31_77.png", NameMatch("77", None)),
        ("IMG_{chart}", "img_555.heic", NameMatch("555", None)),
        ("{chart}_{slot}", "frontal.jpg", None),
        ("IMG_{chart}", "DSC_555.jpg", None),
        ("{chart}_{slot}", "1001_.jpg", None),
    ],
)
def test_patterns_match_whole_names_only(pattern: str, name: str, expected: NameMatch | None) -> None:
    assert match_name(pattern, name) == expected


@pytest.mark.parametrize("pattern", ["{slot}.jpg", "{chart}_{chart}", "{chart}_{name}", "no tokens"])
def test_unusable_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(RequestValidationError):
        match_name(pattern, "x.jpg")
