"""Coalescing a batch: one plan per call, later operations win."""

from __future__ import annotations

from datetime import timedelta

from gateway.store.plan import plan_batch
from gateway.store.writer import CallUpdate
from tests.unit.store.records import T0, answer, end, new_id, start


def test_each_call_gets_one_plan_in_first_seen_order() -> None:
    a, b = new_id(), new_id()
    plans = plan_batch([start(a), start(b), answer(a), end(b), end(a)])
    assert [plan.record_id for plan in plans] == [a, b]
    assert [len(plan.ops) for plan in plans] == [3, 2]
    assert all(plan.starts for plan in plans)


def test_later_operations_override_earlier_values() -> None:
    record_id = new_id()
    plans = plan_batch(
        [
            start(record_id, b_call_id="first@gw"),
            CallUpdate(record_id, b_call_id="second@gw", destination_addr="127.0.0.1:5080"),
            end(record_id, answered_after_s=9),
        ]
    )
    (plan,) = plans
    assert plan.values["b_call_id"] == "second@gw"
    assert plan.values["destination_addr"] == "127.0.0.1:5080"
    assert plan.values["answered_at"] == T0 + timedelta(seconds=9)
    assert plan.values["started_at"] == T0


def test_changes_without_a_start_are_marked_as_such() -> None:
    record_id = new_id()
    (plan,) = plan_batch([answer(record_id), end(record_id)])
    assert not plan.starts
    assert "started_at" not in plan.values
    assert set(plan.values) >= {"answered_at", "ended_at", "disposition"}


def test_empty_batch_has_no_plans() -> None:
    assert plan_batch([]) == []
