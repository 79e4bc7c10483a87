"""DICOM TLS, with dcmtk's storescu as the device: the service as Fargate runs it, given a
certificate (and, for mutual TLS, a client CA) the way the task gets them from Secrets
Manager, as PEM text in its environment."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import CORPUS
from tests.integration.test_dicom_service import (
    STORESCU,
    _dcmtk,
    new_clinic_with_node,
    sop_instance,
    stored_objects,
)
from tests.integration.test_dicom_service_faults import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from orca_imaging.local.stack import LocalStack
    from tests.integration.conftest import ApiClient

__all__ = ["_dcmtk"]  # the autouse fixture that skips without dcmtk

OBJECT = CORPUS / "dicom" / "mr_small_implicit_vr.dcm"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the service's certificate, and a device's certificate, both signed by the CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = str(folder / "ca.pem"), str(folder / "ca.key")
    new_key = ["-newkey", "rsa:2048", "-nodes"]
    openssl(
        "req", "-x509", *new_key, "-days", "2", "-subj", "/CN=Orca test CA", "-keyout", ca_key, "-out", ca
    )
    for name in ("service", "device"):
        key, request, certificate = (str(folder / f"{name}.{ext}") for ext in ("key", "csr", "pem"))
        openssl("req", *new_key, "-subj", f"/CN={name}", "-keyout", key, "-out", request)
        openssl(
            "x509", "-req", "-in", request, "-days", "2", "-CA", ca, "-CAkey", ca_key, "-out", certificate
        )
    return folder


@pytest.fixture
def device(stack: LocalStack) -> tuple[ApiClient, str]:
    """A clinic's registered device, there before the service starts (it caches nodes)."""
    return new_clinic_with_node(stack)


@pytest.fixture
def service(
    device: tuple[ApiClient, str], pki: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServiceProcess]:
    settings = {
        "tls_certificate": (pki / "service.pem").read_text(),
        "tls_private_key": (pki / "service.key").read_text(),
    }
    if getattr(request, "param", None) == "mutual":
        settings["tls_client_ca"] = (pki / "ca.pem").read_text()
    process = ServiceProcess(tmp_path / "spool", **settings)
    yield process
    process.stop()


def service_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in service.log.read_text().splitlines() if line.startswith("{")]


def send(
    service: ServiceProcess, ae_title: str, *tls: str, port: int | None = None
) -> subprocess.CompletedProcess[str]:
    """storescu with these TLS options, to the TLS port if there are any, else the plain one."""
    port = port or (service.tls_port if tls else service.dicom_port)
    command = [STORESCU, *tls, "-aet", ae_title, "-aec", "ORCA", "127.0.0.1", str(port), str(OBJECT)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_device_stores_over_tls_and_the_object_arrives(
    stack: LocalStack, pki: Path, device: tuple[ApiClient, str], service: ServiceProcess
) -> None:
    admin, ae_title = device
    done = send(service, ae_title, "+tla", "+cf", str(pki / "ca.pem"))  # anonymous, verifying us
    assert done.returncode == 0, done.stderr
    (arrived,) = stack.wait_until(lambda: stored_objects(stack, admin.clinic) or None, timeout=60)
    assert sop_instance(arrived) == sop_instance(OBJECT.read_bytes())
    assert send(service, ae_title, port=service.tls_port).returncode != 0  # plain DICOM to the TLS port
    assert send(service, ae_title).returncode == 0  # the plain port still serves the VPN's devices


@pytest.mark.parametrize("service", ["mutual"], indirect=True)
def test_with_a_client_ca_only_a_device_with_a_signed_certificate_gets_in(
    stack: LocalStack, pki: Path, device: tuple[ApiClient, str], service: ServiceProcess
) -> None:
    admin, ae_title = device
    verify_us = ["+cf", str(pki / "ca.pem")]
    anonymous = send(service, ae_title, "+tla", *verify_us)
    assert anonymous.returncode != 0
    # said in the task's log, where the admin setting the device up looks (no PHI to show)
    failed = [line for line in service_lines(service) if line["message"] == "TLS handshake failed"]
    assert [(line["address"], line["error"]) for line in failed] == [("127.0.0.1", "SSLError")]
    signed = send(service, ae_title, "+tls", str(pki / "device.key"), str(pki / "device.pem"), *verify_us)
    assert signed.returncode == 0, signed.stderr
    stack.wait_until(lambda: len(stored_objects(stack, admin.clinic)) == 1, timeout=60)


def test_a_connection_that_never_starts_its_handshake_holds_up_no_other_device(
    stack: LocalStack, pki: Path, device: tuple[ApiClient, str], service: ServiceProcess
) -> None:
    """Each receiver accepts on one thread: a TLS handshake made there (pynetdicom's way)
    waits on a silent peer, a device hung or anyone inside the VPN, and every device after
    it waits too, for as long as the peer holds the connection open."""
    admin, ae_title = device
    silent = [socket.create_connection(("127.0.0.1", service.tls_port)) for _ in service.receivers()]
    try:
        time.sleep(0.5)  # each receiver has taken one
        done = send(service, ae_title, "+tla", "+cf", str(pki / "ca.pem"))
        assert done.returncode == 0, done.stderr
    finally:
        for connection in silent:
            connection.close()
    stack.wait_until(lambda: stored_objects(stack, admin.clinic) or None, timeout=60)
