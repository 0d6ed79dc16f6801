"""Writing planned batches: a retry after a lost commit acknowledgement changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.batch import write_plans
from gateway.store.models import CALLS
from gateway.store.plan import plan_batch
from tests.unit.store.records import T0, answer, end, new_id, start


async def test_rewriting_a_committed_batch_with_verification_is_harmless(
    db_engine: AsyncEngine,
) -> None:
    ids = [new_id() for _ in range(5)]
    ops = [op for i in ids for op in (start(i), answer(i), end(i, after_s=65))]
    async with db_engine.begin() as connection:
        assert await write_plans(connection, plan_batch(ops), verify_new=False) == []
    # the commit went through but the writer never heard back: it writes the batch again
    async with db_engine.begin() as connection:
        assert await write_plans(connection, plan_batch(ops), verify_new=True) == []

    async with db_engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(CALLS)) == 5
        billable = (await connection.execute(select(CALLS.c.billable_s))).scalars().all()
    assert billable == pytest.approx([60.0] * 5)


async def test_rewriting_without_verification_hits_the_primary_key(
    db_engine: AsyncEngine,
) -> None:
    ops = [start(new_id())]
    async with db_engine.begin() as connection:
        await write_plans(connection, plan_batch(ops), verify_new=False)
    with pytest.raises(IntegrityError):
        async with db_engine.begin() as connection:
            await write_plans(connection, plan_batch(ops), verify_new=False)


async def test_plans_for_rows_that_do_not_exist_are_returned_unwritten(
    db_engine: AsyncEngine,
) -> None:
    known, unknown = new_id(), new_id()
    async with db_engine.begin() as connection:
        orphans = await write_plans(
            connection, plan_batch([start(known), answer(unknown), end(unknown)]), verify_new=False
        )
    assert [plan.record_id for plan in orphans] == [unknown]
    assert len(orphans[0].ops) == 2


async def test_late_answer_of_an_ended_call_recomputes_billable(db_engine: AsyncEngine) -> None:
    record_id = new_id()
    async with db_engine.begin() as connection:
        await write_plans(
            connection, plan_batch([start(record_id), end(record_id, after_s=50)]), verify_new=False
        )
    async with db_engine.begin() as connection:
        await write_plans(connection, plan_batch([answer(record_id, after_s=20)]), verify_new=False)
    async with db_engine.connect() as connection:
        row = (await connection.execute(select(CALLS).where(CALLS.c.id == record_id))).one()
    assert row.answered_at == T0 + timedelta(seconds=20)
    assert (row.duration_s, row.billable_s) == pytest.approx((50.0, 30.0))
