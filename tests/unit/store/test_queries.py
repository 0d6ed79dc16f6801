"""Reading records back: newest first, per tenant, JSON-ready, instants in UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import session_factory
from gateway.store.models import CALLS, CONSENT_EVENTS, RECORDINGS, CallRecord
from gateway.store.queries import get_call, latest_calls
from gateway.store.writer import RecordWriter
from tests.unit.store.records import (
    RULES,
    T0,
    answer,
    consent_event,
    end,
    new_id,
    recording,
    start,
)


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


async def test_get_call_by_record_id_and_tenant(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    await _write(db_engine, start(record_id, tenant="globex"))
    found = await get_call(db_engine, record_id=record_id)
    assert found is not None and found["call_id"] == f"{record_id}@pbx.example"
    assert (found["consent_events"], found["recordings"]) == ([], [])
    assert await get_call(db_engine, record_id=record_id, tenant="globex") is not None
    assert await get_call(db_engine, record_id=record_id, tenant="acme") is None
    assert await get_call(db_engine, call_id=found["call_id"], tenant="acme") is None


async def test_get_call_result_is_plain_json(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    await _write(
        db_engine,
        start(record_id, consent_mode="notice", consent_parties="one", consent_rules=RULES),
        consent_event(record_id, 1),
        recording(record_id),
        end(record_id, consent_outcome="granted", capture_s=40.0),
    )
    found = await get_call(db_engine, record_id=record_id)
    assert found is not None
    assert set(found) == {column.name for column in CALLS.columns} | {
        "consent_events",
        "recordings",
    }
    assert json.loads(json.dumps(found)) == found
    assert set(found["consent_events"][0]) == {column.name for column in CONSENT_EVENTS.columns}
    assert set(found["recordings"][0]) == {column.name for column in RECORDINGS.columns}
    assert found["consent_events"][0]["at"] == "2026-03-01T12:00:01+00:00"


@pytest.mark.parametrize("keys", [{}, {"call_id": "a@pbx", "record_id": "r"}])
async def test_get_call_needs_exactly_one_key(db_engine: AsyncEngine, keys: dict) -> None:
    with pytest.raises(ValueError, match="exactly one of call_id and record_id"):
        await get_call(db_engine, **keys)


async def test_latest_calls_show_the_consent_mode_and_outcome(db_engine: AsyncEngine) -> None:
    ruled, open_call, unruled = new_id(), new_id(), new_id()
    await _write(
        db_engine,
        start(ruled, consent_mode="opt_out", consent_parties="all", at=T0),
        end(ruled, consent_outcome="declined"),
        start(open_call, consent_mode="opt_in", at=T0 + timedelta(seconds=1)),
        start(unruled, at=T0 + timedelta(seconds=2)),
    )
    rows = {row["id"]: row for row in await latest_calls(db_engine)}
    assert (rows[ruled]["consent_mode"], rows[ruled]["consent_outcome"]) == ("opt_out", "declined")
    assert (rows[open_call]["consent_mode"], rows[open_call]["consent_outcome"]) == ("opt_in", None)
    assert (rows[unruled]["consent_mode"], rows[unruled]["consent_outcome"]) == (None, None)


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
