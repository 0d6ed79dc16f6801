"""Call statistics per hour, day or week, from hourly aggregates kept as hours settle.

An hour of a tenant is *settled* once it ended more than an hour ago and no
call that started in it is still open: its counts can no longer change
(erasure replaces numbers, never rows). Settled hours are aggregated once
into ``call_stats_hourly`` and never read from ``calls`` again; a UTC day
whose 24 hours are settled is summed once more into ``call_stats_daily``.
The rest of a range (its unsettled recent hours, and the partial hours at
its edges) is aggregated from ``calls`` on each request. So a 90-day range
by day or week reads 90 stored rows, not 2,160 hours or a million calls.

The aggregates outlive the records: once retention removes old call records,
the stats of their hours still count them.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import Select, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.models import (
    CALL_STATS_DAILY,
    CALL_STATS_HOURLY,
    CALL_STATS_MARKS,
    CALLS,
    CONSENT_OUTCOMES,
)
from gateway.store.prepared import PreparedReads, Rows

Bucket = Literal["hour", "day", "week"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SETTLE_AFTER = timedelta(hours=1)
COUNTS = ("calls", "answered", "duration_s", "billable_s", *(f"o_{o}" for o in CONSENT_OUTCOMES))

SETTLE_MEMO_S = 1.0
"""How long a found mark is trusted before the store is asked again (see :func:`settle`)."""


class Settled(NamedTuple):
    """How far a tenant's aggregates reach: every hour before ``hours`` is in
    ``call_stats_hourly``, every day before ``days`` in ``call_stats_daily``."""

    hours: datetime
    days: datetime | None


@dataclass
class _Settling:
    """One tenant's settling on one engine: one at a time, and the marks last found."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    horizon: datetime | None = None
    trusted_until: float = 0.0
    marks: Settled | None = None


_settling: weakref.WeakKeyDictionary[Engine, dict[str, _Settling]] = weakref.WeakKeyDictionary()


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def floor_day(instant: datetime) -> datetime:
    return floor_hour(instant).replace(hour=0)


def ceil_day(instant: datetime) -> datetime:
    floor = floor_day(instant)
    return floor if floor == instant else floor + DAY


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
    """Aggregate the tenant's newly settled hours and days; the instant before which
    every hour is kept (see :func:`settled_marks`)."""
    marks = await settled_marks(engine, tenant, now, fresh=fresh)
    return None if marks is None else marks.hours


async def settled_marks(
    engine: AsyncEngine, tenant: str, now: datetime, *, fresh: bool = False
) -> Settled | None:
    """Aggregate the tenant's newly settled hours and days; how far the aggregates reach.

    Marks this process found are trusted for :data:`SETTLE_MEMO_S` within the same
    hour: the stored marks only move forward, and older marks cost more live hours,
    never a wrong count. ``fresh`` settles whatever was found (retention settles the
    hours it is about to remove records of)."""
    horizon = floor_hour(now - SETTLE_AFTER)
    state = _settling.setdefault(engine.sync_engine, {}).setdefault(tenant, _Settling())
    async with state.lock:
        if not fresh and state.horizon == horizon and time.monotonic() < state.trusted_until:
            return state.marks
        state.marks = await _settle(engine, tenant, now)
        state.horizon, state.trusted_until = horizon, time.monotonic() + SETTLE_MEMO_S
        return state.marks


async def _settle(engine: AsyncEngine, tenant: str, now: datetime) -> Settled | None:
    """Aggregate the hours settled since the stored mark, then the days all of whose
    hours are; the new marks."""
    marks_table = CALL_STATS_MARKS.c
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(marks_table.settled_until, marks_table.days_until).where(
                    marks_table.tenant == tenant
                )
            )
        ).first()
        mark, days = (row[0], row[1]) if row is not None else (None, None)
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
        hours_due = start < horizon
        target = horizon if hours_due else mark
        if target is None:
            return None
        day_from = days if days is not None else await _first_day(connection, tenant, start)
        day_target = floor_day(target)
        days_due = day_from < day_target
        if not hours_due and not days_due:
            return Settled(target, days)
    hours = await live_hours(PreparedReads(engine, through_engine=True), tenant, start, horizon)
    new_days = day_target if days_due else days
    try:
        async with engine.begin() as connection:
            if hours_due and hours:
                await connection.execute(
                    insert(CALL_STATS_HOURLY), [{"tenant": tenant, **row} for row in hours]
                )
            if days_due:
                await _sum_days(connection, tenant, day_from, day_target)
            if mark is None:
                await connection.execute(
                    insert(CALL_STATS_MARKS).values(
                        tenant=tenant, settled_until=target, days_until=new_days
                    )
                )
            else:
                moved = await connection.execute(
                    update(CALL_STATS_MARKS)
                    .where(
                        marks_table.tenant == tenant,
                        marks_table.settled_until == mark,
                        marks_table.days_until.is_(None)
                        if days is None
                        else marks_table.days_until == days,
                    )
                    .values(settled_until=target, days_until=new_days)
                )
                if moved.rowcount != 1:
                    raise IntegrityError("settled elsewhere", None, ValueError())
    except IntegrityError:
        # another instance settled these first: use what it kept
        return None if mark is None else Settled(mark, days)
    return Settled(target, new_days)


async def _first_day(connection: AsyncConnection, tenant: str, start: datetime) -> datetime:
    """The first day to sum: that of the tenant's first stored hour, else of ``start``."""
    first_hour = (
        await connection.execute(
            select(func.min(CALL_STATS_HOURLY.c.hour)).where(CALL_STATS_HOURLY.c.tenant == tenant)
        )
    ).scalar()
    return floor_day(min(first_hour, start) if first_hour is not None else start)


async def _sum_days(
    connection: AsyncConnection, tenant: str, since: datetime, until: datetime
) -> None:
    """Sum the stored hours of the days in [since, until) into ``call_stats_daily``."""
    table = CALL_STATS_HOURLY
    rows = await connection.execute(
        select(table.c.hour, *(table.c[name] for name in COUNTS)).where(
            table.c.tenant == tenant, table.c.hour >= since, table.c.hour < until
        )
    )
    days: dict[datetime, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for row in rows:
        target = days[floor_day(row[0])]
        for name, value in zip(COUNTS, row[1:], strict=True):
            target[name] += value
    if days:
        await connection.execute(
            insert(CALL_STATS_DAILY),
            [{"tenant": tenant, "day": day, **sums} for day, sums in sorted(days.items())],
        )


def _day_or_hour_expression(dialect: str, bucket: Bucket, instant: Any) -> Any:
    """The start of the day (``bucket`` day) or hour of each stored ``instant``, as the
    API writes it (RFC 3339, UTC)."""
    if dialect == "postgresql":
        return func.to_char(
            func.date_trunc(bucket, func.timezone("UTC", instant)), 'YYYY-MM-DD"T"HH24:00:00"Z"'
        )
    if bucket == "hour":
        return func.substr(instant, 1, 10) + "T" + func.substr(instant, 12, 2) + ":00:00Z"
    return func.substr(instant, 1, 10) + "T00:00:00Z"


def _in_range(instant: Any) -> tuple[Any, Any]:
    return (
        instant >= bindparam("since", type_=instant.type),
        instant < bindparam("until", type_=instant.type),
    )


def _hourly_statement(dialect: str, tenant: str, bucket: Bucket) -> Select[Any]:
    table = CALL_STATS_HOURLY
    key = _day_or_hour_expression(dialect, bucket, table.c.hour).label("bucket")
    return (
        select(key, *(func.sum(table.c[name]).label(name) for name in COUNTS))
        .where(table.c.tenant == tenant, *_in_range(table.c.hour))
        .group_by(key)
    )


def _week_expression(dialect: str, day: Any) -> Any:
    """The Monday (ISO 8601 weeks) of each stored day, as the API writes it."""
    if dialect == "postgresql":
        return func.to_char(
            func.date_trunc("week", func.timezone("UTC", day)), 'YYYY-MM-DD"T"00:00:00"Z"'
        )
    # six days back, then on to the next Monday (the same day when it is one)
    return func.strftime("%Y-%m-%dT00:00:00Z", day, "-6 days", "weekday 1")


def _daily_statement(dialect: str, tenant: str, bucket: Bucket) -> Select[Any]:
    table = CALL_STATS_DAILY
    in_range = (table.c.tenant == tenant, *_in_range(table.c.day))
    if bucket == "day":
        key = _day_or_hour_expression(dialect, "day", table.c.day).label("bucket")
        return select(key, *(table.c[name] for name in COUNTS)).where(*in_range)
    key = _week_expression(dialect, table.c.day).label("bucket")
    sums = (func.sum(table.c[name]).label(name) for name in COUNTS)
    return select(key, *sums).where(*in_range).group_by(key)


def _bucket_rows(rows: Rows) -> dict[str, dict[str, float]]:
    return {row[0]: dict(zip(COUNTS, row[1:], strict=True)) for row in rows}


async def _stored(
    reads: PreparedReads,
    tenant: str,
    since: datetime,
    until: datetime,
    bucket: Bucket,
    *,
    daily: bool = False,
) -> dict[str, dict[str, float]]:
    """Stored sums per ``bucket`` in [since, until): from the daily rows when ``daily``
    (days or weeks), else from the hourly ones (hours or days)."""
    dialect = reads.engine.dialect.name
    values = {"since": since, "until": until}
    build = _daily_statement if daily else _hourly_statement
    statement = reads.prepared(
        (build.__name__, tenant, bucket), lambda: build(dialect, tenant, bucket), values
    )
    return await reads.fetch(statement, values, _bucket_rows)


async def stored_buckets(
    reads: PreparedReads,
    tenant: str,
    since: datetime,
    until: datetime,
    bucket: Bucket,
    days_until: datetime | None = None,
) -> dict[str, dict[str, float]]:
    """The settled hours in [since, until), summed per bucket: per hour or day by the
    database, whole days before ``days_until`` from the daily sums, days into weeks here
    (a 90-day range is 90 rows)."""
    if bucket == "hour":
        return await _stored(reads, tenant, since, until, "hour")
    first_day = ceil_day(since)
    last_day = floor_day(until) if days_until is None else min(floor_day(until), days_until)
    whole: dict[str, dict[str, float]] = {}  # per bucket, from the daily sums
    days: dict[str, dict[str, float]] = {}  # per day, from the hours
    if days_until is None or first_day >= last_day:
        days = await _stored(reads, tenant, since, until, "day")
    else:
        whole = await _stored(reads, tenant, first_day, last_day, bucket, daily=True)
        if since < first_day:
            days.update(await _stored(reads, tenant, since, first_day, "day"))
        if last_day < until:
            days.update(await _stored(reads, tenant, last_day, until, "day"))
    if bucket == "day":
        return whole | days
    if not days:
        return whole
    weeks: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for source, key_of in ((whole, str), (days, _week_of_day)):
        for key, row in source.items():
            target = weeks[key_of(key)]
            for name in COUNTS:
                target[name] += row[name] or 0
    return weeks


@functools.lru_cache(maxsize=4096)
def _week_of_day(day: str) -> str:
    """The week bucket of a day bucket ("2026-03-05T00:00:00Z" -> "2026-03-02T00:00:00Z")."""
    first = date.fromisoformat(day[:10])
    return f"{first - timedelta(days=first.weekday())}T00:00:00Z"


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
    settled = await settled_marks(engine, tenant, now or datetime.now(UTC))
    inner_start, inner_end = ceil_hour(since), floor_hour(until)
    inner_end = inner_start if settled is None else min(inner_end, settled.hours)
    summed: dict[str, dict[str, float]] = {}
    if inner_start < inner_end:
        days_until = None if settled is None else settled.days
        summed = await stored_buckets(reads, tenant, inner_start, inner_end, bucket, days_until)
        hours = []
        if since < inner_start:
            hours += await live_hours(reads, tenant, since, inner_start)
        if inner_end < until:
            hours += await live_hours(reads, tenant, inner_end, until)
    else:
        hours = await live_hours(reads, tenant, since, until)
    return buckets(hours, bucket, summed)
