"""The registry: runs its detectors over a scan and settles which entity each span is.

Every run detector scores every number of the batch (one array each); a
number goes to the highest score, the earlier detector on a tie, and is
redacted when that score is above zero. A number joined across a segment
boundary that no typed detector claims, but whose parts each are some
entity (one of them typed), is taken as its parts. A number that a negative keyword
owns ("order number", "tracking number", "room": nearer to it than any
payment or sensitive keyword) is nobody's
(:func:`~dsp.redact.detectors.base.negated`). Span detectors' spans (e-mail,
IBAN) win over the numbers they overlap; of two span detectors' spans that
overlap, the higher score stays. The result is a :class:`SpanTable`:
arrays over the batch's spans in token order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors import DEFAULT_DETECTORS, Detector, RunDetector, SpanDetector
from dsp.redact.detectors.base import negated
from dsp.redact.scan import Scan

__all__ = ["Registry", "SpanTable"]

_SPLIT_MARGIN = 0.02  # how much better, on average, typed parts must score than the whole


@dataclass(frozen=True)
class SpanTable:
    """Spans of a batch in token order: ``first..last`` (inclusive token indices).

    ``detector`` indexes :attr:`detectors`; ``run`` is the number a span came
    from: a run of the scan, ``-2 - k`` for run ``k`` of the scan's parts, -1
    for a span detector's span.
    """

    doc: npt.NDArray[np.int32]
    first: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    detector: npt.NDArray[np.int16]
    score: npt.NDArray[np.float64]
    run: npt.NDArray[np.int64]
    detectors: tuple[Detector, ...]

    def __len__(self) -> int:
        return len(self.first)

    def entity_names(self) -> list[str]:
        names = [detector.entity for detector in self.detectors]
        return [names[i] for i in self.detector.tolist()]


class Registry:
    """An ordered set of detectors (each entity type at most once per detector name)."""

    def __init__(self, detectors: Iterable[Detector] = DEFAULT_DETECTORS) -> None:
        self.detectors: tuple[Detector, ...] = tuple(detectors)
        names = [detector.name for detector in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names repeat: {names}")

    @property
    def entities(self) -> tuple[str, ...]:
        """The entity types the registry finds, in detector order (no repeats)."""
        return tuple(dict.fromkeys(detector.entity for detector in self.detectors))

    def select(self, entities: Iterable[str] | None) -> Registry:
        """A registry of only the detectors of ``entities`` (None: all of them)."""
        if entities is None:
            return self
        wanted = set(entities)
        unknown = wanted - set(self.entities)
        if unknown:
            raise ValueError(f"unknown entities {sorted(unknown)}; known: {list(self.entities)}")
        return Registry(d for d in self.detectors if d.entity in wanted)

    def detect(self, scan: Scan) -> SpanTable:
        """Every span of the scanned batch (see the module's notes)."""
        codes = np.array(
            [i for i, d in enumerate(self.detectors) if isinstance(d, RunDetector)], dtype=np.int16
        )
        best, best_score = self._best(scan, codes)
        run_first, run_last, run_index = scan.runs.first, scan.runs.last, np.arange(len(best))
        if scan.parts is not None and len(codes):
            part_best, part_score = self._best(scan.parts, codes)
            split = self._split(scan, best, best_score, part_best, part_score)
            if split.any():
                whole = ~split
                from_parts = split[scan.parent]
                run_first = np.concatenate([run_first[whole], scan.parts.runs.first[from_parts]])
                run_last = np.concatenate([run_last[whole], scan.parts.runs.last[from_parts]])
                best = np.concatenate([best[whole], part_best[from_parts]])
                best_score = np.concatenate([best_score[whole], part_score[from_parts]])
                run_index = np.concatenate(
                    [run_index[whole], -2 - np.flatnonzero(from_parts)]  # parts: below -1
                )
        chosen = best_score > 0
        run_first, run_last, run_index = run_first[chosen], run_last[chosen], run_index[chosen]
        run_score = best_score[chosen]
        codes = codes[best[chosen]] if len(codes) else np.zeros(0, np.int16)

        span_first, span_last, span_score, span_codes = self._span_candidates(scan)
        if len(span_first):
            order = np.argsort(span_first, kind="stable")
            span_first, span_last = span_first[order], span_last[order]
            span_score, span_codes = span_score[order], span_codes[order]
            index = np.searchsorted(span_first, run_last, side="right") - 1
            covered = (index >= 0) & (span_last[np.maximum(index, 0)] >= run_first)
            keep = ~covered
            run_first, run_last, run_score = run_first[keep], run_last[keep], run_score[keep]
            codes, run_index = codes[keep], run_index[keep]
        first = np.concatenate([run_first, span_first])
        last = np.concatenate([run_last, span_last])
        order = np.argsort(first, kind="stable")
        return SpanTable(  # run: a run of the scan, -2 - k for part k, -1 for a span detector
            doc=scan.batch.doc[first[order]] if len(first) else np.zeros(0, np.int32),
            first=first[order],
            last=last[order],
            detector=np.concatenate([codes, span_codes]).astype(np.int16)[order],
            score=np.concatenate([run_score, span_score])[order],
            run=np.concatenate([run_index, np.full(len(span_first), -1, np.int64)])[order],
            detectors=self.detectors,
        )

    def _best(self, scan: Scan, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each run's best run detector (an index into ``codes``) and its score."""
        count = len(scan.runs)
        if not count or not len(codes):
            return np.zeros(count, np.int64), np.zeros(count)
        scores = np.stack([self.detectors[code].score(scan) for code in codes.tolist()])
        best = np.argmax(scores, axis=0)
        return best, scores[best, np.arange(count)] * ~negated(scan)

    def _split(
        self,
        scan: Scan,
        best: np.ndarray,
        best_score: np.ndarray,
        part_best: np.ndarray,
        part_score: np.ndarray,
    ) -> npt.NDArray[np.bool_]:
        """Which numbers joined across a segment boundary are better read as their parts:
        every part is some entity and at least one part a typed one, while the whole
        is no typed entity (at most the catch-all's), or every part is typed and the
        parts score higher on average than the whole ("routing ..." | "... is my
        account number"). Redaction never shrinks."""
        detectors = [self.detectors[i] for i in range(len(self.detectors))]
        run_codes = [i for i, d in enumerate(detectors) if isinstance(d, RunDetector)]
        catch_all = np.array([detectors[i].catch_all for i in run_codes], dtype=np.bool_)
        whole_typed = (best_score > 0) & ~catch_all[best]
        parent = scan.parent
        parts = np.bincount(parent, minlength=len(best))
        covered = np.bincount(parent, weights=part_score > 0, minlength=len(best))
        typed = np.bincount(
            parent, weights=(part_score > 0) & ~catch_all[part_best], minlength=len(best)
        )
        mean = np.bincount(parent, weights=part_score, minlength=len(best)) / np.maximum(parts, 1)
        better = (typed == parts) & (mean > best_score + _SPLIT_MARGIN)
        return (parts > 0) & (covered == parts) & (typed > 0) & (~whole_typed | better)

    def _span_candidates(self, scan: Scan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        found: list[tuple[int, int, float, int]] = []
        for index, detector in enumerate(self.detectors):
            if isinstance(detector, SpanDetector):
                candidates = detector.find(scan)
                found += zip(
                    candidates.first.tolist(),
                    candidates.last.tolist(),
                    candidates.score.tolist(),
                    [index] * len(candidates),
                    strict=True,
                )
        found.sort()
        kept: list[tuple[int, int, float, int]] = []
        for span in found:  # in token order: of two that overlap, the higher score stays
            if kept and span[0] <= kept[-1][1]:
                if span[2] > kept[-1][2]:
                    kept[-1] = span
                continue
            kept.append(span)
        if not kept:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int16)
        first, last, score, code = zip(*kept, strict=True)
        return (
            np.array(first, np.int64),
            np.array(last, np.int64),
            np.array(score, np.float64),
            np.array(code, np.int16),
        )
