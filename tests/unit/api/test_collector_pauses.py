"""The collector's pauses: timed per generation, bucketed, served on /metrics."""

from __future__ import annotations

import gc
import re

import pytest

from gateway import collector_pauses
from gateway.collector_pauses import BUCKETS_S, CollectorPauses, watch_collector
from tests.unit.api.conftest import Api


def test_a_pause_lands_in_its_bucket_and_the_histogram_is_cumulative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 10.03, 20.0, 20.0004])
    monkeypatch.setattr(collector_pauses.time, "perf_counter", lambda: next(clock))
    pauses = CollectorPauses()
    pauses.callback("start", {"generation": 2})
    pauses.callback("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    pauses.callback("start", {"generation": 0})
    pauses.callback("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    assert pauses.count == [1, 0, 1]
    assert pauses.seconds[2] == pytest.approx(0.03)
    samples = pauses.histogram()
    full = {le: n for (generation, (_, le)), n in samples.items() if generation[1] == "2"}
    assert full["0.025"] == 0 and full["0.05"] == 1 and full["+Inf"] == 1
    young = {le: n for (generation, (_, le)), n in samples.items() if generation[1] == "0"}
    assert all(n == 1 for n in young.values())  # 0.4 ms: in the first bucket and every later one
    assert len(full) == len(BUCKETS_S) + 1


def test_a_stop_without_its_start_is_not_counted() -> None:
    pauses = CollectorPauses()
    pauses.callback("stop", {"generation": 1})
    assert pauses.count == [0, 0, 0]


async def test_metrics_serve_the_pauses_of_the_collections_made(api: Api) -> None:
    watch_collector()
    before = collector_pauses.PAUSES.count[2]
    gc.collect()
    async with await api.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert "# TYPE callgate_gc_pause_seconds histogram" in text
    found = re.search(r'^callgate_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.M)
    assert found is not None and float(found.group(1)) >= before + 1
    assert re.search(r'^callgate_gc_pause_seconds_bucket\{generation="2",le="\+Inf"\} ', text, re.M)
