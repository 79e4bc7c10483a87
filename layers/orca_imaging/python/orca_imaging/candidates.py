"""Scored patient candidates for a DICOM object that no exact rule links.

The score (0-100) proposes; a person decides. It weighs the name (60), the birth date (30)
and sex (10). Names are compared by their PN components, family and given, after folding
case and accents, in both orders (devices swap them), with rapidfuzz's edit-distance ratio,
so typos cost little. A birth date with day and month swapped, or one digit off, scores
half. A missing value on either side is neutral (half), so it neither helps nor sinks.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

if TYPE_CHECKING:
    from datetime import date

NAME_WEIGHT, BIRTH_WEIGHT, SEX_WEIGHT = 60.0, 30.0, 10.0
# Below this a registry patient is not worth showing.
MIN_SCORE = 50.0
MAX_CANDIDATES = 5


@dataclass(frozen=True)
class Person:
    family: str | None
    given: str | None
    birth_date: date | None
    sex: str | None


@dataclass(frozen=True)
class Candidate:
    patient_id: str
    score: float


def _fold(text: str | None) -> str:
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace("^", " ").split())


def name_score(a: Person, b: Person) -> float | None:
    """0-100 for how alike two names are, or None when either has no name."""
    a_family, a_given, b_family, b_given = (_fold(v) for v in (a.family, a.given, b.family, b.given))
    if not (a_family or a_given) or not (b_family or b_given):
        return None

    def pair(x: str, y: str) -> float:
        return fuzz.ratio(x, y) if x and y else 0.0

    straight = (pair(a_family, b_family) + pair(a_given, b_given)) / 2
    swapped = (pair(a_family, b_given) + pair(a_given, b_family)) / 2
    whole = fuzz.token_sort_ratio(f"{a_family} {a_given}", f"{b_family} {b_given}")
    return max(straight, swapped, whole)


def birth_score(a: date | None, b: date | None) -> float | None:
    if a is None or b is None:
        return None
    if a == b:
        return 100.0
    swapped = a.year == b.year and a.month == b.day and a.day == b.month
    one_off = sum(x != y for x, y in zip(a.strftime("%Y%m%d"), b.strftime("%Y%m%d"), strict=True)) == 1
    return 50.0 if swapped or one_off else 0.0


def sex_score(a: str | None, b: str | None) -> float | None:
    if not a or not b or a.upper() not in ("M", "F") or b.upper() not in ("M", "F"):
        return None
    return 100.0 if a.upper() == b.upper() else 0.0


def score(dicom: Person, registered: Person) -> float:
    parts = (
        (name_score(dicom, registered), NAME_WEIGHT),
        (birth_score(dicom.birth_date, registered.birth_date), BIRTH_WEIGHT),
        (sex_score(dicom.sex, registered.sex), SEX_WEIGHT),
    )
    total = sum((value if value is not None else 50.0) * weight for value, weight in parts)
    return round(total / (NAME_WEIGHT + BIRTH_WEIGHT + SEX_WEIGHT), 1)


def rank(dicom: Person, registry: dict[str, Person]) -> list[Candidate]:
    """The best-scoring registry patients, at most MAX_CANDIDATES, none below MIN_SCORE."""
    scored = sorted(
        (Candidate(patient_id, score(dicom, person)) for patient_id, person in registry.items()),
        key=lambda c: (-c.score, c.patient_id),
    )
    return [c for c in scored if c.score >= MIN_SCORE][:MAX_CANDIDATES]
