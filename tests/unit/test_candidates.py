"""Scored patient candidates: names in either order, accents, case and typos; birth date
and sex; and the ranking a person is shown."""

from __future__ import annotations

from datetime import date

import pytest

from orca_imaging.candidates import MAX_CANDIDATES, MIN_SCORE, Person, rank, score

JANE = Person("Doe", "Jane", date(2011, 4, 2), "F")


@pytest.mark.parametrize(
    "dicom",
    [
        Person("DOE", "JANE", date(2011, 4, 2), "F"),  # case
        Person("Jane", "Doe", date(2011, 4, 2), "F"),  # family and given swapped
        Person("Dóe", "Jané", date(2011, 4, 2), "F"),  # accents
        Person("Doe", "Jnae", date(2011, 4, 2), "F"),  # a typo
    ],
)
def test_the_same_person_written_differently_scores_high(dicom: Person) -> None:
    assert score(dicom, JANE) >= 90


def test_each_part_lowers_the_score_when_it_disagrees() -> None:
    same = score(JANE, JANE)
    assert same == 100
    assert score(Person("Doe", "Jane", date(2011, 2, 4), "F"), JANE) < same  # day and month swapped
    assert score(Person("Doe", "Jane", date(1990, 1, 1), "F"), JANE) < score(
        Person("Doe", "Jane", date(2011, 2, 4), "F"), JANE
    )
    assert score(Person("Doe", "Jane", date(2011, 4, 2), "M"), JANE) < same
    assert score(Person("Smith", "Robert", date(1980, 6, 6), "M"), JANE) < MIN_SCORE


def test_a_missing_value_is_neutral() -> None:
    unknown_birth = score(Person("Doe", "Jane", None, "F"), JANE)
    assert score(Person("Doe", "Jane", date(1990, 1, 1), "F"), JANE) < unknown_birth < 100


def test_ranking_is_best_first_bounded_and_never_below_the_floor() -> None:
    registry = {f"pat_{i}": Person("Smith", f"Robert{i}", date(1980, 6, 6), "M") for i in range(10)}
    registry |= {"pat_jane": JANE, "pat_jana": Person("Doe", "Jana", date(2011, 4, 2), "F")}
    ranked = rank(Person("DOE", "JANE", date(2011, 4, 2), "F"), registry)
    assert [c.patient_id for c in ranked] == ["pat_jane", "pat_jana"]
    assert len(rank(Person("Smith", "Robert", date(1980, 6, 6), "M"), registry)) == MAX_CANDIDATES
