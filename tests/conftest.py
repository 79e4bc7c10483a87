from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orca_imaging import observability

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def corpus_files(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file())


def damaged_copies(original: bytes, seed: str) -> Iterator[bytes]:
    """The file cut at a few points, and with a few bytes changed at random places (in
    its first 4 KiB, where headers are, or anywhere), the same copies in every run."""
    for kept in (0.01, 0.05, 0.2, 0.5, 0.8, 0.99):
        yield original[: max(1, int(len(original) * kept))]
    chance = random.Random(seed)
    for _ in range(12):
        copy = bytearray(original)
        region = len(copy) if chance.random() < 0.5 else min(len(copy), 4096)
        for _ in range(chance.randint(1, 12)):
            copy[chance.randrange(region)] = chance.randrange(256)
        yield bytes(copy)


def require_tool(path: str) -> None:
    """Skip with one line naming the missing tool."""
    if not (Path(path).exists() or shutil.which(path)):
        pytest.skip(f"missing tool: {path}")


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """The service logger's lines as Powertools writes them, each formatted on the thread
    that logs it (where that thread's keys are)."""
    lines: list[dict[str, Any]] = []

    class Formatted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(observability.logger.registered_formatter.format(record)))

    handler, service_log = Formatted(), logging.getLogger(observability.SERVICE)
    service_log.addHandler(handler)
    yield lines
    service_log.removeHandler(handler)
