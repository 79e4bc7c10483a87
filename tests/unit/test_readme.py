"""The README's configuration and permission tables stay true to the code."""

from __future__ import annotations

import re

from orca_imaging.auth import ROLE_PERMISSIONS, Permission
from orca_imaging.resources import SETTINGS_WITH_RESOURCES
from orca_imaging.settings import ScpSettings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    """Every function's and the DICOM service's settings; a row may name several."""
    first_cells = re.findall(r"^\| ((?:`(?:ORCA|AWS)_[A-Z_]+`(?:, )?)+) \|", README, re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z_]+)`", cell)}
    expected = {"AWS_REGION"} | {
        f"ORCA_{name.upper()}"
        for settings in (*SETTINGS_WITH_RESOURCES, ScpSettings)
        for name in settings.model_fields
        if name != "region"
    }
    assert documented == expected


def test_the_permission_table_matches_the_code() -> None:
    columns = [p.value.removeprefix("imaging:") for p in Permission]
    for role, granted in ROLE_PERMISSIONS.items():
        row = re.search(rf"^\| {role.value} \|(.*)\|$", README, re.M)
        assert row, role
        cells = [c.strip() for c in row.group(1).split("|")]
        assert {col for col, cell in zip(columns, cells, strict=True) if cell == "✓"} == {
            p.value.removeprefix("imaging:") for p in granted
        }
