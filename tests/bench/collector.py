"""The collector pauses of a measured process, per generation, for a benchmark's notes.

A process serving calls or the API times its collections
(:mod:`gateway.collector_pauses`) and shows them in ``/metrics`` as the
histogram ``callgate_gc_pause_seconds``. A benchmark reads them before and
after a step (:func:`pauses_by_generation` from the ``/metrics`` text, or
:func:`pauses_of_record` from the record itself in a process it runs) and
reports the step's share (:meth:`GenerationPauses.since`): a slow spell with
a long pause in it is the collector's, one without is something else's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.collector_pauses import BUCKETS_S, CollectorPauses

__all__ = [
    "LONG_PAUSE_S",
    "GenerationPauses",
    "describe_pauses",
    "pauses_by_generation",
    "pauses_of_record",
    "step_pauses",
]

LONG_PAUSE_S = 0.025
"""A collector pause longer than this is counted apart (a bound of the gateway's histogram)."""
_PAUSE_SAMPLE = re.compile(
    r'^callgate_gc_pause_seconds_(count|bucket)\{generation="(\d)"(?:,le="([^"]+)")?\} (\S+)$',
    re.MULTILINE,
)
_PAUSE_SUM = re.compile(
    r'^callgate_gc_pause_seconds_sum\{generation="(\d)"\} (\S+)$',
    re.MULTILINE,
)


@dataclass(frozen=True)
class GenerationPauses:
    """One collector generation's pauses so far: how many, their total, and the
    cumulative count per histogram bound (``le``)."""

    count: int
    seconds: float
    cumulative: dict[float, int]

    def since(self, before: GenerationPauses) -> GenerationPauses:
        return GenerationPauses(
            self.count - before.count,
            self.seconds - before.seconds,
            {le: n - before.cumulative.get(le, 0) for le, n in self.cumulative.items()},
        )

    def __add__(self, other: GenerationPauses) -> GenerationPauses:
        """Two processes' pauses of one generation together (the workers of one server)."""
        return GenerationPauses(
            self.count + other.count,
            self.seconds + other.seconds,
            {
                le: self.cumulative.get(le, 0) + other.cumulative.get(le, 0)
                for le in self.cumulative.keys() | other.cumulative.keys()
            },
        )

    def over(self, bound_s: float) -> int:
        """Pauses longer than ``bound_s`` (a bound of the histogram), counted from the
        +Inf bucket: a reading between a collection's count and its bucket (one taken in
        another thread) shows the count one ahead."""
        total = self.cumulative.get(math.inf, self.count)
        return total - self.cumulative.get(bound_s, 0)

    def longest_bound(self) -> float:
        """The smallest histogram bound that every pause is within (inf: past the last)."""
        for le in sorted(self.cumulative):
            if self.cumulative[le] >= self.count:
                return le
        return math.inf


def pauses_by_generation(metrics: str) -> list[GenerationPauses]:
    """The collector's pauses per generation (0, 1, 2) from the ``/metrics`` text; empty
    when it has none."""
    counts: dict[int, int] = {}
    cumulative: dict[int, dict[float, int]] = {}
    for kind, generation, le, value in _PAUSE_SAMPLE.findall(metrics):
        if kind == "count":
            counts[int(generation)] = int(float(value))
        elif le:
            cumulative.setdefault(int(generation), {})[float(le)] = int(float(value))
    sums = {int(g): float(v) for g, v in _PAUSE_SUM.findall(metrics)}
    return [
        GenerationPauses(counts[g], sums.get(g, 0.0), cumulative.get(g, {})) for g in sorted(counts)
    ]


def pauses_of_record(record: CollectorPauses) -> list[GenerationPauses]:
    """The pauses per generation of a process's own record (what ``/metrics`` would show:
    nothing while the record is not watching the collector)."""
    if not record.watching:
        return []
    found = []
    for buckets, count, seconds in zip(record.buckets, record.count, record.seconds, strict=True):
        running, cumulative = 0, {}
        for bound, hits in zip((*BUCKETS_S, math.inf), buckets, strict=True):
            running += hits
            cumulative[bound] = running
        found.append(GenerationPauses(count, seconds, cumulative))
    return found


def step_pauses(
    before: Sequence[GenerationPauses], after: Sequence[GenerationPauses]
) -> list[GenerationPauses] | None:
    """The pauses between two readings; None when there are none to compare (a process
    that does not time its collections)."""
    if not before or len(before) != len(after):
        return None
    return [now.since(then) for then, now in zip(before, after, strict=True)]


def describe_pauses(pauses: Sequence[GenerationPauses]) -> str:
    """``collector gen0 1234 x 0.8 ms (all <= 5 ms), ...`` for a step's notes."""
    parts = []
    for generation, found in enumerate(pauses):
        if not found.count:
            parts.append(f"gen{generation} 0")
            continue
        mean_ms = 1000.0 * found.seconds / found.count
        bound = found.longest_bound()
        within = "over the last bound" if math.isinf(bound) else f"all <= {bound * 1000:g} ms"
        parts.append(f"gen{generation} {found.count} x {mean_ms:.1f} ms ({within})")
    return "collector " + ", ".join(parts)
