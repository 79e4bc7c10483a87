"""DICOM nodes: the devices a clinic allows to push images, as the DICOM service sees them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class DicomNode:
    """A device allowed to send: its calling AE title, its clinic, optionally its network."""

    ae_title: str
    clinic_id: str
    cidr: str | None = None

    def admits(self, address: str) -> bool:
        if not self.cidr:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.cidr, strict=False)
        except ValueError:
            return False
