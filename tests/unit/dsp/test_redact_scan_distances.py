"""The scan's keyword distances, against a plain reading of the same tokens one by one."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from dsp.redact import scan, tokenize
from dsp.redact.detectors import base
from dsp.redact.scan import (
    AFTER_PENALTY,
    AFTER_WEIGHT,
    BEFORE_PENALTY,
    FAR,
    HORIZON,
    Scan,
)
from dsp.redact.vocab import Ctx
from tests.support.spoken_corpus import generate

CLASSES = (Ctx.PAY, Ctx.CVV, Ctx.SSN, Ctx.NEGATIVE, Ctx.PHONE, base.PAYMENT | base.SENSITIVE)


@pytest.fixture(scope="module")
def scanned() -> Scan:
    # call-length transcripts: keywords near and far, in other segments and sentences
    return scan(tokenize([t.words for t in generate(120, seed=5, talk=20)]))


def reference(scanned: Scan, ctx: Ctx, run: int) -> tuple[int, int, int]:
    """Distance before, after, and the effective distance of ``run`` to ``ctx``, by
    looking at every keyword of the batch in turn."""
    runs, batch = scanned.runs, scanned.batch
    first, last, doc = int(runs.first[run]), int(runs.last[run]), int(runs.doc[run])
    keywords = [
        int(position)
        for position, bits in zip(scanned.keyword_positions, scanned.keyword_bits, strict=True)
        if int(bits) & int(ctx) and int(batch.doc[position]) == doc
    ]
    before_at = max((p for p in keywords if p < first), default=None)
    after_at = min((p for p in keywords if p > last), default=None)
    stops = [int(p) for p in scanned.stop_positions]
    segment = [word[3] for words in batch.word_lists for word in words]
    before = after = effective_before = effective_after = FAR
    if before_at is not None:
        before = first - before_at
        moved = segment[before_at] != segment[first]
        effective_before = before + BEFORE_PENALTY * moved
    if after_at is not None:
        after = after_at - last
        moved = segment[after_at] != segment[last] or any(last <= s < after_at for s in stops)
        effective_after = AFTER_WEIGHT * after + AFTER_PENALTY * moved
    return before, after, min(effective_before, effective_after)


def test_distances_are_exact_and_effective_ones_exact_below_the_horizon(scanned: Scan) -> None:
    exact_below, far_beyond = 0, 0
    for ctx in CLASSES:
        before, after = scanned.distances(ctx)
        effective = scanned.effective(ctx)
        for run in range(len(scanned.runs)):
            want_before, want_after, want_effective = reference(scanned, ctx, run)
            assert (int(before[run]), int(after[run])) == (want_before, want_after)
            if want_effective < HORIZON:
                assert int(effective[run]) == want_effective, (ctx, run)
                exact_below += 1
            else:
                assert int(effective[run]) >= HORIZON, (ctx, run)
                far_beyond += want_effective < FAR
    assert exact_below > 100 and far_beyond > 100  # both kinds were checked


def test_the_detectors_ask_for_no_effective_distance_past_the_horizon() -> None:
    assert base._FADE <= HORIZON  # closeness fades out by then
    # a negated number's keyword: within NEAR_BEFORE before or 3 after, penalised
    assert base.NEAR_BEFORE + BEFORE_PENALTY < HORIZON
    assert AFTER_WEIGHT * 3 + AFTER_PENALTY < HORIZON


def test_reading_times_only_where_they_matter_finds_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transcripts = [t.words for t in generate(200, seed=9, talk=20)]
    lean = scan(tokenize(transcripts))
    module = importlib.import_module("dsp.redact.scan")
    monkeypatch.setattr(
        module, "_times_where_needed", lambda batch, positions, *_: batch.times_of(positions)
    )
    full = scan(tokenize(transcripts))
    assert lean.parts is not None and full.parts is not None
    for mine, theirs in ((lean.runs, full.runs), (lean.parts.runs, full.parts.runs)):
        assert len(mine) > 0
        for name in ("first", "last", "ndigits", "segment_first", "segment_last", "offset"):
            assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
    assert np.array_equal(lean.digits, full.digits)
