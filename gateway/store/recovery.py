"""Start-up recovery: close the call records a crashed run of this instance left open.

A call that had a consent rule and no outcome yet ends ``pending`` (nobody's
decision was recorded as final), or ``none`` under a rule that never
captures; a call without a rule keeps no outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, literal, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.durations import call_durations
from gateway.store.models import CALLS

RESTART_DISPOSITION = "gateway_restart"
RESTART_REASON = "gateway restarted before the call ended"
RESTART_CONSENT_OUTCOME = "pending"
"""Outcome of a call with a consent rule and no outcome when the gateway went down."""


def _restart_consent_outcome() -> ColumnElement[str | None]:
    """The stored outcome if any; else ``none`` under mode ``none``, ``pending`` under a rule."""
    return case(
        (CALLS.c.consent_outcome.is_not(None), CALLS.c.consent_outcome),
        (CALLS.c.consent_mode == "none", literal("none")),
        (CALLS.c.consent_mode.is_not(None), literal(RESTART_CONSENT_OUTCOME)),
        else_=None,
    )


async def close_orphans(engine: AsyncEngine, gateway_instance: str, now: datetime) -> int:
    """Close this instance's open records (``ended_at IS NULL``) as ended at ``now``.

    Only rows written by ``gateway_instance`` are touched: other instances
    sharing the database still own theirs. Run it before the record writer
    starts. Returns how many records were closed.
    """
    if not isinstance(gateway_instance, str) or not gateway_instance:
        raise ValueError(f"gateway_instance must be a non-empty string, got {gateway_instance!r}")
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    open_rows = select(CALLS.c.id, CALLS.c.started_at, CALLS.c.answered_at).where(
        CALLS.c.gateway_instance == gateway_instance, CALLS.c.ended_at.is_(None)
    )
    close = (
        update(CALLS)
        .where(CALLS.c.id == bindparam("p_id"), CALLS.c.ended_at.is_(None))
        .values(
            ended_at=now,
            disposition=RESTART_DISPOSITION,
            hangup_by="gateway",
            end_reason=RESTART_REASON,
            consent_outcome=_restart_consent_outcome(),
            duration_s=bindparam("p_duration_s", type_=CALLS.c.duration_s.type),
            billable_s=bindparam("p_billable_s", type_=CALLS.c.billable_s.type),
        )
    )
    async with engine.begin() as connection:
        rows = (await connection.execute(open_rows)).all()
        params: list[dict[str, Any]] = []
        for record_id, started_at, answered_at in rows:
            duration_s, billable_s = call_durations(started_at, answered_at, now)
            params.append(
                {"p_id": record_id, "p_duration_s": duration_s, "p_billable_s": billable_s}
            )
        if params:
            await connection.execute(close, params)
    return len(params)
