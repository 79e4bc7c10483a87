"""cdk-nag (AwsSolutions and HIPAA) finds nothing unacknowledged; cfn-lint finds no error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.infra.conftest import Synth, validation_report


def test_synth_passed_with_no_unacknowledged_finding(synth: Synth) -> None:
    # build_app() registers both packs; app.synth() in the fixture raises on any finding.
    report = validation_report(synth.outdir)
    assert all(p["conclusion"] == "success" and p["violations"] == [] for p in report["pluginReports"])


def test_both_nag_packs_fail_synth_on_a_new_finding(tmp_path: Path) -> None:
    """A bucket without encryption, logging or TLS must stop synth, naming both packs' rules."""
    import jsii
    from aws_cdk import aws_s3 as s3

    from infra.app import build_app

    app, stack = build_app(outdir=str(tmp_path))
    s3.Bucket(stack, "CarelessBucket")
    with pytest.raises((jsii.errors.JSIIError, RuntimeError)):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-S1" in report and "CarelessBucket" in report
    assert "HIPAA.Security-S3BucketLoggingEnabled" in report


def test_cfn_lint_reports_no_errors(synth: Synth) -> None:
    template = synth.outdir / "OrcaImaging.template.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--non-zero-exit-code", "error", str(template)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cdk_cli_accepts_the_cloud_assembly(tmp_path: Path) -> None:
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    require_tool(str(cdk))
    result = subprocess.run(
        [str(cdk), "synth", "--quiet", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "OrcaImaging.template.json").exists()
