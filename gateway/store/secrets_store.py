"""Secrets shared by every instance on one store, made once on first use."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import STORE_SECRETS

SUBJECT_HASH_KEY = "subject_hash_key"
"""The key of the hash that replaces an erased number in call records."""


async def shared_secret(engine: AsyncEngine, name: str) -> str:
    """The secret called ``name``: read, or made (256 random bits) if the store has none.

    Two instances making it at once both end up with the one that was
    inserted first (the primary key refuses the second).
    """
    query = select(STORE_SECRETS.c.value).where(STORE_SECRETS.c.name == name)
    async with engine.connect() as connection:
        value = (await connection.execute(query)).scalar()
    if value is not None:
        return str(value)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(STORE_SECRETS).values(
                    name=name, value=secrets.token_hex(32), created_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        pass
    async with engine.connect() as connection:
        return str((await connection.execute(query)).scalar_one())
