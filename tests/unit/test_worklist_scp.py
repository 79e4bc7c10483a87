"""Which booked step an image is (`worklist_scp.booked_patient`)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from orca_imaging import worklist_scp

CLINIC = "clinic-1"
OWN_STUDY = "1.2.840.113619.2.55.3.1"  # a study a device made itself


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """The worklist ranges looked up; four steps booked (the fake answers any range)."""
    ranges: list[tuple[str, str, str]] = []

    def entries(clinic_id: str, first: str, last: str) -> list[Any]:
        ranges.append((clinic_id, first, last))
        return [
            SimpleNamespace(entry_id="wl_a", patient_id="pat_a", accession_number="A-1"),
            SimpleNamespace(entry_id="wl_b", patient_id="pat_b", accession_number="A-2"),
            SimpleNamespace(entry_id="wl_c", patient_id="pat_c", accession_number="A-3"),
            SimpleNamespace(entry_id="wl_d", patient_id="pat_d", accession_number="A-3"),  # typed twice
        ]

    monkeypatch.setattr(worklist_scp.repository, "worklist_entries", entries)
    return ranges


def test_an_images_study_made_for_a_step_names_its_patient_among_steps_around_its_capture(
    asked: list[tuple[str, str, str]],
) -> None:
    captured = datetime(2026, 11, 22, 9, 41, tzinfo=UTC)
    study = worklist_scp.step_study_uid(CLINIC, "wl_b")
    assert worklist_scp.booked_patient(CLINIC, study_uid=study, accession="A-1", around=captured) == "pat_b"
    assert asked == [(CLINIC, "20261120000000", "20261124235959")]
    # another clinic's step of the same id is another study
    elsewhere = worklist_scp.step_study_uid("clinic-2", "wl_b")
    assert worklist_scp.booked_patient(CLINIC, study_uid=elsewhere, accession=None, around=captured) is None


def test_a_device_that_makes_its_own_studies_is_linked_by_an_accession_number_one_patients_steps_have(
    asked: list[tuple[str, str, str]],
) -> None:
    now = datetime.now(UTC)
    assert worklist_scp.booked_patient(CLINIC, study_uid=OWN_STUDY, accession="A-1", around=now) == "pat_a"
    assert worklist_scp.booked_patient(CLINIC, study_uid=OWN_STUDY, accession="A-3", around=now) is None
    assert worklist_scp.booked_patient(CLINIC, study_uid=OWN_STUDY, accession="A-9", around=now) is None


def test_an_image_with_neither_a_study_made_here_nor_an_accession_number_is_not_looked_up(
    asked: list[tuple[str, str, str]],
) -> None:
    now = datetime.now(UTC)
    assert worklist_scp.booked_patient(CLINIC, study_uid=OWN_STUDY, accession=None, around=now) is None
    assert worklist_scp.booked_patient(CLINIC, study_uid=None, accession=None, around=now) is None
    assert asked == []  # no query for every image that never came from the worklist
