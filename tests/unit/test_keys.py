from __future__ import annotations

import pytest

from orca_imaging.errors import InvalidObjectKeyError
from orca_imaging.keys import derived_key, original_key, parse_original_key, quarantine_key


def test_original_key_round_trips() -> None:
    key = original_key("clinic-7", "img_01abc")
    assert key == "clinic/clinic-7/original/img_01abc"
    ref = parse_original_key(key)
    assert (ref.clinic_id, ref.image_id) == ("clinic-7", "img_01abc")


def test_derived_and_quarantine_keys_are_not_intake_originals() -> None:
    for key in (derived_key("c1", "img_1", "thumb.jpg"), quarantine_key("c1", "img_1")):
        with pytest.raises(InvalidObjectKeyError):
            parse_original_key(key)
    assert quarantine_key("c1", "img_1").startswith("quarantine/")


@pytest.mark.parametrize(
    "key",
    [
        "clinic/c1/original/John Smith.jpg",
        "clinic/c1/original/../c2/original/img_1",
        "clinic/c1/original/img_1/extra",
        "clinic//original/img_1",
        "other/c1/original/img_1",
    ],
)
def test_keys_outside_the_layout_are_refused(key: str) -> None:
    with pytest.raises(InvalidObjectKeyError):
        parse_original_key(key)


def test_variant_names_are_checked() -> None:
    with pytest.raises(ValueError):
        derived_key("c1", "img_1", "../escape")
