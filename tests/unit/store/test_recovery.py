"""Start-up recovery closes the open records of this instance only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import CALLS
from gateway.store.recovery import RESTART_REASON, close_orphans
from gateway.store.writer import CallUpdate, RecordWriter
from tests.unit.store.records import INSTANCE, T0, answer, end, new_id, start

NOW = T0 + timedelta(minutes=10)


async def _rows(engine: AsyncEngine) -> dict[str, dict]:
    async with engine.connect() as connection:
        result = await connection.execute(select(CALLS))
        return {row["id"]: dict(row) for row in result.mappings()}


async def _seed(engine: AsyncEngine) -> dict[str, str]:
    ids = {
        "open_answered": new_id(),
        "open_ringing": new_id(),
        "closed": new_id(),
        "other_instance_open": new_id(),
    }
    writer = RecordWriter(engine)
    writer.submit(start(ids["open_answered"]))
    writer.submit(answer(ids["open_answered"], after_s=60))
    writer.submit(start(ids["open_ringing"], at=T0 + timedelta(minutes=9)))
    writer.submit(start(ids["closed"]))
    writer.submit(end(ids["closed"], after_s=30, answered_after_s=10))
    writer.submit(start(ids["other_instance_open"], gateway_instance="gw-other"))
    await writer.stop()
    return ids


async def test_open_records_of_this_instance_are_closed_as_restarted(
    db_engine: AsyncEngine,
) -> None:
    ids = await _seed(db_engine)
    before = await _rows(db_engine)

    closed = await close_orphans(db_engine, INSTANCE, NOW)

    after = await _rows(db_engine)
    assert closed == 2
    answered = after[ids["open_answered"]]
    assert answered["ended_at"] == NOW
    assert answered["disposition"] == "gateway_restart"
    assert answered["end_reason"] == RESTART_REASON
    assert answered["hangup_by"] == "gateway"
    assert answered["duration_s"] == pytest.approx(600.0)
    assert answered["billable_s"] == pytest.approx(540.0)
    ringing = after[ids["open_ringing"]]
    assert ringing["duration_s"] == pytest.approx(60.0)
    assert ringing["billable_s"] == 0.0
    assert ringing["disposition"] == "gateway_restart"
    assert after[ids["closed"]] == before[ids["closed"]]
    assert after[ids["other_instance_open"]] == before[ids["other_instance_open"]]


async def test_recovery_twice_closes_nothing_more(db_engine: AsyncEngine) -> None:
    await _seed(db_engine)
    assert await close_orphans(db_engine, INSTANCE, NOW) == 2
    assert await close_orphans(db_engine, INSTANCE, NOW + timedelta(minutes=1)) == 0


async def test_the_other_instance_recovers_its_own(db_engine: AsyncEngine) -> None:
    ids = await _seed(db_engine)
    assert await close_orphans(db_engine, "gw-other", NOW) == 1
    rows = await _rows(db_engine)
    assert rows[ids["other_instance_open"]]["disposition"] == "gateway_restart"
    assert rows[ids["open_answered"]]["ended_at"] is None


async def test_empty_store_has_nothing_to_recover(db_engine: AsyncEngine) -> None:
    assert await close_orphans(db_engine, INSTANCE, datetime.now(UTC)) == 0


@pytest.mark.parametrize(
    ("instance", "now"),
    [("", NOW), (INSTANCE, datetime(2026, 3, 1, 12, 10)), (INSTANCE, "2026-03-01T12:10:00Z")],
)
async def test_bad_arguments_are_refused_with_reason(
    db_engine: AsyncEngine, instance: str, now: object
) -> None:
    with pytest.raises(ValueError, match=r"gateway_instance|timezone-aware"):
        await close_orphans(db_engine, instance, now)  # type: ignore[arg-type]


async def test_open_calls_with_a_consent_rule_end_pending(db_engine: AsyncEngine) -> None:
    ruled, never, decided, unruled = new_id(), new_id(), new_id(), new_id()
    writer = RecordWriter(db_engine)
    writer.submit(start(ruled, consent_mode="opt_in", consent_parties="all"))
    writer.submit(start(never, consent_mode="none", consent_parties="one"))
    writer.submit(start(decided, consent_mode="notice", consent_parties="one"))
    writer.submit(CallUpdate(decided, consent_outcome="declined"))
    writer.submit(start(unruled))
    await writer.stop()

    assert await close_orphans(db_engine, INSTANCE, NOW) == 4

    rows = await _rows(db_engine)
    assert rows[ruled]["consent_outcome"] == "pending"
    assert rows[never]["consent_outcome"] == "none"
    assert rows[decided]["consent_outcome"] == "declined"
    assert rows[unruled]["consent_outcome"] is None
    assert {row["disposition"] for row in rows.values()} == {"gateway_restart"}


async def test_recovery_leaves_the_outcome_of_closed_calls(db_engine: AsyncEngine) -> None:
    closed = new_id()
    writer = RecordWriter(db_engine)
    writer.submit(start(closed, consent_mode="opt_in", consent_parties="all"))
    writer.submit(end(closed, consent_outcome="timed_out"))
    await writer.stop()
    assert await close_orphans(db_engine, INSTANCE, NOW) == 0
    assert (await _rows(db_engine))[closed]["consent_outcome"] == "timed_out"
