"""Consent fields, consent events and recordings through the record writer, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.batch import write_plans
from gateway.store.models import CALLS, CONSENT_EVENTS, RECORDINGS
from gateway.store.plan import plan_batch
from gateway.store.queries import get_call
from gateway.store.writer import CallUpdate, RecordWriter
from tests.unit.store.records import (
    NOTICE_SHA256,
    POLICY_VERSION,
    RULES,
    T0,
    answer,
    consent_event,
    end,
    new_id,
    recording,
    start,
)
from tests.unit.store.statements import StatementLog

GUARD_S = 20.0
"""Upper bound on waiting for the writer; a hang guard, not a timing check."""


def _trail(record_id: str) -> list[Any]:
    """A callee opting in under a German rule: told, pressed 1, granted; in seq order."""
    return [
        consent_event(record_id, 1, party="caller", state="granted", previous="pending",
                      method="policy", notice_sha256=None, detail="tenant's own agent"),
        consent_event(record_id, 2, party="callee", state="notified", previous="pending",
                      method="notice"),
        consent_event(record_id, 3, party="callee", state="granted", previous="notified",
                      method="digit", digit="1"),
    ]  # fmt: skip


def _consent_call(record_id: str) -> list[Any]:
    return [
        start(
            record_id,
            consent_mode="opt_in",
            consent_parties="all",
            consent_rules=RULES,
            policy_version=POLICY_VERSION,
        ),
        answer(record_id, after_s=2),
        *_trail(record_id),
        recording(record_id),
        end(record_id, consent_outcome="granted", capture_s=52.5, notice_sha256=NOTICE_SHA256),
    ]


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def _seqs(engine: AsyncEngine, record_id: str) -> list[int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            select(CONSENT_EVENTS.c.seq)
            .where(CONSENT_EVENTS.c.call_record_id == record_id)
            .order_by(CONSENT_EVENTS.c.id)
        )
        return list(result.scalars())


@pytest.fixture
def inserts(db_engine: AsyncEngine) -> AsyncIterator[StatementLog]:
    log = StatementLog(db_engine)
    yield log
    log.close()


async def test_call_with_consent_trail_and_recording_round_trips(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    writer = RecordWriter(db_engine)
    for op in _consent_call(record_id):
        writer.submit(op)
    await writer.stop()
    assert (writer.written, writer.rejected) == (7, 0)

    call = await get_call(db_engine, call_id=f"{record_id}@pbx.example")

    assert call is not None
    assert (call["consent_mode"], call["consent_parties"]) == ("opt_in", "all")
    assert call["consent_rules"] == RULES
    assert call["policy_version"] == POLICY_VERSION
    assert call["consent_outcome"] == "granted"
    assert call["capture_s"] == pytest.approx(52.5)
    assert call["notice_sha256"] == NOTICE_SHA256
    trail = call["consent_events"]
    assert [e["seq"] for e in trail] == [1, 2, 3]
    assert [(e["party"], e["previous"], e["state"], e["method"]) for e in trail] == [
        ("caller", "pending", "granted", "policy"),
        ("callee", "pending", "notified", "notice"),
        ("callee", "notified", "granted", "digit"),
    ]
    assert [e["digit"] for e in trail] == [None, None, "1"]
    assert trail[0]["detail"] == "tenant's own agent"
    assert trail[1]["notice_sha256"] == NOTICE_SHA256
    assert trail[2]["at"] == (T0 + timedelta(seconds=3)).isoformat()
    assert {e["call_record_id"] for e in trail} == {record_id}
    assert {e["tenant"] for e in trail} == {"acme"}
    assert {e["policy_version"] for e in trail} == {POLICY_VERSION}
    (stored,) = call["recordings"]
    expected = recording(record_id)
    assert stored["call_record_id"] == record_id
    assert stored["path"] == expected.path
    assert (stored["format"], stored["channels"], stored["sample_rate"]) == ("wav", 2, 8000)
    assert stored["started_at"] == "2026-03-01T12:00:12+00:00"
    assert stored["ended_at"] == "2026-03-01T12:01:04.500000+00:00"
    assert stored["duration_s"] == pytest.approx(52.5)
    assert (stored["bytes"], stored["sha256"]) == (expected.bytes, expected.sha256)
    assert stored["created_at"] == "2026-03-01T12:01:05+00:00"


async def test_a_batch_of_calls_writes_one_insert_per_table(
    db_engine: AsyncEngine, inserts: StatementLog
) -> None:
    ids = [new_id() for _ in range(25)]
    writer = RecordWriter(db_engine, batch_size=1000)
    for record_id in ids:
        for op in _consent_call(record_id):
            writer.submit(op)
    await writer.stop()

    assert writer.batches == 1
    assert inserts.inserts == [("calls", 25), ("consent_events", 75), ("recordings", 25)]
    for record_id in ids[:3]:
        assert await _seqs(db_engine, record_id) == [1, 2, 3]


async def test_events_in_later_batches_follow_in_order(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    writer = RecordWriter(db_engine, batch_size=2, max_delay=0)
    await writer.start()
    writer.submit(start(record_id, consent_mode="notice", consent_parties="one"))
    await writer.flush()
    for seq in range(1, 10):
        writer.submit(consent_event(record_id, seq, at=T0 + timedelta(seconds=seq)))
    writer.submit(CallUpdate(record_id, consent_outcome="granted"))
    writer.submit(end(record_id))
    await writer.stop()

    assert writer.batches >= 6 and writer.rejected == 0
    assert await _seqs(db_engine, record_id) == list(range(1, 10))
    call = await get_call(db_engine, record_id=record_id)
    assert call is not None
    assert [e["seq"] for e in call["consent_events"]] == list(range(1, 10))
    # the end carried no outcome, so the update's stays
    assert call["consent_outcome"] == "granted"


async def test_trail_is_read_in_seq_order_whatever_the_timestamps(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    writer = RecordWriter(db_engine)
    writer.submit(start(record_id))
    # a clock step makes later events carry earlier times: seq, not at, orders the trail
    for seq, offset in [(1, 30), (2, 10), (3, 20)]:
        writer.submit(consent_event(record_id, seq, at=T0 + timedelta(seconds=offset)))
    await writer.stop()
    call = await get_call(db_engine, record_id=record_id)
    assert call is not None
    assert [e["seq"] for e in call["consent_events"]] == [1, 2, 3]


async def test_events_of_a_call_that_does_not_exist_are_rejected(db_engine: AsyncEngine) -> None:
    known, unknown = new_id(), new_id()
    writer = RecordWriter(db_engine)
    writer.submit(start(known))
    writer.submit(consent_event(known, 1))
    writer.submit(consent_event(unknown, 1))
    writer.submit(recording(unknown))
    await writer.stop()
    assert (writer.written, writer.rejected) == (2, 2)
    assert await _seqs(db_engine, known) == [1]
    assert await _count(db_engine, RECORDINGS) == 0


async def test_a_seq_used_twice_is_refused_alone(db_engine: AsyncEngine) -> None:
    record_id, other = new_id(), new_id()
    writer = RecordWriter(db_engine)
    writer.submit(start(record_id))
    writer.submit(start(other))
    writer.submit(consent_event(record_id, 1))
    writer.submit(consent_event(other, 1))
    writer.submit(
        consent_event(record_id, 2, state="granted", previous="notified", method="implied")
    )
    writer.submit(consent_event(record_id, 2, state="declined", previous="notified",
                                method="digit", digit="9"))  # fmt: skip
    writer.submit(consent_event(record_id, 3, state="withdrawn", previous="granted",
                                method="digit", digit="7"))  # fmt: skip
    writer.submit(recording(record_id))
    await writer.stop()

    assert (writer.written, writer.rejected) == (7, 1)
    call = await get_call(db_engine, record_id=record_id)
    assert call is not None
    assert [(e["seq"], e["state"]) for e in call["consent_events"]] == [
        (1, "notified"),
        (2, "granted"),
        (3, "withdrawn"),
    ]
    assert len(call["recordings"]) == 1
    assert await _seqs(db_engine, other) == [1]


async def test_rewriting_a_committed_batch_adds_no_events_twice(db_engine: AsyncEngine) -> None:
    ids = [new_id() for _ in range(3)]
    ops = [op for record_id in ids for op in _consent_call(record_id)]
    async with db_engine.begin() as connection:
        assert await write_plans(connection, plan_batch(ops), verify_new=False) == []
    # the commit went through but the writer never heard back: it writes the batch again
    async with db_engine.begin() as connection:
        assert await write_plans(connection, plan_batch(ops), verify_new=True) == []

    assert await _count(db_engine, CONSENT_EVENTS) == 9
    assert await _count(db_engine, RECORDINGS) == 3
    for record_id in ids:
        assert await _seqs(db_engine, record_id) == [1, 2, 3]


async def test_events_wait_out_a_missing_table_and_arrive_in_order(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as connection:
        await connection.execute(text("ALTER TABLE consent_events RENAME TO consent_events_away"))
    writer = RecordWriter(db_engine, batch_size=4, retry_initial=0.01, retry_max=0.05)
    await writer.start()
    ids = [new_id() for _ in range(5)]
    for record_id in ids:
        for op in _consent_call(record_id):
            writer.submit(op)
    async with asyncio.timeout(GUARD_S):
        while writer.failures < 2:
            await asyncio.sleep(0.005)
    assert writer.written == 0
    async with db_engine.begin() as connection:
        await connection.execute(text("ALTER TABLE consent_events_away RENAME TO consent_events"))
    async with asyncio.timeout(GUARD_S):
        await writer.stop()

    assert (writer.written, writer.rejected) == (35, 0)
    for record_id in ids:
        assert await _seqs(db_engine, record_id) == [1, 2, 3]
    assert await _count(db_engine, RECORDINGS) == 5
    async with db_engine.connect() as connection:
        outcomes = await connection.execute(select(CALLS.c.consent_outcome))
        assert set(outcomes.scalars()) == {"granted"}
