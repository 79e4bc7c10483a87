"""The DICOM service inside the embedded stack: the same service and drainer as on
Fargate, on a loopback port, with the spool in the stack's state directory (in AWS the
spool is on EFS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca_imaging import clients, repository, worklist
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.drainer import Drainer
from orca_imaging.settings import ScpSettings, load
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack

LOOPBACK = "127.0.0.1"


class LocalDicomService:
    def __init__(self, *, port: int = 0, ae_title: str = "ORCA") -> None:
        self.requested_port = port
        self.ae_title = ae_title
        self.service: DicomService | None = None
        self.drainer: Drainer | None = None

    def start(self, stack: LocalStack) -> None:
        settings = load(ScpSettings)
        spool = Spool(stack.config.state_dir / "dicom-spool", max_bytes=settings.spool_max_bytes)
        self.service = DicomService(
            ServiceConfig(ae_title=self.ae_title, host=LOOPBACK, port=self.requested_port),
            spool,
            nodes=repository.dicom_nodes,
            worklist=worklist.find,
        )
        self.service.start()
        self.drainer = Drainer(
            spool, clients.s3(), bucket=settings.originals_bucket, kms_key_id=settings.kms_key_id
        )
        self.drainer.start()

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        if self.drainer:
            self.drainer.stop()

    def urls(self) -> list[tuple[str, str]]:
        if self.service is None:
            return []
        return [("DICOM service", f"dicom://{self.ae_title}@{LOOPBACK}:{self.service.port}")]
