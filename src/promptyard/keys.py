"""API keys: random, shown once, stored as SHA-256 hashes, each with a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from promptyard.db import db, utcnow
from promptyard.db.models import ApiKey
from promptyard.errors import NotFound, Unprocessable

ROLES = ("viewer", "editor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
KEY_PREFIX = "pyd_"


@dataclass
class Caller:
    """Who is making a request: a stored key, the bootstrap admin key, or nobody (auth off)."""

    role: str
    key_id: int | None = None
    name: str = ""

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(role: str, name: str = "") -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is never stored or shown again."""
    if role not in ROLES:
        raise Unprocessable(f"Unknown role '{role}'; use one of {', '.join(ROLES)}.", code="invalid_role")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role, key_hash=hash_key(secret), prefix=secret[:10])
    db.session.add(row)
    db.session.commit()
    return row, secret


def list_keys() -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id)))


def revoke_key(key_id: int) -> None:
    row = db.session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"No active API key with id {key_id}.", code="key_not_found")
    row.revoked_at = utcnow()
    db.session.commit()


# Built once: asked on every request while no key exists (auth off on loopback).
_ANY_KEY = select(ApiKey.id).limit(1)
_ANY_ACTIVE_KEY = select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)


def any_keys(*, include_revoked: bool = False) -> bool:
    """Whether an active key exists (or any key ever did, with include_revoked)."""
    # Core on the session's connection: while auth is off every request asks, and the ORM's work cost more than
    # the query.
    statement = _ANY_KEY if include_revoked else _ANY_ACTIVE_KEY
    return db.session.connection().execute(statement).first() is not None


def authenticate(secret: str, admin_key: str | None) -> Caller | None:
    """The caller a secret belongs to, or None when it matches no active key."""
    if admin_key and hmac.compare_digest(secret.encode(), admin_key.encode()):
        return Caller(role="admin", name="bootstrap-admin")
    row = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    return Caller(role=row.role, key_id=row.id, name=row.name)


def key_to_dict(row: ApiKey) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }
