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
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.models import CALL_STATS_HOURLY, CALL_STATS_MARKS, CALLS, CONSENT_OUTCOMES

Bucket = Literal["hour", "day", "week"]
HOUR = timedelta(hours=1)
SETTLE_AFTER = timedelta(hours=1)
COUNTS = ("calls", "answered", "duration_s", "billable_s", *(f"o_{o}" for o in CONSENT_OUTCOMES))

_locks: dict[tuple[int, str], asyncio.Lock] = {}


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


async def live_hours(
    connection: AsyncConnection, tenant: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Per hour of start in [since, until): the counts, aggregated from ``calls`` now."""
    c = CALLS.c
    hour = _hour_expression(connection.dialect.name).label("hour")
    query = (
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
        .where(c.tenant == tenant, c.started_at >= since, c.started_at < until)
        .group_by(hour)
    )
    rows = (await connection.execute(query)).mappings().all()
    return [
        {"hour": _hour_value(row["hour"]), **{name: row[name] or 0 for name in COUNTS}}
        for row in rows
    ]


async def settle(engine: AsyncEngine, tenant: str, now: datetime) -> datetime | None:
    """Aggregate the tenant's newly settled hours; the instant before which all are kept."""
    lock = _locks.setdefault((id(engine), tenant), asyncio.Lock())
    async with lock:
        async with engine.connect() as connection:
            mark = (
                await connection.execute(
                    select(CALL_STATS_MARKS.c.settled_until).where(
                        CALL_STATS_MARKS.c.tenant == tenant
                    )
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
            hours = await live_hours(connection, tenant, start, horizon)
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


def _bucket_expression(dialect: str, bucket: Bucket) -> Any:
    """The start of the bucket of each stored hour, as the API writes it (RFC 3339, UTC)."""
    hour = CALL_STATS_HOURLY.c.hour
    if dialect == "postgresql":
        unit = "hour" if bucket == "hour" else bucket
        return func.to_char(
            func.date_trunc(unit, func.timezone("UTC", hour)), 'YYYY-MM-DD"T"HH24:00:00"Z"'
        )
    if bucket == "hour":
        return func.substr(hour, 1, 10) + "T" + func.substr(hour, 12, 2) + ":00:00Z"
    if bucket == "day":
        return func.substr(hour, 1, 10) + "T00:00:00Z"
    # the Monday on or before the day ('weekday 1' goes forward to the next Monday)
    return func.date(hour, "-6 days", "weekday 1") + "T00:00:00Z"


async def stored_buckets(
    connection: AsyncConnection, tenant: str, since: datetime, until: datetime, bucket: Bucket
) -> dict[str, dict[str, float]]:
    """The settled hours in [since, until), summed per bucket by the database."""
    table = CALL_STATS_HOURLY
    key = _bucket_expression(connection.dialect.name, bucket).label("bucket")
    query = (
        select(key, *(func.sum(table.c[name]).label(name) for name in COUNTS))
        .where(table.c.tenant == tenant, table.c.hour >= since, table.c.hour < until)
        .group_by(key)
    )
    rows = (await connection.execute(query)).all()
    return {row[0]: dict(zip(COUNTS, row[1:], strict=True)) for row in rows}


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
) -> list[dict[str, Any]]:
    """Per bucket over [since, until): settled hours from the aggregates, the rest live."""
    settled = await settle(engine, tenant, now or datetime.now(UTC))
    inner_start, inner_end = ceil_hour(since), floor_hour(until)
    inner_end = inner_start if settled is None else min(inner_end, settled)
    summed: dict[str, dict[str, float]] = {}
    async with engine.connect() as connection:
        if inner_start < inner_end:
            summed = await stored_buckets(connection, tenant, inner_start, inner_end, bucket)
            hours = []
            if since < inner_start:
                hours += await live_hours(connection, tenant, since, inner_start)
            if inner_end < until:
                hours += await live_hours(connection, tenant, inner_end, until)
        else:
            hours = await live_hours(connection, tenant, since, until)
    return buckets(hours, bucket, summed)
