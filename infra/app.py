"""The CDK app: builds the stack and turns on the cdk-nag packs. Nothing else.

Synthesizes offline: the account and region come from context (cdk.json), with the
availability zones cached there, so no AWS call is made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from infra.layer import build_layer
from infra.stack import ImagingStack

# Run as `python -m infra.app` (see cdk.json): as a script, `infra/` would be first on
# sys.path and `infra/constructs` would shadow the `constructs` library.
ROOT = Path(__file__).resolve().parents[1]


def build_app(outdir: str | None = None) -> tuple[cdk.App, ImagingStack]:
    # The CDK CLI passes cdk.json's context itself; a direct run (tests, make synth) reads it here.
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=outdir or os.environ.get("CDK_OUTDIR", str(ROOT / "cdk.out")), context=context)
    env = cdk.Environment(
        account=app.node.try_get_context("account") or "111111111111",
        region=app.node.try_get_context("region") or "us-east-1",
    )
    stack = ImagingStack(app, "OrcaImaging", layer_dir=build_layer(), env=env)
    # Both packs, always: synth fails on any finding not acknowledged with a reason.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    cdk.Validations.of(app).add_plugins(HIPAASecurityChecks(app))
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
