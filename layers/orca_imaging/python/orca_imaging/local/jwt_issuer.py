"""A local stand-in for the Cognito user pool: RS256 tokens with Cognito's claim names.

The key pair lives in the state directory, so `orca-imaging token` and a running
`orca-imaging serve` agree without talking to each other.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from orca_imaging.auth import CLINIC_CLAIM, GROUPS_CLAIM, Role

if TYPE_CHECKING:
    from pathlib import Path

ISSUER = "orca-local-issuer"
AUDIENCE = "orca-imaging-local"


class LocalIssuer:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        key_path = state_dir / "issuer-key.pem"
        if not key_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            key_path.touch(mode=0o600)
            key_path.write_bytes(pem)
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        self._private_key = private_key
        self._public_key = private_key.public_key()

    def mint(
        self,
        *,
        clinic_id: str,
        roles: list[Role],
        user_id: str | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id or f"usr_{uuid.uuid4().hex[:16]}",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ttl_seconds,
            "token_use": "id",
            CLINIC_CLAIM: clinic_id,
            GROUPS_CLAIM: [str(r) for r in roles],
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; raises jwt.InvalidTokenError otherwise."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
        )
        return claims

    @staticmethod
    def as_authorizer_claims(claims: dict[str, Any]) -> dict[str, Any]:
        """The claims as API Gateway's Cognito authorizer passes them: all strings."""
        out = {k: str(v) for k, v in claims.items() if k != GROUPS_CLAIM}
        groups = claims.get(GROUPS_CLAIM) or []
        out[GROUPS_CLAIM] = ",".join(groups)
        return out
