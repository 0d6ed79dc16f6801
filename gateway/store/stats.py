"""Call statistics per hour, day or week, from hourly aggregates kept as hours settle.

An hour of a tenant is *settled* once it ended more than an hour ago and no
call that started in it is still open: its counts can no longer change
(erasure replaces numbers, never rows). Settled hours are aggregated once
into ``call_stats_hourly`` and never read from ``calls`` again; the rest of
a range (its unsettled recent hours, and the partial hours at its edges) is
aggregated from ``calls`` on each request. So a 90-day range costs a few
thousand small rows, not a million calls.

The aggregates outlive the records: once retention removes old call records,
the stats of their hours still count them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import CALL_STATS_HOURLY, CALL_STATS_MARKS, CALLS, CONSENT_OUTCOMES
from gateway.store.prepared import PreparedReads, Rows

Bucket = Literal["hour", "day", "week"]
HOUR = timedelta(hours=1)
SETTLE_AFTER = timedelta(hours=1)
COUNTS = ("calls", "answered", "duration_s", "billable_s", *(f"o_{o}" for o in CONSENT_OUTCOMES))

SETTLE_MEMO_S = 1.0
"""How long a found mark is trusted before the store is asked again (see :func:`settle`)."""


@dataclass
class _Settling:
    """One tenant's settling on one engine: one at a time, and the mark last found."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    horizon: datetime | None = None
    trusted_until: float = 0.0
    mark: datetime | None = None


_settling: weakref.WeakKeyDictionary[Engine, dict[str, _Settling]] = weakref.WeakKeyDictionary()


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def _hour_expression(dialect: str) -> Any:
    started = CALLS.c.started_at
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", started))
    return func.substr(started, 1, 13)  # "YYYY-MM-DD HH" of the stored UTC text


def _hour_value(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    return datetime.strptime(str(value), "%Y-%m-%d %H").replace(tzinfo=UTC)


def _live_hours_statement(dialect: str, tenant: str) -> Select[Any]:
    c = CALLS.c
    hour = _hour_expression(dialect).label("hour")
    return (
        select(
            hour,
            func.count().label("calls"),
            func.sum(case((c.answered_at.is_not(None), 1), else_=0)).label("answered"),
            func.coalesce(func.sum(c.duration_s), 0.0).label("duration_s"),
            func.coalesce(func.sum(c.billable_s), 0.0).label("billable_s"),
            *(
                func.sum(case((c.consent_outcome == outcome, 1), else_=0)).label(f"o_{outcome}")
                for outcome in CONSENT_OUTCOMES
            ),
        )
        .where(
            c.tenant == tenant,
            c.started_at >= bindparam("since", type_=c.started_at.type),
            c.started_at < bindparam("until", type_=c.started_at.type),
        )
        .group_by(hour)
    )


def _hour_rows(rows: Rows) -> list[dict[str, Any]]:
    return [
        {"hour": _hour_value(row[0]), **dict(zip(COUNTS, (v or 0 for v in row[1:]), strict=True))}
        for row in rows
    ]


async def live_hours(
    reads: PreparedReads, tenant: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Per hour of start in [since, until): the counts, aggregated from ``calls`` now."""
    dialect = reads.engine.dialect.name
    values = {"since": since, "until": until}
    statement = reads.prepared(
        ("stats.live_hours", tenant), lambda: _live_hours_statement(dialect, tenant), values
    )
    return await reads.fetch(statement, values, _hour_rows)


async def settle(
    engine: AsyncEngine, tenant: str, now: datetime, *, fresh: bool = False
) -> datetime | None:
    """Aggregate the tenant's newly settled hours; the instant before which all are kept.

    A mark this process found is trusted for :data:`SETTLE_MEMO_S` within the same
    hour: the stored mark only moves forward, and an older mark costs more live
    hours, never a wrong count. ``fresh`` settles whatever was found (retention
    settles the hours it is about to remove records of)."""
    horizon = floor_hour(now - SETTLE_AFTER)
    state = _settling.setdefault(engine.sync_engine, {}).setdefault(tenant, _Settling())
    async with state.lock:
        if not fresh and state.horizon == horizon and time.monotonic() < state.trusted_until:
            return state.mark
        state.mark = await _settle(engine, tenant, now)
        state.horizon, state.trusted_until = horizon, time.monotonic() + SETTLE_MEMO_S
        return state.mark


async def _settle(engine: AsyncEngine, tenant: str, now: datetime) -> datetime | None:
    """Aggregate the hours settled since the stored mark; the new mark."""
    async with engine.connect() as connection:
        mark = (
            await connection.execute(
                select(CALL_STATS_MARKS.c.settled_until).where(CALL_STATS_MARKS.c.tenant == tenant)
            )
        ).scalar()
        first_open = (
            await connection.execute(
                select(func.min(CALLS.c.started_at)).where(
                    CALLS.c.tenant == tenant, CALLS.c.ended_at.is_(None)
                )
            )
        ).scalar()
        horizon = floor_hour(now - SETTLE_AFTER)
        if first_open is not None:
            horizon = min(horizon, floor_hour(first_open))
        if mark is not None and mark >= horizon:
            return mark
        start = mark
        if start is None:
            first = (
                await connection.execute(
                    select(func.min(CALLS.c.started_at)).where(CALLS.c.tenant == tenant)
                )
            ).scalar()
            if first is None:
                return None
            start = floor_hour(first)
        if start >= horizon:
            return mark
    hours = await live_hours(PreparedReads(engine, through_engine=True), tenant, start, horizon)
    try:
        async with engine.begin() as connection:
            if hours:
                await connection.execute(
                    insert(CALL_STATS_HOURLY), [{"tenant": tenant, **row} for row in hours]
                )
            if mark is None:
                await connection.execute(
                    insert(CALL_STATS_MARKS).values(tenant=tenant, settled_until=horizon)
                )
            else:
                moved = await connection.execute(
                    update(CALL_STATS_MARKS)
                    .where(
                        CALL_STATS_MARKS.c.tenant == tenant,
                        CALL_STATS_MARKS.c.settled_until == mark,
                    )
                    .values(settled_until=horizon)
                )
                if moved.rowcount != 1:
                    raise IntegrityError("settled elsewhere", None, ValueError())
    except IntegrityError:
        return mark  # another instance settled these hours first: use what it kept
    return horizon


def _day_or_hour_expression(dialect: str, bucket: Bucket) -> Any:
    """The start of the day (``bucket`` day) or hour of each stored hour, as the API
    writes it (RFC 3339, UTC)."""
    hour = CALL_STATS_HOURLY.c.hour
    if dialect == "postgresql":
        return func.to_char(
            func.date_trunc(bucket, func.timezone("UTC", hour)), 'YYYY-MM-DD"T"HH24:00:00"Z"'
        )
    if bucket == "hour":
        return func.substr(hour, 1, 10) + "T" + func.substr(hour, 12, 2) + ":00:00Z"
    return func.substr(hour, 1, 10) + "T00:00:00Z"


def _stored_statement(dialect: str, tenant: str, bucket: Bucket) -> Select[Any]:
    table = CALL_STATS_HOURLY
    key = _day_or_hour_expression(dialect, bucket).label("bucket")
    return (
        select(key, *(func.sum(table.c[name]).label(name) for name in COUNTS))
        .where(
            table.c.tenant == tenant,
            table.c.hour >= bindparam("since", type_=table.c.hour.type),
            table.c.hour < bindparam("until", type_=table.c.hour.type),
        )
        .group_by(key)
    )


def _bucket_rows(rows: Rows) -> dict[str, dict[str, float]]:
    return {row[0]: dict(zip(COUNTS, row[1:], strict=True)) for row in rows}


async def stored_buckets(
    reads: PreparedReads, tenant: str, since: datetime, until: datetime, bucket: Bucket
) -> dict[str, dict[str, float]]:
    """The settled hours in [since, until), summed per bucket: per hour or day by the
    database, days into weeks here (a 90-day range is 90 rows)."""
    dialect = reads.engine.dialect.name
    grain: Bucket = "hour" if bucket == "hour" else "day"
    values = {"since": since, "until": until}
    statement = reads.prepared(
        ("stats.stored", tenant, grain), lambda: _stored_statement(dialect, tenant, grain), values
    )
    found = await reads.fetch(statement, values, _bucket_rows)
    if bucket != "week":
        return found
    weeks: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for day, row in found.items():
        target = weeks[bucket_of(datetime.strptime(day, "%Y-%m-%dT%H:00:00Z"), "week")]
        for name in COUNTS:
            target[name] += row[name] or 0
    return weeks


def bucket_of(hour: datetime, bucket: Bucket) -> str:
    if bucket == "day":
        hour = hour.replace(hour=0)
    elif bucket == "week":  # ISO weeks start on Monday (ISO 8601)
        hour = hour.replace(hour=0) - timedelta(days=hour.weekday())
    return hour.strftime("%Y-%m-%dT%H:00:00Z")


def buckets(
    hours: Sequence[dict[str, Any]],
    bucket: Bucket,
    summed: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Sum hourly counts (and buckets already summed) into buckets, in time order."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for key, row in (summed or {}).items():
        target = sums[key]
        for name in COUNTS:
            target[name] += row[name] or 0
    for row in hours:
        target = sums[bucket_of(row["hour"], bucket)]
        for name in COUNTS:
            target[name] += row[name]
    return [_shown(key, sums[key]) for key in sorted(sums)]


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The buckets :func:`buckets` made, added up into one, shown the same way."""
    sums: dict[str, float] = dict.fromkeys(COUNTS, 0)
    for row in rows:
        for name in ("calls", "answered", "duration_s", "billable_s"):
            sums[name] += row[name]
        for outcome, count in row["consent"].items():
            sums[f"o_{outcome}"] += count
    shown = _shown("", sums)
    del shown["bucket"]
    return shown


def _shown(key: str, row: dict[str, float]) -> dict[str, Any]:
    calls = int(row["calls"])
    answered = int(row["answered"])
    billable = float(row["billable_s"])
    return {
        "bucket": key,
        "calls": calls,
        "answered": answered,
        "answer_rate": round(answered / calls, 4) if calls else 0.0,
        "duration_s": round(float(row["duration_s"]), 3),
        "billable_s": round(billable, 3),
        "mean_billable_s": round(billable / answered, 3) if answered else 0.0,
        "consent": {
            outcome: int(row[f"o_{outcome}"]) for outcome in CONSENT_OUTCOMES if row[f"o_{outcome}"]
        },
    }


async def tenant_stats(
    engine: AsyncEngine,
    tenant: str,
    since: datetime,
    until: datetime,
    bucket: Bucket,
    now: datetime | None = None,
    reads: PreparedReads | None = None,
) -> list[dict[str, Any]]:
    """Per bucket over [since, until): settled hours from the aggregates, the rest live
    (read through ``reads``, or the engine's own connections)."""
    reads = reads or PreparedReads(engine, through_engine=True)
    settled = await settle(engine, tenant, now or datetime.now(UTC))
    inner_start, inner_end = ceil_hour(since), floor_hour(until)
    inner_end = inner_start if settled is None else min(inner_end, settled)
    summed: dict[str, dict[str, float]] = {}
    if inner_start < inner_end:
        summed = await stored_buckets(reads, tenant, inner_start, inner_end, bucket)
        hours = []
        if since < inner_start:
            hours += await live_hours(reads, tenant, since, inner_start)
        if inner_end < until:
            hours += await live_hours(reads, tenant, inner_end, until)
    else:
        hours = await live_hours(reads, tenant, since, until)
    return buckets(hours, bucket, summed)
