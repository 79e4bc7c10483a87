from __future__ import annotations

import pytest

from orca_imaging import settings
from orca_imaging.errors import ConfigurationError
from orca_imaging.resources import FUNCTIONS, settings_env
from orca_imaging.settings import ApiSettings, ConsumerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ORCA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings.load.cache_clear()


def test_a_missing_resource_name_fails_at_start_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCA_IMAGES_TABLE", "t1")
    with pytest.raises(ConfigurationError) as caught:
        settings.load(ApiSettings)
    message = str(caught.value)
    for name in ("ORCA_AUDIT_TABLE", "ORCA_ORIGINALS_BUCKET", "ORCA_DERIVED_BUCKET", "ORCA_KMS_KEY_ID"):
        assert name in message
    assert "ORCA_IMAGES_TABLE" not in message


def test_every_function_gets_every_resource_its_settings_need(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "images_table": "images",
        "audit_table": "audit",
        "originals_bucket": "orig",
        "derived_bucket": "derived",
        "kms_key_id": "key",
        "event_bus_name": "bus",
        "patients_table": "patients",
        "batches_table": "batches",
        "clinics_table": "clinics",
        "dicom_nodes_table": "dicom-nodes",
        "worklist_table": "worklist",
        "pacs_retrieves_table": "pacs-retrieves",
        "pacs_retrieve_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/pacs-retrieves",
        "batch_state_machine_arn": "arn:aws:states:eu-west-1:1:stateMachine:b",
    }
    for spec in FUNCTIONS:
        env = settings_env(spec.settings, values)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings.load.cache_clear()
        loaded = settings.load(spec.settings)
        assert loaded.region == "eu-west-1"


def test_settings_env_refuses_a_missing_resource() -> None:
    with pytest.raises(KeyError):
        settings_env(ConsumerSettings, {"images_table": "images"})
