"""Roles, permissions and the caller's identity.

The mapping follows the spec (001, "User Roles & Permissions"): a role holds a permission
where the role table says Full (or Edit, for annotate) or where the special-permissions
table names the role as a default holder. "Limited" and "With Approval" grant nothing on
their own: a limited view or an approved delete is a separate, audited workflow, so a
front-desk or billing user gets no `imaging:*` permission and a doctor cannot delete.
The README's permission table is generated from `ROLE_PERMISSIONS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orca_imaging.errors import ForbiddenError, UnauthorizedError


class Permission(StrEnum):
    CAPTURE = "imaging:capture"
    VIEW = "imaging:view"
    ANNOTATE = "imaging:annotate"
    DELETE = "imaging:delete"
    EXPORT = "imaging:export"
    ADMIN = "imaging:admin"
    CEPHALOMETRIC = "imaging:cephalometric"
    VIEW_3D = "imaging:3d_view"


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    CLINIC_ADMIN = "clinic_admin"
    DOCTOR = "doctor"
    CLINICAL_STAFF = "clinical_staff"
    FRONT_DESK = "front_desk"
    BILLING = "billing"
    READ_ONLY = "read_only"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.SUPER_ADMIN: frozenset(Permission),
    # Full on capture/view/annotate/delete/reports; imaging:delete and imaging:admin are
    # clinic_admin's by the permission table. Cephalometric analysis stays the doctor's.
    Role.CLINIC_ADMIN: frozenset({P.CAPTURE, P.VIEW, P.ANNOTATE, P.DELETE, P.EXPORT, P.ADMIN, P.VIEW_3D}),
    Role.DOCTOR: frozenset({P.CAPTURE, P.VIEW, P.ANNOTATE, P.EXPORT, P.CEPHALOMETRIC, P.VIEW_3D}),
    Role.CLINICAL_STAFF: frozenset({P.CAPTURE, P.VIEW, P.ANNOTATE, P.EXPORT, P.VIEW_3D}),
    Role.FRONT_DESK: frozenset(),
    Role.BILLING: frozenset(),
    Role.READ_ONLY: frozenset({P.VIEW}),
}

# Where the Cognito authorizer (and the local issuer) put the caller's claims.
CLINIC_CLAIM = "custom:clinicId"
GROUPS_CLAIM = "cognito:groups"

_CLINIC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user id, the one clinic they act for, and their roles."""

    user_id: str
    clinic_id: str
    roles: frozenset[Role]

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        return frozenset(granted)

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise ForbiddenError(f"this action needs {permission}")


def parse_groups(raw: Any) -> list[str]:
    """Cognito sends groups as a list, or (REST authorizer) as '[a b]' or 'a,b'."""
    if isinstance(raw, list):
        return [str(g) for g in raw]
    if not raw:
        return []
    return [g for g in re.split(r"[\s,]+", str(raw).strip("[]")) if g]


def principal_from_claims(claims: dict[str, Any] | None) -> Principal:
    """Build the caller from authorizer claims; unknown groups are ignored, not trusted."""
    if not claims or not claims.get("sub"):
        raise UnauthorizedError("no authenticated caller")
    clinic_id = str(claims.get(CLINIC_CLAIM) or "")
    if not _CLINIC_ID.match(clinic_id):
        raise UnauthorizedError("the caller has no valid clinic claim")
    roles = frozenset(
        Role(g) for g in parse_groups(claims.get(GROUPS_CLAIM)) if g in Role.__members__.values()
    )
    return Principal(user_id=str(claims["sub"]), clinic_id=clinic_id, roles=roles)
