"""Which patient a file belongs to, from its name, for folder imports and migrations.

A clinic configures a pattern such as `{chart}_{slot}` or `{chart}-{any}`. The chart number
it captures must resolve through the clinic's patient registry; anything else leaves the
patient unset, and the file waits in PENDING_MATCH. It never guesses.

Tokens: `{chart}` (letters, digits, dashes), `{slot}` (letters, digits, `_`, `-`), `{date}`
(YYYYMMDD or YYYY-MM-DD) and `{any}` (anything). Everything else is literal. The pattern is
matched against the whole file name without its extension, case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from orca_imaging.errors import RequestValidationError

_TOKENS = {
    "chart": r"(?P<chart>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*?)",
    "slot": r"(?P<slot>[A-Za-z0-9_-]+?)",
    "date": r"(?:\d{8}|\d{4}-\d{2}-\d{2})",
    "any": r".*?",
}
_TOKEN = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class NameMatch:
    chart: str
    slot: str | None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression for a filename pattern; rejects unknown or missing tokens."""
    names = _TOKEN.findall(pattern)
    unknown = sorted(set(names) - set(_TOKENS))
    if unknown or "chart" not in names or len(names) != len(set(names)):
        raise RequestValidationError(
            "a filename pattern needs one {chart} and may use {slot}, {date} and {any} once each"
        )
    parts = _TOKEN.split(pattern)
    regex = "".join(_TOKENS[part] if i % 2 else re.escape(part) for i, part in enumerate(parts))
    return re.compile(f"^{regex}$", re.IGNORECASE)


def match_name(pattern: str, file_name: str) -> NameMatch | None:
    found = compile_pattern(pattern).match(PurePath(file_name).stem)
    if not found:
        return None
    return NameMatch(chart=found.group("chart"), slot=found.groupdict().get("slot"))
