"""DICOM: the patient-match queue, a person's verification, the devices allowed to push,
the worklist the devices read, and query/retrieve against a clinic's PACS."""

from datetime import date
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from orca_imaging import dicom_nodes, pacs, review, worklist
from orca_imaging.api import correlation_id, current_principal, requires, responses
from orca_imaging.auth import Permission
from orca_imaging.ids import ID_PATTERN
from orca_imaging.resources import API_BASE
from orca_imaging.settings import ApiSettings, load

router = Router()


@router.get(f"{API_BASE}/dicom/pending", responses=responses(200))
@requires(router, Permission.CAPTURE)
def pending(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return review.pending(current_principal(router), limit=limit)


@router.post(f"{API_BASE}/dicom/match", responses=responses(200, 404, 409))
@requires(router, Permission.CAPTURE)
def match(request: Annotated[review.MatchRequest, Body()]) -> dict[str, Any]:
    return review.match(current_principal(router), request, correlation_id=correlation_id())


@router.get(f"{API_BASE}/dicom/nodes", responses=responses(200))
@requires(router, Permission.ADMIN)
def list_nodes() -> dict[str, Any]:
    return dicom_nodes.listing(current_principal(router))


@router.post(f"{API_BASE}/dicom/nodes", responses=responses(201, 409))
@requires(router, Permission.ADMIN)
def register_node(request: Annotated[dicom_nodes.NodeRequest, Body()]) -> Response[dict[str, Any]]:
    body = dicom_nodes.register(current_principal(router), request, correlation_id=correlation_id())
    return Response(status_code=201, body=body, content_type="application/json")


@router.delete(f"{API_BASE}/dicom/nodes/<ae_title>", responses=responses(204, 404))
@requires(router, Permission.ADMIN)
def remove_node(ae_title: Annotated[str, Path(pattern=dicom_nodes.AE_TITLE)]) -> Response[None]:
    dicom_nodes.remove(current_principal(router), ae_title, correlation_id=correlation_id())
    return Response(status_code=204)


@router.post(f"{API_BASE}/dicom/worklist", responses=responses(201, 404))
@requires(router, Permission.CAPTURE)  # the staff who book the X-ray, not only the admin
def schedule(request: Annotated[worklist.EntryRequest, Body()]) -> Response[dict[str, Any]]:
    body = worklist.schedule(current_principal(router), request, correlation_id=correlation_id())
    return Response(status_code=201, body=body, content_type="application/json")


@router.get(f"{API_BASE}/dicom/worklist", responses=responses(200))
@requires(router, Permission.ADMIN)
def list_worklist(
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    station: Annotated[str | None, Query(alias="stationAeTitle", pattern=dicom_nodes.AE_TITLE)] = None,
) -> dict[str, Any]:
    return worklist.listing(current_principal(router), first=first, last=last, station=station)


@router.post(f"{API_BASE}/dicom/query", responses=responses(200, 404, 502))
@requires(router, Permission.ADMIN)
def query_pacs(request: Annotated[pacs.QueryRequest, Body()]) -> dict[str, Any]:
    return pacs.query(current_principal(router), request, load(ApiSettings), correlation_id=correlation_id())


@router.post(f"{API_BASE}/dicom/retrieve", responses=responses(202, 400, 404, 503))
@requires(router, Permission.ADMIN)
def retrieve_from_pacs(request: Annotated[pacs.RetrieveRequest, Body()]) -> Response[dict[str, Any]]:
    principal, settings = current_principal(router), load(ApiSettings)
    body = pacs.retrieve(principal, request, settings, correlation_id=correlation_id())
    return Response(status_code=202, body=body, content_type="application/json")


@router.get(f"{API_BASE}/dicom/retrieve/<retrieve_id>", responses=responses(200, 404))
@requires(router, Permission.ADMIN)
def retrieve_status(retrieve_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict[str, Any]:
    return pacs.retrieve_status(current_principal(router), retrieve_id)
