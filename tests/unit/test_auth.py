"""Roles map to permissions exactly as the spec's tables give them (001, Roles & Permissions)."""

from __future__ import annotations

import pytest

from orca_imaging.auth import ROLE_PERMISSIONS, Permission, Role, parse_groups, principal_from_claims
from orca_imaging.errors import ForbiddenError, UnauthorizedError


def holders(permission: Permission) -> set[str]:
    return {role.value for role, granted in ROLE_PERMISSIONS.items() if permission in granted}


@pytest.mark.parametrize(
    ("permission", "expected"),
    [
        # "Default Roles" column, plus super_admin/clinic_admin where the role table says Full.
        (Permission.CAPTURE, {"super_admin", "clinic_admin", "doctor", "clinical_staff"}),
        (Permission.VIEW, {"super_admin", "clinic_admin", "doctor", "clinical_staff", "read_only"}),
        (Permission.ANNOTATE, {"super_admin", "clinic_admin", "doctor", "clinical_staff"}),
        (Permission.DELETE, {"super_admin", "clinic_admin"}),  # "Delete images: clinic_admin only"
        (Permission.EXPORT, {"super_admin", "clinic_admin", "doctor", "clinical_staff"}),
        (Permission.ADMIN, {"super_admin", "clinic_admin"}),
        (Permission.CEPHALOMETRIC, {"super_admin", "doctor"}),
        (Permission.VIEW_3D, {"super_admin", "clinic_admin", "doctor", "clinical_staff"}),
    ],
)
def test_each_permission_has_exactly_the_spec_holders(permission: Permission, expected: set[str]) -> None:
    assert holders(permission) == expected


def test_every_role_is_mapped() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)


@pytest.mark.parametrize(
    ("raw", "groups"),
    [
        (["doctor", "billing"], ["doctor", "billing"]),
        ("doctor,billing", ["doctor", "billing"]),
        ("[doctor billing]", ["doctor", "billing"]),
        ("", []),
        (None, []),
    ],
)
def test_groups_parse_in_every_form_cognito_sends(raw: object, groups: list[str]) -> None:
    assert parse_groups(raw) == groups


def test_principal_from_claims_keeps_known_roles_only() -> None:
    p = principal_from_claims({"sub": "u1", "custom:clinicId": "c1", "cognito:groups": "doctor,wizard"})
    assert (p.user_id, p.clinic_id, p.roles) == ("u1", "c1", frozenset({Role.DOCTOR}))
    p.require(Permission.CAPTURE)
    with pytest.raises(ForbiddenError):
        p.require(Permission.DELETE)


@pytest.mark.parametrize(
    "claims",
    [None, {}, {"custom:clinicId": "c1"}, {"sub": "u1"}, {"sub": "u1", "custom:clinicId": "../other"}],
)
def test_a_caller_without_identity_or_clinic_is_unauthorized(claims: dict[str, str] | None) -> None:
    with pytest.raises(UnauthorizedError):
        principal_from_claims(claims)
