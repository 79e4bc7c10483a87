"""DICOM ingest's scheduled work: build every CBCT series that has gone quiet.

Wiring only: `orca_imaging.cbct.sweep` finds the open series whose last slice is older
than the quiet period and builds each volume. Objects themselves are ingested by the
intake consumer (`functions/process_image`), which dispatches on the sniffed type.
"""

from __future__ import annotations

from functions import started
from orca_imaging import cbct, clients, repository
from orca_imaging.consumers import scheduled_handler
from orca_imaging.settings import ConsumerSettings, load

SETTINGS = load(ConsumerSettings)
repository.bind_tables(SETTINGS)


def sweep() -> dict[str, int]:
    return {"volumesBuilt": cbct.sweep(s3=clients.s3(), settings=SETTINGS)}


lambda_handler = scheduled_handler(sweep)
started()
