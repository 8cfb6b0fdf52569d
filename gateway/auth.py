"""API keys: created once, shown once, stored as SHA-256 hashes; resolved to a ``Principal`` per request.

Keys carry 256 bits of randomness, so a plain SHA-256 (not a slow password hash) is the right lookup hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.errors import Forbidden, InvalidInput, Unauthorized
from gateway.models import ROLES, ApiKey

KEY_PREFIX = "mg_"


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: str
    key_id: str

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this; needs one of: {', '.join(roles)}")

    def as_dict(self) -> dict[str, str]:
        return {"tenant": self.tenant, "role": self.role, "key_id": self.key_id}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not tenant or len(tenant) > 64 or not all(c.isalnum() or c in "-_" for c in tenant):
        raise InvalidInput("tenant", "tenant_format", f"tenant {tenant!r} must be 1-64 letters, digits, '-' or '_'")
    return tenant


def create_key(engine: Engine, *, tenant: str, role: str) -> tuple[ApiKey, str]:
    """Store a new key's hash and return the row and the plaintext key (the only time it exists)."""
    validate_tenant(tenant)
    if role not in ROLES:
        raise InvalidInput("role", "known_role", f"role {role!r} is not one of {', '.join(ROLES)}")
    key_id = "key_" + secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}{key_id.removeprefix('key_')}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, tenant=tenant, role=role, key_hash=hash_key(plaintext))
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return row, plaintext


def authenticate(engine: Engine, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("send 'Authorization: Bearer <key>'; keys are made with 'mediagate keys create'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must use the Bearer scheme: 'Authorization: Bearer <key>'")
    with Session(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(token))).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is unknown or revoked")
    return Principal(tenant=row.tenant, role=row.role, key_id=row.id)
