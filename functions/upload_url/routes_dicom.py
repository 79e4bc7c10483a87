"""DICOM: the patient-match queue, a person's verification, and a patient's radiation."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from orca_imaging import review
from orca_imaging.api import correlation_id, current_principal, requires, responses
from orca_imaging.auth import Permission
from orca_imaging.resources import API_BASE

router = Router()


@router.get(f"{API_BASE}/dicom/pending", responses=responses(200))
@requires(router, Permission.CAPTURE)
def pending(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return review.pending(current_principal(router), limit=limit)


@router.post(f"{API_BASE}/dicom/match", responses=responses(200, 404, 409))
@requires(router, Permission.CAPTURE)
def match(request: Annotated[review.MatchRequest, Body()]) -> dict[str, Any]:
    return review.match(current_principal(router), request, correlation_id=correlation_id())
