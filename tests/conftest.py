from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def corpus_files(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file())


def require_tool(path: str) -> None:
    """Skip with one line naming the missing tool."""
    if not (Path(path).exists() or shutil.which(path)):
        pytest.skip(f"missing tool: {path}")
