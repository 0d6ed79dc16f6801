"""How long Python's cyclic garbage collector stops the process, for ``/metrics``.

A collection runs on the thread that triggered it and holds the interpreter
until it ends: the event loop, and with it SIP and the RTP relay, stands
still for that time. A full collection walks every tracked object of the
process, so its pause grows with what the process holds (live calls, and
the transactions that outlive them). The gateway keeps a histogram of the
pauses per generation, read by ``/metrics`` as
``callgate_gc_pause_seconds`` (Prometheus histogram).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

__all__ = ["BUCKETS_S", "CollectorPauses", "watch_collector"]

BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds of the histogram's buckets (seconds); the last bucket is +Inf."""
GENERATIONS = 3


class CollectorPauses:
    """Per generation: pauses by bucket (cumulative on read), their count and their sum."""

    def __init__(self) -> None:
        self.buckets = [[0] * (len(BUCKETS_S) + 1) for _ in range(GENERATIONS)]
        self.count = [0] * GENERATIONS
        self.seconds = [0.0] * GENERATIONS
        self._started: float | None = None
        self.watching = False

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: time from "start" to "stop" of each collection."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is None:
            return
        elapsed = time.perf_counter() - started
        generation = min(int(info.get("generation", 0)), GENERATIONS - 1)
        self.count[generation] += 1
        self.seconds[generation] += elapsed
        index = 0
        while index < len(BUCKETS_S) and elapsed > BUCKETS_S[index]:
            index += 1
        self.buckets[generation][index] += 1

    def histogram(self) -> dict[tuple[tuple[str, str], ...], float]:
        """Prometheus histogram samples, keyed by their labels (``le`` cumulative)."""
        samples: dict[tuple[tuple[str, str], ...], float] = {}
        for generation in range(GENERATIONS):
            label = ("generation", str(generation))
            running = 0
            for bound, hits in zip((*BUCKETS_S, None), self.buckets[generation], strict=True):
                running += hits
                le = "+Inf" if bound is None else f"{bound:g}"
                samples[(label, ("le", le))] = float(running)
        return samples


PAUSES = CollectorPauses()
_lock = threading.Lock()


def watch_collector() -> CollectorPauses:
    """Start timing the process's collections (once; later calls return the same record)."""
    with _lock:
        if not PAUSES.watching:
            gc.callbacks.append(PAUSES.callback)
            PAUSES.watching = True
    return PAUSES
