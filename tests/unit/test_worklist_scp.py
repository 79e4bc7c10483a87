"""Which booked step an image's study is (`worklist_scp.booked_patient`)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from orca_imaging import worklist_scp

CLINIC = "clinic-1"


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """The worklist ranges looked up; two steps booked (the fake answers any range)."""
    ranges: list[tuple[str, str, str]] = []

    def entries(clinic_id: str, first: str, last: str) -> list[Any]:
        ranges.append((clinic_id, first, last))
        return [
            SimpleNamespace(entry_id="wl_a", patient_id="pat_a"),
            SimpleNamespace(entry_id="wl_b", patient_id="pat_b"),
        ]

    monkeypatch.setattr(worklist_scp.repository, "worklist_entries", entries)
    return ranges


def test_an_images_study_made_for_a_step_names_its_patient_among_steps_around_its_capture(
    asked: list[tuple[str, str, str]],
) -> None:
    captured = datetime(2026, 11, 22, 9, 41, tzinfo=UTC)
    study = worklist_scp.step_study_uid(CLINIC, "wl_b")
    assert worklist_scp.booked_patient(CLINIC, study, captured) == "pat_b"
    assert asked == [(CLINIC, "20261120000000", "20261124235959")]
    # another clinic's step of the same id is another study
    assert (
        worklist_scp.booked_patient(CLINIC, worklist_scp.step_study_uid("clinic-2", "wl_b"), captured) is None
    )


def test_a_study_a_device_made_itself_is_not_looked_up(asked: list[tuple[str, str, str]]) -> None:
    assert worklist_scp.booked_patient(CLINIC, "1.2.840.113619.2.55.3.1", datetime.now(UTC)) is None
    assert asked == []  # no query for every image that never came from the worklist
