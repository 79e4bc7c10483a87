"""What one task of the DICOM service runs, wired from its settings: the SCP, its spool and
the drainer. The Fargate entry point (`services/dicom_scp/main.py`) and the embedded local
stack (`local/dicom.py`) both start this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca_imaging import clients, repository, worklist
from orca_imaging.dicom_service import DicomService, ServiceConfig
from orca_imaging.drainer import Drainer
from orca_imaging.originals import ReceivedOriginals
from orca_imaging.spool import Spool

if TYPE_CHECKING:
    from orca_imaging.settings import ScpSettings


class DicomTask:
    def __init__(self, settings: ScpSettings, *, host: str) -> None:
        self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
        self.service = DicomService(
            ServiceConfig(
                ae_title=settings.ae_title,
                host=host,
                port=settings.dicom_port,
                max_associations=settings.max_associations,
                max_pdu_bytes=settings.max_pdu_bytes,
            ),
            self.spool,
            nodes=repository.dicom_nodes,
            worklist=worklist.find,
        )
        originals = ReceivedOriginals(
            clients.s3(), bucket=settings.originals_bucket, kms_key_id=settings.kms_key_id
        )
        self.drainer = Drainer(self.spool, originals)

    def start(self) -> None:
        self.service.start()
        self.drainer.start()

    def stop(self, timeout: float) -> None:
        """No new associations; those in flight get `timeout` seconds; then the drainer stops
        and the spool's lock goes, leaving what is spooled for the next task."""
        self.service.stop(timeout=timeout)
        self.drainer.stop(timeout=5)
        self.spool.close()
