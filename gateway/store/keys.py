"""API keys: made once and shown once, kept as a SHA-256, checked, listed, revoked.

A key is ``cgk_`` and 43 characters of URL-safe base64: 256 random bits
(:func:`secrets.token_urlsafe`). Only its SHA-256 is stored: with that much
entropy a fast hash cannot be searched back to the key, and a lookup stays
one index probe. The first 12 characters are kept as the key's ``prefix`` so
an operator can tell keys apart in a listing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import API_KEYS, API_ROLES, new_record_id

KEY_PREFIX = "cgk_"
PREFIX_SHOWN = 12


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a valid key speaks for: its id, tenant and role."""

    key_id: str
    tenant: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh key: ``cgk_`` and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    engine: AsyncEngine, tenant: str, role: str, name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Make a key for ``tenant``; returns the key (shown once) and its stored row."""
    if role not in API_ROLES:
        raise ValueError(f"role must be one of {', '.join(API_ROLES)}, got {role!r}")
    if not tenant:
        raise ValueError("a key needs a tenant")
    key = new_key()
    row = {
        "id": new_record_id(),
        "tenant": tenant,
        "role": role,
        "name": name,
        "prefix": key[:PREFIX_SHOWN],
        "key_hash": hash_key(key),
        "created_at": datetime.now(UTC),
        "revoked_at": None,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(API_KEYS).values(**row))
    shown = {name: value for name, value in row.items() if name != "key_hash"}
    return key, shown


async def list_keys(engine: AsyncEngine, tenant: str | None = None) -> list[dict[str, Any]]:
    """Every key (never the hash), oldest first, optionally of one tenant."""
    columns = [column for column in API_KEYS.c if column.name != "key_hash"]
    query = select(*columns).order_by(API_KEYS.c.created_at, API_KEYS.c.id)
    if tenant is not None:
        query = query.where(API_KEYS.c.tenant == tenant)
    async with engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(query)).mappings()]


async def revoke_key(engine: AsyncEngine, key_id_or_prefix: str) -> int:
    """Revoke the key with this id or prefix (an unambiguous one); returns how many."""
    matches = select(API_KEYS.c.id).where(
        (API_KEYS.c.id == key_id_or_prefix) | (API_KEYS.c.prefix == key_id_or_prefix)
    )
    async with engine.begin() as connection:
        ids = [row[0] for row in await connection.execute(matches)]
        if len(ids) > 1:
            raise ValueError(f"{key_id_or_prefix!r} names {len(ids)} keys: give the key's id")
        if not ids:
            return 0
        result = await connection.execute(
            update(API_KEYS)
            .where(API_KEYS.c.id == ids[0], API_KEYS.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return result.rowcount or 0


async def identify(engine: AsyncEngine, key: str) -> KeyIdentity | None:
    """The identity of a valid, unrevoked key; ``None`` for any other text."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    query = select(API_KEYS.c.id, API_KEYS.c.tenant, API_KEYS.c.role).where(
        API_KEYS.c.key_hash == hash_key(key), API_KEYS.c.revoked_at.is_(None)
    )
    async with engine.connect() as connection:
        row = (await connection.execute(query)).first()
    return None if row is None else KeyIdentity(row[0], row[1], row[2])
