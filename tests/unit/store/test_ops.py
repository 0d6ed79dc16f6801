"""Writer operations refuse malformed values when they are built, with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.store.writer import CallEnd, CallUpdate
from tests.unit.store.records import T0, end, start


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"record_id": ""}, "record_id"),
        ({"tenant": None}, "tenant"),
        ({"call_id": 17}, "call_id"),
        ({"direction": "sideways"}, "direction must be one of inbound, outbound"),
        ({"started_at": datetime(2026, 3, 1, 12, 0)}, "naive"),
        ({"started_at": "2026-03-01T12:00:00Z"}, "started_at must be a datetime"),
        ({"source_number": 14155550100}, "source_number"),
        ({"source_uri": None}, "source_uri"),
        ({"gateway_instance": ""}, "gateway_instance"),
    ],
)
def test_call_start_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        start(**fields)


def test_call_start_accepts_unparsed_numbers() -> None:
    op = start(source_number=None, destination_number=None)
    assert op.columns()["source_number"] is None


def test_call_update_sets_only_what_it_carries() -> None:
    when = T0 + timedelta(seconds=3)
    assert CallUpdate("r", answered_at=when).columns() == {"answered_at": when}
    assert CallUpdate("r", b_call_id="b@gw").columns() == {"b_call_id": "b@gw"}
    assert CallUpdate("r").columns() == {}


def test_call_update_refuses_naive_answer_time() -> None:
    with pytest.raises(ValueError, match=r"answered_at .* is naive"):
        CallUpdate("r", answered_at=datetime(2026, 3, 1, 12, 0, 5))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"disposition": "hung_up"}, "disposition must be one of answered, busy"),
        ({"disposition": None}, "disposition"),
        ({"hangup_by": "operator"}, "hangup_by must be one of caller, callee, gateway"),
        ({"final_status": 99}, "final_status"),
        ({"final_status": 700}, "final_status"),
        ({"final_status": "200"}, "final_status"),
        ({"final_status": True}, "final_status"),
        ({"ended_at": datetime(2026, 3, 1, 12, 1)}, "ended_at .* is naive"),
        ({"media_stats": [1, 2]}, "media_stats must be a mapping"),
        ({"end_reason": 5}, "end_reason"),
    ],
)
def test_call_end_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        end("r", **fields)


def test_call_end_keeps_an_earlier_answer_when_it_repeats_none() -> None:
    without = CallEnd("r", ended_at=T0, disposition="answered", answered_at=None)
    assert "answered_at" not in without.columns()
    with_answer = CallEnd("r", ended_at=T0, disposition="answered", answered_at=T0)
    assert with_answer.columns()["answered_at"] == T0


def test_call_end_gateway_restart_is_a_disposition() -> None:
    op = CallEnd("r", ended_at=datetime.now(UTC), disposition="gateway_restart")
    assert op.columns()["disposition"] == "gateway_restart"
