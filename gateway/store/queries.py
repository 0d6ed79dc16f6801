"""Read side of the call-record store: plain, JSON-ready dictionaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import CALLS


def record_dict(row: RowMapping) -> dict[str, Any]:
    """A ``calls`` row as a dictionary of every column; instants as ISO 8601 (UTC) text."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in row.items()
    }


async def latest_calls(
    engine: AsyncEngine, limit: int = 20, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` calls (by ``started_at``), optionally of one tenant."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    query = select(CALLS).order_by(CALLS.c.started_at.desc(), CALLS.c.id.desc()).limit(limit)
    if tenant is not None:
        query = query.where(CALLS.c.tenant == tenant)
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [record_dict(row) for row in result.mappings()]


async def get_call(engine: AsyncEngine, *, call_id: str) -> dict[str, Any] | None:
    """The newest record whose A-leg Call-ID is ``call_id``; ``None`` if there is none."""
    query = (
        select(CALLS)
        .where(CALLS.c.call_id == call_id)
        .order_by(CALLS.c.started_at.desc(), CALLS.c.id.desc())
        .limit(1)
    )
    async with engine.connect() as connection:
        row = (await connection.execute(query)).mappings().first()
    return None if row is None else record_dict(row)
