"""Hourly aggregates: settled hours stored once, the rest live, the same totals either way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import CALL_STATS_HOURLY
from gateway.store.prepared import PreparedReads
from gateway.store.stats import buckets, live_hours, settle, tenant_stats
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
