from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


class Synth:
    def __init__(self, outdir: Path) -> None:
        from aws_cdk.assertions import Template

        from infra.app import build_app

        app, self.stack = build_app(outdir=str(outdir))
        app.synth()  # runs cdk-nag and CloudFormation validation; raises on any finding
        self.outdir = outdir
        self.template = Template.from_stack(self.stack)
        self.json: dict[str, Any] = self.template.to_json()

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == kind}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(self.stack.get_logical_id(construct.node.default_child)))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """One synthesized stack for the whole session: each synth costs 10-20 s here."""
    return Synth(tmp_path_factory.mktemp("cdk.out"))


def validation_report(outdir: Path) -> dict[str, Any]:
    return dict(json.loads((outdir / "validation-report.json").read_text()))
