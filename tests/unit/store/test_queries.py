"""Reading records back: newest first, per tenant, JSON-ready, instants in UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import session_factory
from gateway.store.models import CALLS, CallRecord
from gateway.store.queries import get_call, latest_calls
from gateway.store.writer import RecordWriter
from tests.unit.store.records import T0, answer, end, new_id, start


async def _write(engine: AsyncEngine, *ops: object) -> None:
    writer = RecordWriter(engine)
    for op in ops:
        writer.submit(op)  # type: ignore[arg-type]
    await writer.stop()


async def test_latest_calls_are_newest_first_and_limited(db_engine: AsyncEngine) -> None:
    ids = [new_id() for _ in range(6)]
    # submitted out of order, so the order comes from started_at, not from insertion
    order = [3, 0, 5, 1, 4, 2]
    await _write(db_engine, *(start(ids[i], at=T0 + timedelta(seconds=i)) for i in order))

    rows = await latest_calls(db_engine, limit=4)

    assert [row["id"] for row in rows] == [ids[5], ids[4], ids[3], ids[2]]


async def test_default_limit_is_twenty(db_engine: AsyncEngine) -> None:
    await _write(db_engine, *(start(at=T0 + timedelta(seconds=i)) for i in range(25)))
    assert len(await latest_calls(db_engine)) == 20


async def test_tenant_filter_returns_only_that_tenant(db_engine: AsyncEngine) -> None:
    await _write(
        db_engine,
        *(start(tenant="acme", at=T0 + timedelta(seconds=i)) for i in range(3)),
        *(start(tenant="globex", at=T0 + timedelta(seconds=10 + i)) for i in range(2)),
    )
    acme = await latest_calls(db_engine, tenant="acme")
    assert len(acme) == 3 and {row["tenant"] for row in acme} == {"acme"}
    assert await latest_calls(db_engine, tenant="initech") == []
    assert len(await latest_calls(db_engine)) == 5


async def test_rows_are_plain_json_with_every_column(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    await _write(db_engine, start(record_id), answer(record_id), end(record_id))

    (row,) = await latest_calls(db_engine)

    assert set(row) == {column.name for column in CALLS.columns}
    assert json.loads(json.dumps(row)) == row
    assert row["started_at"] == "2026-03-01T12:00:00+00:00"
    assert row["answered_at"] == "2026-03-01T12:00:05+00:00"
    assert row["ended_at"] == "2026-03-01T12:01:05+00:00"
    assert row["media_stats"]["b"]["jitter_ms"] == 0.75
    assert row["billable_s"] == pytest.approx(60.0)


@pytest.mark.parametrize("limit", [0, -5, 2.5, True])
async def test_bad_limit_is_refused(db_engine: AsyncEngine, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        await latest_calls(db_engine, limit=limit)  # type: ignore[arg-type]


async def test_get_call_finds_the_newest_record_of_a_call_id(db_engine: AsyncEngine) -> None:
    older, newer, other = new_id(), new_id(), new_id()
    await _write(
        db_engine,
        start(newer, call_id="dup@pbx", at=T0 + timedelta(seconds=30)),
        start(older, call_id="dup@pbx", at=T0),
        start(other, call_id="other@pbx"),
    )
    found = await get_call(db_engine, call_id="dup@pbx")
    assert found is not None and found["id"] == newer
    assert await get_call(db_engine, call_id="missing@pbx") is None


async def test_instants_in_any_zone_round_trip_as_the_same_utc_instant(
    db_engine: AsyncEngine,
) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    los_angeles = timezone(timedelta(hours=-8))
    early = datetime(2026, 3, 1, 17, 0, 0, 123456, tzinfo=kolkata)  # 11:30 UTC
    late = datetime(2026, 3, 1, 4, 0, 0, tzinfo=los_angeles)  # 12:00 UTC
    early_id, late_id = new_id(), new_id()
    await _write(db_engine, start(late_id, at=late), start(early_id, at=early))

    rows = await latest_calls(db_engine)
    assert [row["id"] for row in rows] == [late_id, early_id]
    assert rows[1]["started_at"] == "2026-03-01T11:30:00.123456+00:00"
    assert datetime.fromisoformat(rows[0]["started_at"]) == late

    async with session_factory(db_engine)() as session:
        record = await session.get(CallRecord, early_id)
    assert record is not None
    assert record.started_at == early
    assert record.started_at.utcoffset() == timedelta(0)
    assert record.started_at.tzinfo == UTC


async def test_naive_datetime_is_refused_by_the_column_type(db_engine: AsyncEngine) -> None:
    async with session_factory(db_engine)() as session:
        session.add(
            CallRecord(
                id=new_id(),
                tenant="acme",
                call_id="naive@pbx",
                direction="inbound",
                source_uri="sip:a@trunk",
                destination_uri="sip:b@pbx",
                source_addr="127.0.0.1:5060",
                started_at=datetime(2026, 3, 1, 12, 0),
                gateway_instance="gw",
            )
        )
        with pytest.raises(StatementError, match="naive datetime"):
            await session.commit()
