"""Consent policies set through the API: one row per version, the newest in force."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.audit import write_audit
from gateway.store.models import TENANT_POLICIES
from gateway.store.queries import record_dict


async def latest_policies(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Tenant -> its newest stored policy row (tenants never set through the API are absent)."""
    newest = (
        select(TENANT_POLICIES.c.tenant, func.max(TENANT_POLICIES.c.revision).label("revision"))
        .group_by(TENANT_POLICIES.c.tenant)
        .subquery()
    )
    query = select(TENANT_POLICIES).join(
        newest,
        (TENANT_POLICIES.c.tenant == newest.c.tenant)
        & (TENANT_POLICIES.c.revision == newest.c.revision),
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return {row["tenant"]: record_dict(row) for row in rows}


async def add_policy(
    engine: AsyncEngine,
    tenant: str,
    version: str,
    policy: dict[str, Any],
    key_id: str | None,
    expected_revision: int | None = None,
) -> dict[str, Any]:
    """Store a new version of a tenant's policy (audited); returns its row.

    ``expected_revision``: the revision the writer read (0 for none); if
    another writer got there first the unique (tenant, revision) refuses the
    row and :class:`ConflictingRevision` is raised.
    """
    async with engine.begin() as connection:
        current = (
            await connection.execute(
                select(func.max(TENANT_POLICIES.c.revision)).where(
                    TENANT_POLICIES.c.tenant == tenant
                )
            )
        ).scalar() or 0
        if expected_revision is not None and expected_revision != current:
            raise ConflictingRevision(current)
        row = {
            "tenant": tenant,
            "revision": current + 1,
            "version": version,
            "policy": policy,
            "created_at": datetime.now(UTC),
            "key_id": key_id,
        }
        try:
            await connection.execute(insert(TENANT_POLICIES).values(**row))
        except IntegrityError:
            raise ConflictingRevision(current + 1) from None
        await write_audit(
            connection,
            tenant=tenant,
            key_id=key_id,
            action="policy.update",
            target=version,
            detail={"revision": current + 1},
        )
    row["created_at"] = row["created_at"].isoformat()
    return row


class ConflictingRevision(Exception):
    """Another writer stored a newer revision of the policy first."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the policy is now at revision {current}")
        self.current = current
