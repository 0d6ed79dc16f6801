"""The audit log: every read of personal data, change and erasure, by whom, when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.models import AUDIT_ACTIONS, AUDIT_LOG
from gateway.store.queries import record_dict


async def write_audit(
    connection: AsyncConnection,
    *,
    tenant: str,
    key_id: str | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry, in the caller's transaction (so the entry and the act stand together)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    await connection.execute(
        insert(AUDIT_LOG).values(
            at=datetime.now(UTC),
            tenant=tenant,
            key_id=key_id,
            action=action,
            target=target,
            detail=detail,
        )
    )


async def audit_entries(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    """A tenant's audit log, oldest first."""
    query = select(AUDIT_LOG).where(AUDIT_LOG.c.tenant == tenant).order_by(AUDIT_LOG.c.id)
    async with engine.connect() as connection:
        return [record_dict(row) for row in (await connection.execute(query)).mappings()]
