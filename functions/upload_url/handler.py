"""The imaging API function: uploads, batches, multipart, records, patients, DICOM matching.

Wiring only. Settings are validated and tables bound at import; each router's routes
parse, authorize (`@requires`), call one domain function and return.
No `from __future__ import annotations` in this function's modules: the resolver reads
the route signatures at run time to validate requests, through the permission wrapper.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import started
from functions.upload_url import routes_dicom, routes_records, routes_uploads
from orca_imaging import repository
from orca_imaging.api import current_principal, install_error_handlers, openapi_document, responses
from orca_imaging.observability import logger, metrics
from orca_imaging.resources import API_BASE
from orca_imaging.settings import ApiSettings, load

repository.bind_tables(load(ApiSettings))

app = APIGatewayRestResolver(enable_validation=True)
install_error_handlers(app)
app.include_router(routes_uploads.router)
app.include_router(routes_records.router)
app.include_router(routes_dicom.router)


@app.get(f"{API_BASE}/openapi.json", responses=responses(200))
def openapi() -> dict[str, Any]:
    current_principal(app)  # any signed-in caller may read the API's description
    return openapi_document(app, title="Orca Imaging API", version="1")


started()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
