"""Build the Lambda layer without Docker: manylinux wheels for the Lambda runtime, plus
the domain package as is, into `build/layer/python` (what Lambda puts on sys.path).

Lambda mounts layers read-only, so Python cannot cache bytecode there: without `.pyc`
files every cold start compiles every module it imports again (boto3 alone: ~0.55 s
from source, ~0.18 s from bytecode, measured here). Bytecode is version-specific, so the
layer is compiled by an interpreter of the runtime's version when one is on PATH
(`python3.14`); otherwise the build says so and ships sources only.

A stamp of the inputs' hash skips the rebuild when nothing changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements" / "runtime.txt"
PACKAGE = ROOT / "layers" / "orca_imaging" / "python" / "orca_imaging"
LAYER_DIR = ROOT / "build" / "layer"
LAMBDA_PYTHON = "3.14"
# Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34).
LAMBDA_PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")


def _inputs_hash(compiler: str | None) -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{LAMBDA_PYTHON}/{LAMBDA_PLATFORMS}/{compiler}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_layer(out_dir: Path = LAYER_DIR) -> Path:
    """Return the layer folder, building it first if its inputs changed."""
    stamp = out_dir / ".inputs-sha256"
    compiler = shutil.which(f"python{LAMBDA_PYTHON}")
    wanted = _inputs_hash(compiler)
    if stamp.exists() and stamp.read_text() == wanted:
        return out_dir
    site = out_dir / "python"
    shutil.rmtree(out_dir, ignore_errors=True)
    site.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
            "--implementation",
            "cp",
            "--python-version",
            LAMBDA_PYTHON,
            "--only-binary=:all:",
            "--target",
            str(site),
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        stderr=subprocess.DEVNULL
        if os.environ.get("CI") is None and not os.environ.get("ORCA_VERBOSE")
        else None,
    )
    shutil.copytree(PACKAGE, site / "orca_imaging", ignore=shutil.ignore_patterns("__pycache__", "local"))
    if compiler is None:
        print(
            f"layer: no python{LAMBDA_PYTHON} on PATH; shipping sources only "
            "(each cold start will compile what it imports)",
            file=sys.stderr,
        )
    else:
        compile_bytecode(site, compiler)
    stamp.write_text(wanted)
    return out_dir


def compile_bytecode(site: Path, interpreter: str) -> None:
    """Write `__pycache__` for every module under `site`, checked by hash, not by mtime:
    the layer never changes once published, and zip round trips do not keep mtimes exact."""
    subprocess.run(
        [
            interpreter,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(site),
        ],
        check=True,
    )


if __name__ == "__main__":
    print(build_layer())
