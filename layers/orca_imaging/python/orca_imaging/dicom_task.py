"""What one task of the DICOM service runs, wired from its settings: the SCP, its spool and
the drainer. The Fargate entry point (`services/dicom_scp/main.py`) and the embedded local
stack (`local/dicom.py`) both start this.

On Fargate a task runs one receiving process per core sharing the listening sockets (see
`dicom_transport.py`), and the first process only drains: each is a DicomTask doing one of
the two, with a folder of its own in the spool, so each is a task as far as the spool knows."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from orca_imaging import repository, worklist_scp
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.drainer import Drainer
from orca_imaging.errors import ConfigurationError
from orca_imaging.originals import ReceivedOriginals
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

    from orca_imaging.dicom_transport import LoadBoard
    from orca_imaging.settings import ScpSettings


class DicomTask:
    def __init__(
        self,
        settings: ScpSettings,
        *,
        host: str = "127.0.0.1",
        receives: bool = True,
        drains: bool = True,
        listening: Mapping[int, socket.socket] | None = None,
        board: LoadBoard | None = None,
    ) -> None:
        self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
        self.service: DicomService | None = None
        if receives:
            self.service = DicomService(
                ServiceConfig(
                    ae_title=settings.ae_title,
                    host=host,
                    port=settings.dicom_port,
                    max_associations=settings.max_associations,
                    max_pdu_bytes=settings.max_pdu_bytes,
                    tls=tls_context(settings),
                    tls_port=settings.tls_port,
                    listening=listening or {},
                    board=board,
                ),
                self.spool,
                nodes=repository.dicom_nodes,
                worklist=worklist_scp.find,
            )
        self.drainer: Drainer | None = None
        if drains:
            self.drainer = Drainer(self.spool, ReceivedOriginals.for_settings(settings))

    def start(self) -> None:
        if self.service:
            self.service.start()
        if self.drainer:
            self.drainer.start()

    def stop(self, timeout: float) -> None:
        """No new associations; those in flight get `timeout` seconds; then the drainer stops
        and the spool's lock goes, leaving what is spooled for the next task."""
        if self.service:
            self.service.stop(timeout=timeout)
        if self.drainer:
            self.drainer.stop(timeout=5)
        self.spool.close()


def tls_context(settings: ScpSettings) -> ssl.SSLContext | None:
    """The server side of DICOM TLS, or None when no certificate is configured."""
    if not settings.tls_certificate:
        return None
    if not settings.tls_private_key:
        raise ConfigurationError("ORCA_TLS_CERTIFICATE is set but ORCA_TLS_PRIVATE_KEY is not")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195, as dcmtk's default profile
    # ssl loads a key pair only from files: written to a private folder, read, removed.
    with tempfile.TemporaryDirectory(prefix="orca-tls-") as folder:
        certificate, key = Path(folder) / "certificate.pem", Path(folder) / "key.pem"
        for path, pem in ((certificate, settings.tls_certificate), (key, settings.tls_private_key)):
            path.touch(mode=0o600)
            path.write_text(pem)
        context.load_cert_chain(certificate, key)
    if settings.tls_client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=settings.tls_client_ca)
    return context


def yield_cores(niceness: int, *, sparing: int | None = None) -> None:
    """Lower the CPU priority of this process's threads by `niceness`, all but the thread
    `sparing` (a native thread id). Linux keeps a priority per thread, and some already run
    (OpenBLAS starts its pool when numpy loads), so each is lowered; threads started later
    take their creator's. A thread that ends between the listing and its turn is passed
    over: it needs no priority, and the task must not fail to start for it."""
    for task in Path("/proc/self/task").iterdir():
        thread = int(task.name)
        if thread == sparing:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + niceness)
        except ProcessLookupError:  # it ended
            continue
