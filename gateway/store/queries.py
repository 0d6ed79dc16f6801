"""Read side of the call-record store: plain, JSON-ready dictionaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.models import CALLS, CONSENT_EVENTS, RECORDINGS

CONSENT_EVENTS_KEY = "consent_events"
"""Key of a call's consent trail in :func:`get_call`'s result."""

RECORDINGS_KEY = "recordings"
"""Key of a call's recordings in :func:`get_call`'s result."""


def record_dict(row: RowMapping) -> dict[str, Any]:
    """A row as a dictionary of every column; instants as ISO 8601 (UTC) text."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in row.items()
    }


async def latest_calls(
    engine: AsyncEngine, limit: int = 20, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` calls (by ``started_at``), optionally of one tenant.

    Each row holds every ``calls`` column, the consent mode and outcome among them.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    query = select(CALLS).order_by(CALLS.c.started_at.desc(), CALLS.c.id.desc()).limit(limit)
    if tenant is not None:
        query = query.where(CALLS.c.tenant == tenant)
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [record_dict(row) for row in result.mappings()]


async def get_call(
    engine: AsyncEngine,
    *,
    call_id: str | None = None,
    record_id: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any] | None:
    """One call with its consent trail and recordings; ``None`` if there is none.

    Give ``call_id`` (the newest record whose A-leg Call-ID it is) or
    ``record_id``, not both; ``tenant`` limits the search to that tenant's
    calls. The result holds every ``calls`` column, plus ``consent_events``
    (in ``seq`` order) and ``recordings`` (in order of their start), each a
    list of row dictionaries.
    """
    if (call_id is None) == (record_id is None):
        raise ValueError("give exactly one of call_id and record_id")
    query = select(CALLS).order_by(CALLS.c.started_at.desc(), CALLS.c.id.desc()).limit(1)
    if call_id is not None:
        query = query.where(CALLS.c.call_id == call_id)
    else:
        query = query.where(CALLS.c.id == record_id)
    if tenant is not None:
        query = query.where(CALLS.c.tenant == tenant)
    async with engine.connect() as connection:
        row = (await connection.execute(query)).mappings().first()
        if row is None:
            return None
        found = record_dict(row)
        found[CONSENT_EVENTS_KEY] = await consent_trail(connection, row["id"])
        found[RECORDINGS_KEY] = await call_recordings(connection, row["id"])
    return found


async def consent_trail(connection: AsyncConnection, record_id: str) -> list[dict[str, Any]]:
    """The consent events of one call, in ``seq`` order."""
    query = (
        select(CONSENT_EVENTS)
        .where(CONSENT_EVENTS.c.call_record_id == record_id)
        .order_by(CONSENT_EVENTS.c.seq)
    )
    result = await connection.execute(query)
    return [record_dict(row) for row in result.mappings()]


async def call_recordings(connection: AsyncConnection, record_id: str) -> list[dict[str, Any]]:
    """The recordings of one call, earliest first."""
    query = (
        select(RECORDINGS)
        .where(RECORDINGS.c.call_record_id == record_id)
        .order_by(RECORDINGS.c.started_at, RECORDINGS.c.id)
    )
    result = await connection.execute(query)
    return [record_dict(row) for row in result.mappings()]
