"""Hourly aggregates: settled hours stored once, the rest live, the same totals either way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import stats
from gateway.store.models import CALL_STATS_DAILY, CALL_STATS_HOURLY, CALL_STATS_MARKS
from gateway.store.prepared import PreparedReads
from gateway.store.stats import buckets, live_hours, settle, settled_marks, tenant_stats
from gateway.store.writer import RecordWriter
from tests.unit.store.records import T0, end, new_id, start

NOW = T0 + timedelta(days=2)


async def _calls(engine: AsyncEngine, offsets_min: list[int], open_at: int | None = None) -> None:
    writer = RecordWriter(engine)
    for n, minutes in enumerate(offsets_min):
        call = new_id()
        at = T0 + timedelta(minutes=minutes)
        writer.submit(start(call, at=at))
        writer.submit(
            end(
                call,
                after_s=minutes * 60 + 30 + n,
                answered_after_s=minutes * 60 + 5 if n % 2 else None,
                disposition="answered" if n % 2 else "busy",
                consent_outcome="granted" if n % 3 == 0 else None,
            )
        )
    if open_at is not None:
        writer.submit(start(new_id(), at=T0 + timedelta(minutes=open_at)))
    await writer.stop()


async def _all_live(engine: AsyncEngine, since: datetime, until: datetime, bucket: str) -> object:
    reads = PreparedReads(engine, through_engine=True)
    return buckets(await live_hours(reads, "acme", since, until), bucket)  # type: ignore[arg-type]


def _forget_marks(engine: AsyncEngine) -> None:
    """Drop what this process remembers of the engine's marks (as a restart would)."""
    stats._settling.pop(engine.sync_engine, None)


async def _stored(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(select(func.count()).select_from(CALL_STATS_HOURLY))
            ).scalar_one()
        )


async def test_stored_and_live_hours_give_the_same_buckets(db_engine: AsyncEngine) -> None:
    await _calls(db_engine, [0, 5, 61, 62, 130, 600, 601, 1500, 2000, 2700])
    since, until = T0 - timedelta(minutes=30), T0 + timedelta(days=1, hours=20, minutes=10)
    for bucket in ("hour", "day", "week"):
        expected = await _all_live(db_engine, since, until, bucket)
        assert await tenant_stats(db_engine, "acme", since, until, bucket, now=NOW) == expected
    assert await _stored(db_engine) > 0  # the settled hours came from the aggregates
    total = sum(
        row["calls"] for row in await tenant_stats(db_engine, "acme", since, until, "day", now=NOW)
    )
    assert total == 9  # the call at 45 h is after the range


async def test_the_api_s_prepared_reads_give_the_same_buckets(db_engine: AsyncEngine) -> None:
    """The API reads stats on the driver (SQLite threads, asyncpg connections)."""
    await _calls(db_engine, [0, 5, 61, 62, 130, 600, 601, 1500, 2000, 2700, 10_000])
    since, until = T0 - timedelta(minutes=30), T0 + timedelta(days=8, minutes=10)
    reads = PreparedReads(db_engine)
    try:
        for bucket in ("hour", "day", "week"):
            expected = await _all_live(db_engine, since, until, bucket)
            found = await tenant_stats(db_engine, "acme", since, until, bucket, NOW, reads)
            assert found == expected
    finally:
        await reads.close()
    assert await _stored(db_engine) > 0


async def test_an_open_call_holds_its_hour_and_later_ones_unsettled(db_engine: AsyncEngine) -> None:
    await _calls(db_engine, [0, 200, 400], open_at=180)
    mark = await settle(db_engine, "acme", NOW)
    assert mark == T0 + timedelta(hours=3)  # the hour of the call still open
    async with db_engine.connect() as connection:
        hours = [row[0] for row in await connection.execute(select(CALL_STATS_HOURLY.c.hour))]
    assert hours == [T0]
    rows = await tenant_stats(db_engine, "acme", T0, NOW, "day", now=NOW)
    assert rows[0]["calls"] == 4  # the open call and the later ones counted live


async def test_settling_twice_at_once_counts_each_hour_once(db_engine: AsyncEngine) -> None:
    await _calls(db_engine, [0, 70, 140])
    marks = await asyncio.gather(*(settle(db_engine, "acme", NOW) for _ in range(4)))
    assert len(set(marks)) == 1
    assert await _stored(db_engine) == 3
    rows = await tenant_stats(db_engine, "acme", T0, NOW, "day", now=NOW)
    assert rows[0]["calls"] == 3


async def test_no_calls_no_mark(db_engine: AsyncEngine) -> None:
    assert await settle(db_engine, "acme", datetime.now(UTC)) is None
    assert await tenant_stats(db_engine, "acme", T0, NOW, "hour") == []


async def _daily(engine: AsyncEngine) -> dict[datetime, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(CALL_STATS_DAILY.c.day, CALL_STATS_DAILY.c.calls))
        return {row[0]: row[1] for row in rows}


async def _days_until(engine: AsyncEngine) -> datetime | None:
    async with engine.connect() as connection:
        return (await connection.execute(select(CALL_STATS_MARKS.c.days_until))).scalar_one()


async def test_a_day_is_summed_once_all_its_hours_are_settled(db_engine: AsyncEngine) -> None:
    # T0 is noon: calls on that day, the next, and the one after (still within its hours)
    await _calls(db_engine, [0, 61, 600, 700, 1500, 2000, 2700])
    marks = await settled_marks(db_engine, "acme", NOW)
    assert marks is not None and marks.hours == NOW - timedelta(hours=1)
    day0 = T0.replace(hour=0)
    assert marks.days == day0 + timedelta(days=2) == await _days_until(db_engine)
    # 12:00, 13:01, 22:00, 23:40 on day 0; 13:00, 21:20 on day 1; 09:00 on day 2 (not summed)
    assert await _daily(db_engine) == {day0: 4, day0 + timedelta(days=1): 2}


async def test_days_are_summed_from_hours_stored_before_days_were(db_engine: AsyncEngine) -> None:
    """A store whose hours were settled before the daily sums existed (revision 0006):
    the next settling sums every whole day of them, the first ones too."""
    await _calls(db_engine, [0, 61, 600, 1500, 2000])
    await settle(db_engine, "acme", NOW)
    async with db_engine.begin() as connection:
        await connection.execute(delete(CALL_STATS_DAILY))
        await connection.execute(update(CALL_STATS_MARKS).values(days_until=None))
    _forget_marks(db_engine)
    marks = await settled_marks(db_engine, "acme", NOW)
    assert marks is not None and marks.days == T0.replace(hour=0) + timedelta(days=2)
    assert sum((await _daily(db_engine)).values()) == 5


async def test_ranges_over_many_days_match_the_calls(db_engine: AsyncEngine) -> None:
    """Whole days from the daily sums, their ragged edges from the hours, the recent
    ones live: the same buckets as counting every call, for ranges cut anywhere."""
    offsets = [n * 397 + (n % 7) * 13 for n in range(60)]  # every ~6.6 h over ~16.5 days
    await _calls(db_engine, offsets)
    now = T0 + timedelta(days=14, hours=5)
    reads = PreparedReads(db_engine)
    try:
        for since_h, until_h in ((-30, 24 * 20), (5, 24 * 9 + 7), (36, 24 * 3), (11, 37)):
            since = T0 + timedelta(hours=since_h, minutes=17)
            until = T0 + timedelta(hours=until_h, minutes=41)
            for bucket in ("day", "week", "hour"):
                expected = await _all_live(db_engine, since, until, bucket)
                found = await tenant_stats(db_engine, "acme", since, until, bucket, now, reads)
                assert found == expected, (since_h, until_h, bucket)
    finally:
        await reads.close()
    assert len(await _daily(db_engine)) >= 12
