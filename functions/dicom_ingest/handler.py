"""DICOM ingest's scheduled work: build every CBCT series that has gone quiet.

Wiring only: `orca_imaging.cbct.sweep` finds the open series whose last slice is older
than the quiet period and builds each volume. Objects themselves are ingested by the
intake consumer (`functions/process_image`), which dispatches on the sniffed type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions import started
from orca_imaging import cbct, clients, repository
from orca_imaging.observability import logger, metrics
from orca_imaging.settings import ConsumerSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = load(ConsumerSettings)
repository.bind_tables(SETTINGS)
started()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"volumesBuilt": cbct.sweep(s3=clients.s3(), settings=SETTINGS)}
