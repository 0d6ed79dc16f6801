"""The collector's pauses: timed per generation, bucketed, served on /metrics."""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterator

import pytest

from gateway import collector_pauses
from gateway.api import routes_health
from gateway.collector_pauses import BUCKETS_S, CollectorPauses, watch_collector
from tests.bench.collector import (
    LONG_PAUSE_S,
    pauses_by_generation,
    pauses_of_record,
    step_pauses,
)
from tests.unit.api.conftest import Api


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[float]], None]]:
    """Stands in for the clock the pauses are timed with, the collector off meanwhile: an
    automatic collection would run the process's own record's callback on this clock."""

    def use(readings: list[float]) -> None:
        clock = iter(readings)
        monkeypatch.setattr(collector_pauses.time, "perf_counter", lambda: next(clock))

    enabled = gc.isenabled()
    gc.disable()
    yield use
    monkeypatch.undo()
    if enabled:
        gc.enable()


def test_a_pause_lands_in_its_bucket_and_the_histogram_is_cumulative(
    fake_clock: Callable[[list[float]], None],
) -> None:
    fake_clock([10.0, 10.03, 20.0, 20.0004])
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


def test_the_benchmarks_read_the_same_pauses_from_the_record_and_from_metrics(
    fake_clock: Callable[[list[float]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_clock([0.0, 0.003, 1.0, 1.04, 2.0, 2.3, 3.0, 3.0002])
    assert pauses_of_record(CollectorPauses()) == []  # not watching: /metrics shows none
    pauses = CollectorPauses()
    pauses.watching = True
    for generation in (0, 1, 2, 0):  # 3 ms, 40 ms, 300 ms, 0.2 ms
        pauses.callback("start", {"generation": generation})
        pauses.callback("stop", {"generation": generation})
    monkeypatch.setattr(routes_health, "PAUSES", pauses)
    from_metrics = pauses_by_generation("\n".join(routes_health._pause_histogram()) + "\n")
    from_record = pauses_of_record(pauses)
    assert [(g.count, g.cumulative) for g in from_metrics] == [
        (g.count, g.cumulative) for g in from_record
    ]
    assert [g.seconds for g in from_metrics] == pytest.approx([g.seconds for g in from_record])
    assert [g.count for g in from_record] == [2, 1, 1]
    assert sum(g.over(LONG_PAUSE_S) for g in from_record) == 2
    assert from_record[2].longest_bound() == 0.5
    both = [a + b for a, b in zip(from_record, from_record, strict=True)]
    assert [g.over(LONG_PAUSE_S) for g in both] == [0, 2, 2]
    assert step_pauses(from_record, both) == from_record
    assert step_pauses([], from_record) is None


def test_metrics_keep_counts_past_a_million_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses = CollectorPauses()
    pauses.watching = True
    pauses.count[0] = 1_234_567
    pauses.buckets[0][0] = 1_234_560  # within 1 ms
    pauses.buckets[0][-1] = 7  # past the last bound
    pauses.seconds[0] = 617.2839
    monkeypatch.setattr(routes_health, "PAUSES", pauses)
    text = "\n".join(routes_health._pause_histogram()) + "\n"
    assert 'callgate_gc_pause_seconds_count{generation="0"} 1234567\n' in text
    young = pauses_by_generation(text)[0]
    assert young.count == 1_234_567 and young.seconds == 617.2839
    assert young.over(LONG_PAUSE_S) == 7


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1234567.0, "1234567"),
        (2**60, "1.152921504606847e+18"),
        (0.025, "0.025"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_a_sample_value_reads_back_exactly(value: float, text: str) -> None:
    assert routes_health.sample_value(value) == text
    assert float(text) == value


def test_a_sample_value_that_is_no_number_is_nan() -> None:
    assert routes_health.sample_value(math.nan) == "NaN"
