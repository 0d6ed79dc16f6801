"""GET /v1/stats: buckets by hour, day and ISO week; answer rate, durations, consent."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.api.conftest import Api
from tests.unit.store.records import T0, end, new_id, start

DAY = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"


async def _seed(api: Api) -> None:
    ops: list[object] = []
    # 12:00-12:59: 3 calls, 2 answered (60 s and 120 s billable), 1 busy; 13:xx: 1 answered
    for offset, disposition, talk in (
        (0, "answered", 60),
        (10, "answered", 120),
        (20, "busy", 0),
        (70, "answered", 30),
    ):
        call = new_id()
        at = T0 + timedelta(minutes=offset)
        ops.append(start(call, at=at))
        begin = offset * 60
        ops.append(
            end(
                call,
                after_s=begin + 5 + talk,
                disposition=disposition,
                answered_after_s=begin + 5 if disposition == "answered" else None,
                consent_outcome="granted" if disposition == "answered" else "pending",
            )
        )
    ops.append(start(new_id(), at=T0 + timedelta(days=3)))  # a Wednesday
    await api.write(*ops)


async def test_hourly_buckets(api: Api) -> None:
    await _seed(api)
    status, body = await api.json("GET", f"/v1/stats?{DAY}&bucket=hour")
    assert status == 200, body
    noon, one = body["buckets"]
    assert noon["bucket"] == "2026-03-01T12:00:00Z" and one["bucket"] == "2026-03-01T13:00:00Z"
    assert (noon["calls"], noon["answered"], noon["answer_rate"]) == (3, 2, 0.6667)
    assert noon["billable_s"] == 180 and noon["mean_billable_s"] == 90
    assert noon["consent"] == {"granted": 2, "pending": 1}
    assert body["totals"]["calls"] == 4 and body["totals"]["answered"] == 3


async def test_days_and_weeks(api: Api) -> None:
    await _seed(api)
    query = "from=2026-02-23T00:00:00Z&to=2026-03-09T00:00:00Z"
    _, days = await api.json("GET", f"/v1/stats?{query}&bucket=day")
    assert [(b["bucket"], b["calls"]) for b in days["buckets"]] == [
        ("2026-03-01T00:00:00Z", 4),
        ("2026-03-04T00:00:00Z", 1),
    ]
    _, weeks = await api.json("GET", f"/v1/stats?{query}&bucket=week")
    # 2026-03-01 is a Sunday: ISO week of Monday 2026-02-23; the 4th is in the next
    assert [(b["bucket"], b["calls"]) for b in weeks["buckets"]] == [
        ("2026-02-23T00:00:00Z", 4),
        ("2026-03-02T00:00:00Z", 1),
    ]


async def test_bad_ranges(api: Api) -> None:
    status, body = await api.json("GET", "/v1/stats?from=2020-01-01T00:00:00Z&bucket=hour")
    assert status == 400 and "wider bucket" in body["detail"]
    status, _ = await api.json("GET", "/v1/stats?bucket=month")
    assert status == 400
