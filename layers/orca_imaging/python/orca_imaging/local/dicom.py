"""The DICOM service inside the embedded stack: the same task as on Fargate, on a loopback
port, with the spool in the stack's state directory (in AWS the spool is on EFS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca_imaging.dicom_task import DicomTask
from orca_imaging.settings import ScpSettings, load

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack

LOOPBACK = "127.0.0.1"


class LocalDicomService:
    def __init__(self, *, port: int = 0, ae_title: str = "ORCA") -> None:
        self.requested_port = port
        self.ae_title = ae_title
        self.task: DicomTask | None = None

    def start(self, stack: LocalStack) -> None:
        settings = load(ScpSettings).model_copy(
            update={
                "ae_title": self.ae_title,
                "dicom_port": self.requested_port,  # 0: any free port
                "spool_dir": stack.config.state_dir / "dicom-spool",
            }
        )
        self.task = DicomTask(settings, host=LOOPBACK)
        self.task.start()

    def stop(self) -> None:
        if self.task:
            self.task.stop(timeout=30)

    def urls(self) -> list[tuple[str, str]]:
        if self.task is None or self.task.service is None:
            return []
        return [("DICOM service", f"dicom://{self.ae_title}@{LOOPBACK}:{self.task.service.port}")]
