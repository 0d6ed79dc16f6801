"""Coalescing a batch: one plan per call, later operations win."""

from __future__ import annotations

from datetime import timedelta

from gateway.store.plan import plan_batch
from gateway.store.writer import CallUpdate
from tests.unit.store.records import T0, answer, consent_event, end, new_id, recording, start


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


def test_events_and_recordings_ride_with_their_call_in_submission_order() -> None:
    a, b = new_id(), new_id()
    ops = [
        start(a),
        consent_event(a, 1),
        start(b),
        consent_event(b, 1),
        consent_event(a, 2, state="granted", previous="notified", method="implied"),
        recording(a),
        end(a, consent_outcome="granted"),
    ]
    plan_a, plan_b = plan_batch(ops)
    assert [event.seq for event in plan_a.events] == [1, 2]
    assert [event.seq for event in plan_b.events] == [1]
    assert [r.record_id for r in plan_a.recordings] == [a]
    assert plan_a.ops == [ops[0], ops[1], ops[4], ops[5], ops[6]]
    # events and recordings do not touch the call's own columns
    assert "seq" not in plan_a.values and "path" not in plan_a.values
    assert plan_a.values["consent_outcome"] == "granted"


def test_events_alone_do_not_start_a_row() -> None:
    record_id = new_id()
    (plan,) = plan_batch([consent_event(record_id, 1), recording(record_id)])
    assert not plan.starts
    assert plan.values == {}
