"""The layer's bytecode: compiled once at build, used as is on Lambda's read-only mount."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.layer import compile_bytecode


def test_compiled_layer_is_imported_from_bytecode_without_reading_the_source(tmp_path: Path) -> None:
    site = tmp_path / "python"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("")
    module = site / "pkg" / "mod.py"
    module.write_text("ANSWER = 'from the build'\n")

    compile_bytecode(site, sys.executable)
    assert list((site / "pkg" / "__pycache__").glob("mod.*.pyc"))
    # Unchecked-hash bytecode is trusted as built: a changed source proves the .pyc was used.
    module.write_text("ANSWER = 'from the source'\n")
    out = subprocess.run(
        [sys.executable, "-c", "import pkg.mod; print(pkg.mod.ANSWER)"],
        env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "from the build"
