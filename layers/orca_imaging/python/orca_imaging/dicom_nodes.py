"""The admin API for DICOM nodes: which devices may push to the DICOM service for a clinic,
and which of them are PACS we query and retrieve from (those with a host and port)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from orca_imaging import repository
from orca_imaging.bodies import RequestBody
from orca_imaging.models import DicomNodeModel

if TYPE_CHECKING:
    from orca_imaging.auth import Principal

# PS3.5 AE title: up to 16 characters of the default repertoire, no backslash or controls.
AE_TITLE = r"^[A-Za-z0-9_.\-][A-Za-z0-9 _.\-]{0,15}$"


class NodeRequest(RequestBody):
    ae_title: str = Field(alias="aeTitle", pattern=AE_TITLE)
    cidr: str | None = Field(default=None, max_length=43, description="the network it must call from")
    host: str | None = Field(
        default=None, max_length=253, pattern=r"^[A-Za-z0-9.:-]+$", description="a PACS: where to call it"
    )
    port: int | None = Field(default=None, gt=0, lt=65536)
    description: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _host_with_port(self) -> NodeRequest:
        if (self.host is None) != (self.port is None):
            raise ValueError("a PACS node needs both host and port")
        return self

    @field_validator("ae_title")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return value.strip()

    @field_validator("cidr")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        return str(ipaddress.ip_network(value, strict=False)) if value else None


def _view(node: DicomNodeModel) -> dict[str, Any]:
    return {
        "aeTitle": node.ae_title,
        "cidr": node.cidr,
        "host": node.host,
        "port": int(node.port) if node.port is not None else None,
        "description": node.description,
    }


def register(principal: Principal, request: NodeRequest, *, correlation_id: str | None) -> dict[str, Any]:
    node = DicomNodeModel(
        ae_title=request.ae_title,
        clinic_id=principal.clinic_id,
        cidr=request.cidr,
        host=request.host,
        port=request.port,
        description=request.description,
        created_by=principal.user_id,
    )
    repository.put_dicom_node(node)
    repository.record_caller_audit(
        principal, "DICOM_NODE_REGISTERED", ("dicom_node", node.ae_title), correlation_id=correlation_id
    )
    return _view(node)


def listing(principal: Principal) -> dict[str, Any]:
    nodes = sorted(repository.clinic_dicom_nodes(principal.clinic_id), key=lambda n: n.ae_title)
    return {"nodes": [_view(n) for n in nodes]}


def remove(principal: Principal, ae_title: str, *, correlation_id: str | None) -> None:
    repository.delete_dicom_node(principal.clinic_id, ae_title)
    repository.record_caller_audit(
        principal, "DICOM_NODE_REMOVED", ("dicom_node", ae_title), correlation_id=correlation_id
    )
