"""The record writer: coalescing, batching, durations, flush and stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import CALLS
from gateway.store.queries import get_call
from gateway.store.writer import CallEnd, CallUpdate, RecordWriter
from tests.unit.store.records import T0, answer, end, new_id, start
from tests.unit.store.statements import StatementLog


@pytest.fixture
def statements(db_engine: AsyncEngine) -> AsyncIterator[StatementLog]:
    log = StatementLog(db_engine)
    yield log
    log.close()


async def _row_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(CALLS)) or 0)


async def _row(engine: AsyncEngine, record_id: str) -> dict:
    async with engine.connect() as connection:
        row = (await connection.execute(select(CALLS).where(CALLS.c.id == record_id))).mappings()
        return dict(row.one())


async def test_start_update_end_in_one_batch_become_one_insert(
    db_engine: AsyncEngine, statements: StatementLog
) -> None:
    writer = RecordWriter(db_engine)
    ids = [new_id() for _ in range(40)]
    for record_id in ids:
        writer.submit(start(record_id))
        writer.submit(answer(record_id, after_s=5, b_call_id=f"b-{record_id}"))
        writer.submit(end(record_id, after_s=65))
    await writer.start()
    await writer.flush()
    await writer.stop()

    assert statements.verbs() == ["INSERT"]
    assert statements.statements[0].rows == 40
    assert statements.commits == 1
    assert (writer.batches, writer.written, writer.rejected, writer.pending) == (1, 120, 0, 0)
    row = await _row(db_engine, ids[7])
    assert row["b_call_id"] == f"b-{ids[7]}"
    assert row["answered_at"] == T0 + timedelta(seconds=5)
    assert row["ended_at"] == T0 + timedelta(seconds=65)
    assert row["disposition"] == "answered"
    assert row["final_status"] == 200
    assert row["duration_s"] == pytest.approx(65.0)
    assert row["billable_s"] == pytest.approx(60.0)
    assert row["media_stats"]["a"]["packets_in"] == 3000


async def test_operations_in_later_batches_update_the_stored_row(
    db_engine: AsyncEngine, statements: StatementLog
) -> None:
    writer = RecordWriter(db_engine, max_delay=0)
    await writer.start()
    record_id = new_id()
    writer.submit(start(record_id))
    await writer.flush()
    writer.submit(answer(record_id, after_s=12.5))
    await writer.flush()
    writer.submit(end(record_id, after_s=42.5, disposition="answered", hangup_by="callee"))
    await writer.stop()

    assert statements.verbs() == ["INSERT", "SELECT", "UPDATE", "SELECT", "UPDATE"]
    row = await _row(db_engine, record_id)
    assert row["answered_at"] == T0 + timedelta(seconds=12.5)
    assert row["duration_s"] == pytest.approx(42.5)
    assert row["billable_s"] == pytest.approx(30.0)
    assert row["hangup_by"] == "callee"
    assert writer.batches == 3


async def test_unanswered_call_bills_nothing(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    record_id = new_id()
    writer.submit(start(record_id))
    writer.submit(end(record_id, after_s=20, disposition="busy", end_reason="callee answered 486"))
    await writer.stop()
    row = await _row(db_engine, record_id)
    assert row["answered_at"] is None
    assert row["duration_s"] == pytest.approx(20.0)
    assert row["billable_s"] == 0.0
    assert (row["disposition"], row["final_status"]) == ("busy", 486)


async def test_answer_time_given_only_with_the_end_sets_billable(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine, max_delay=0)
    await writer.start()
    record_id = new_id()
    writer.submit(start(record_id))
    await writer.flush()
    writer.submit(end(record_id, after_s=100, answered_after_s=30))
    await writer.stop()
    row = await _row(db_engine, record_id)
    assert row["answered_at"] == T0 + timedelta(seconds=30)
    assert row["billable_s"] == pytest.approx(70.0)


async def test_update_sets_only_the_fields_it_carries(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine, max_delay=0)
    await writer.start()
    record_id = new_id()
    writer.submit(start(record_id, destination_addr="127.0.0.1:5080", b_call_id="b-1"))
    await writer.flush()
    writer.submit(answer(record_id, after_s=3))
    writer.submit(CallUpdate(record_id=record_id))
    await writer.stop()
    row = await _row(db_engine, record_id)
    assert (row["destination_addr"], row["b_call_id"]) == ("127.0.0.1:5080", "b-1")
    assert row["answered_at"] == T0 + timedelta(seconds=3)


async def test_queue_is_written_in_batches_of_batch_size(
    db_engine: AsyncEngine, statements: StatementLog
) -> None:
    writer = RecordWriter(db_engine, batch_size=10)
    for _ in range(35):
        writer.submit(start())
    assert writer.pending == 35
    await writer.start()
    await writer.flush()

    inserts = [s.rows for s in statements.statements if s.verb == "INSERT"]
    assert inserts == [10, 10, 10, 5]
    assert statements.commits == writer.batches == 4
    assert writer.pending == 0 and writer.written == 35
    assert await _row_count(db_engine) == 35
    await writer.stop()


async def test_changes_to_stored_rows_go_out_one_statement_per_column_set(
    db_engine: AsyncEngine, statements: StatementLog
) -> None:
    writer = RecordWriter(db_engine)
    ids = [new_id() for _ in range(20)]
    for record_id in ids:
        writer.submit(start(record_id))
    await writer.start()
    await writer.flush()
    statements.clear()

    for record_id in ids[:10]:
        writer.submit(answer(record_id))
    for record_id in ids[10:]:
        writer.submit(end(record_id, disposition="no_answer", final_status=480))
    await writer.flush()

    assert statements.verbs() == ["SELECT", "UPDATE", "UPDATE"]
    assert sorted(s.rows for s in statements.statements if s.verb == "UPDATE") == [10, 10]
    assert all(s.executemany for s in statements.statements if s.verb == "UPDATE")
    assert statements.commits == 1
    await writer.stop()
    assert (await _row(db_engine, ids[15]))["disposition"] == "no_answer"


async def test_stop_writes_everything_still_queued(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine, batch_size=50, max_delay=10.0)
    await writer.start()
    ids = [new_id() for _ in range(120)]
    for record_id in ids:
        writer.submit(start(record_id))
        writer.submit(end(record_id))
    await writer.stop()
    assert writer.pending == 0 and writer.written == 240
    assert await _row_count(db_engine) == 120
    assert not writer.running


async def test_stop_without_start_still_writes_the_queue(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    record_id = new_id()
    writer.submit(start(record_id))
    await writer.stop()
    assert (await get_call(db_engine, call_id=f"{record_id}@pbx.example")) is not None


async def test_flush_waits_for_a_full_delay_no_longer_than_needed(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine, batch_size=1000, max_delay=3600.0)
    await writer.start()
    record_id = new_id()
    writer.submit(start(record_id))
    await writer.flush()
    assert writer.written == 1
    assert await _row_count(db_engine) == 1
    await writer.stop()


async def test_flush_with_nothing_queued_returns_at_once(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    await writer.flush()
    await writer.start()
    await writer.flush()
    await writer.stop()
    assert writer.batches == 0


async def test_flush_before_start_with_queued_work_says_why_it_cannot(
    db_engine: AsyncEngine,
) -> None:
    writer = RecordWriter(db_engine)
    writer.submit(start())
    with pytest.raises(RuntimeError, match="not running"):
        await writer.flush()
    await writer.stop()


async def test_submit_after_stop_is_refused(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    await writer.start()
    await writer.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        writer.submit(start())
    with pytest.raises(RuntimeError, match="stopped"):
        await writer.start()


async def test_submit_refuses_what_is_not_an_operation(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    with pytest.raises(TypeError, match="CallEnd, ConsentEventRecord or RecordingRecord"):
        writer.submit({"record_id": "x"})  # type: ignore[arg-type]
    assert writer.pending == 0


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"max_delay": -1}, {"retry_initial": 0}, {"retry_max": 0.01}]
)
def test_bad_writer_settings_are_refused(db_engine: AsyncEngine, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RecordWriter(db_engine, **kwargs)


async def test_change_to_a_record_that_does_not_exist_is_rejected_alone(
    db_engine: AsyncEngine,
) -> None:
    writer = RecordWriter(db_engine)
    known = new_id()
    writer.submit(start(known))
    writer.submit(answer("no-such-record"))
    writer.submit(end(known))
    await writer.stop()
    assert (writer.written, writer.rejected, writer.pending) == (2, 1, 0)
    assert (await _row(db_engine, known))["ended_at"] is not None
    assert await _row_count(db_engine) == 1


async def test_operation_the_database_refuses_is_set_aside_and_the_rest_written(
    db_engine: AsyncEngine,
) -> None:
    writer = RecordWriter(db_engine)
    good, poisoned = new_id(), new_id()
    writer.submit(start(good))
    writer.submit(start(poisoned))
    writer.submit(answer(poisoned, after_s=2))
    writer.submit(end(good))
    # a set is not JSON: the database layer refuses this end, every time
    writer.submit(end(poisoned, media_stats={"a": {"ssrcs": {1, 2}}}))
    await writer.stop()

    assert (writer.written, writer.rejected) == (4, 1)
    assert (await _row(db_engine, good))["disposition"] == "answered"
    poisoned_row = await _row(db_engine, poisoned)
    assert poisoned_row["answered_at"] == T0 + timedelta(seconds=2)
    assert poisoned_row["ended_at"] is None


async def test_open_calls_have_no_end_fields(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    record_id = new_id()
    writer.submit(start(record_id))
    await writer.stop()
    row = await _row(db_engine, record_id)
    ended = ("ended_at", "duration_s", "billable_s", "disposition", "final_status", "hangup_by")
    assert all(row[name] is None for name in ended)
    assert row["media_stats"] is None


async def test_end_without_media_keeps_media_stats_null(db_engine: AsyncEngine) -> None:
    writer = RecordWriter(db_engine)
    record_id = new_id()
    writer.submit(start(record_id))
    writer.submit(
        CallEnd(
            record_id=record_id,
            ended_at=T0 + timedelta(seconds=1),
            disposition="failed",
            final_status=503,
            hangup_by="gateway",
            end_reason="no media ports",
            media_stats=None,
            answered_at=None,
        )
    )
    await writer.stop()
    async with db_engine.connect() as connection:
        null_rows = await connection.scalar(
            select(func.count()).select_from(CALLS).where(CALLS.c.media_stats.is_(None))
        )
    assert null_rows == 1
