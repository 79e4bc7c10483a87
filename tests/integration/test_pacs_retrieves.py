"""PACS retrieves are queued, run by the pacs_retrieve consumer and followed by id: how a
retrieve ends when its PACS cannot be reached, and what a second delivery of its message
does (SQS delivers at least once). Retrieves that bring objects in are in
`private_network/test_pacs.py`, against Orthanc and dcmqrscp."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from orca_imaging import pacs, pacs_scu, repository
from orca_imaging.ids import new_id
from orca_imaging.local.stack import free_port
from orca_imaging.models import PacsRetrieveModel
from orca_imaging.resources import queue_feeding
from orca_imaging.settings import PacsSettings, load
from tests.integration.conftest import delivered, emitted_metrics
from tests.integration.test_dicom_service import new_clinic_with_node

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack
    from tests.integration.conftest import ApiClient


def retrieved(admin: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """Queue a retrieve, as the admin's screen does, and follow it by id until it ends."""
    queued = admin.post("/dicom/retrieve", body)
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "QUEUED"
    path = f"/dicom/retrieve/{queued.json()['retrieveId']}"

    def finished() -> dict[str, Any] | None:
        job = admin.get(path).json()
        return job if job["status"] in ("COMPLETED", "FAILED") else None

    return admin.stack.wait_until(finished, timeout=90)


def queue_and_finish(admin: ApiClient, node: str) -> dict[str, Any]:
    return retrieved(admin, {"node": node, "studyInstanceUid": "1.2.840.1", "method": "get"})


def test_a_retrieve_from_an_unreachable_pacs_fails_with_its_reason_and_is_audited(stack: LocalStack) -> None:
    admin, node = new_clinic_with_node(stack, host="127.0.0.1", port=free_port())
    job = queue_and_finish(admin, node)
    assert job["status"] == "FAILED"
    assert job["reason"] == "the PACS could not be reached or refused the association"
    assert (job["node"], job["method"], job["studyInstanceUid"]) == (node, "get", "1.2.840.1")
    trail = [e.action for e in repository.audit_trail(admin.clinic, node)]
    assert "PACS_RETRIEVE_QUEUED" in trail and "PACS_RETRIEVE_FAILED" in trail


def test_a_finished_retrieve_delivered_again_is_left_as_it_is(stack: LocalStack) -> None:
    admin, node = new_clinic_with_node(stack, host="127.0.0.1", port=free_port())
    job = queue_and_finish(admin, node)
    before = repository.audit_trail(admin.clinic, node)

    pacs.run_retrieve(admin.clinic, job["retrieveId"], load(PacsSettings))  # the same message again

    assert admin.get(f"/dicom/retrieve/{job['retrieveId']}").json() == job
    assert len(repository.audit_trail(admin.clinic, node)) == len(before)


def test_a_retrieve_whose_run_died_is_run_again(stack: LocalStack) -> None:
    admin, node = new_clinic_with_node(stack, host="127.0.0.1", port=free_port())
    job = queue_and_finish(admin, node)
    record = repository.get_pacs_retrieve(admin.clinic, job["retrieveId"])
    record.status, record.reason = pacs.RetrieveStatus.RUNNING, None  # as a run killed by its timeout
    repository.save_pacs_retrieve(record)

    pacs.run_retrieve(admin.clinic, job["retrieveId"], load(PacsSettings))

    again = admin.get(f"/dicom/retrieve/{job['retrieveId']}").json()
    assert again["status"] == "FAILED" and again["updatedAt"] > job["updatedAt"]
    failures = [e for e in repository.audit_trail(admin.clinic, node) if e.action == "PACS_RETRIEVE_FAILED"]
    assert len(failures) == 2


def test_a_retrieve_failing_on_every_receive_fails_on_the_last_with_a_reason(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected error (not an unreachable PACS, which fails at once) is tried again;
    dead-lettered after its last receive, the retrieve would read RUNNING for good."""

    def broken(*_: Any, **__: Any) -> dict[str, int]:
        raise RuntimeError("a bug in the retrieve")

    monkeypatch.setattr(pacs_scu, "retrieve", broken)
    admin, node = new_clinic_with_node(stack, host="127.0.0.1", port=free_port())
    # Recorded as the API records one, but not queued: this test delivers its message itself
    # (the queue would deliver it again after its visibility timeout, its last time).
    job = PacsRetrieveModel(
        clinic_id=admin.clinic,
        retrieve_id=new_id("ret"),
        node=node,
        study_instance_uid="1.2.840.1",
        method="get",
        status=pacs.RetrieveStatus.QUEUED,
    )
    repository.save_pacs_retrieve(job)
    path = f"/dicom/retrieve/{job.retrieve_id}"
    body = json.dumps({"clinicId": admin.clinic, "retrieveId": job.retrieve_id, "correlationId": None})

    queue = queue_feeding("pacs_retrieve")
    with pytest.raises(BatchProcessingError, match="RuntimeError") as raised:
        delivered(stack, "pacs_retrieve", body, receive_count=queue.max_receive_count - 1)
    assert "a bug in the retrieve" not in str(raised.value)  # its type goes to Lambda, not its message
    assert admin.get(path).json()["status"] == "RUNNING"
    capsys.readouterr()
    answer = delivered(stack, "pacs_retrieve", body, receive_count=queue.max_receive_count)
    assert answer == {"batchItemFailures": []}
    assert queue.gave_up_metric in emitted_metrics(capsys.readouterr().out)  # what its alarm watches

    job = admin.get(path).json()
    assert job["status"] == "FAILED"
    assert job["reason"] == "the retrieve failed unexpectedly; operators were alerted"
    trail = [e.action for e in repository.audit_trail(admin.clinic, node)]
    assert "PACS_RETRIEVE_FAILED" in trail
