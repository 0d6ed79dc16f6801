"""The scan's keyword distances and word times, against plain readings of the same tokens."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from dsp.redact import Redactor, Registry, ScanConfig, SpanTable, scan, tokenize
from dsp.redact.detectors import base
from dsp.redact.scan import (
    AFTER_PENALTY,
    AFTER_WEIGHT,
    BEFORE_PENALTY,
    FAR,
    HORIZON,
    Runs,
    Scan,
)
from dsp.redact.vocab import Ctx
from tests.support.spoken_corpus import generate

CLASSES = (Ctx.PAY, Ctx.CVV, Ctx.SSN, Ctx.NEGATIVE, Ctx.PHONE, base.PAYMENT | base.SENSITIVE)
SCAN_MODULE = importlib.import_module("dsp.redact.scan")


@pytest.fixture(scope="module")
def call_length() -> list[Sequence[Any]]:
    # call-length transcripts: keywords near and far, in other segments and sentences
    return [t.words for t in generate(120, seed=5, talk=20)]


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


def test_distances_are_exact_and_effective_ones_exact_below_the_horizon(
    call_length: list[Sequence[Any]],
) -> None:
    whole = scan(tokenize(call_length))
    assert whole.parts is not None and len(whole.parts.runs) > 0
    exact_below, far_beyond = 0, 0
    for scanned in (whole, whole.parts):  # the parts have distances of their own
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


def assert_same_table(mine: SpanTable, theirs: SpanTable) -> None:
    assert len(mine) > 0
    for name in ("doc", "first", "last", "detector", "score", "run"):
        assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name


@pytest.mark.parametrize("talk", [0, 20])
def test_the_detectors_find_the_same_spans_with_every_effective_distance_exact(
    talk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcripts = [t.words for t in generate(300, seed=6, talk=talk)]
    with_horizon = Registry().detect(scan(tokenize(transcripts)))
    monkeypatch.setattr(SCAN_MODULE, "HORIZON", FAR)  # every segment read, every value exact
    assert_same_table(with_horizon, Registry().detect(scan(tokenize(transcripts))))


@pytest.mark.parametrize("min_digits", [3, 1, 5])
def test_reading_times_only_where_they_matter_finds_the_same_numbers(
    min_digits: int, call_length: list[Sequence[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ScanConfig(min_digits=min_digits)
    lean = scan(tokenize(call_length), config)
    monkeypatch.setattr(
        SCAN_MODULE, "_times_where_needed", lambda batch, positions, *_: batch.times_of(positions)
    )
    full = scan(tokenize(call_length), config)
    assert lean.parts is not None and full.parts is not None
    for mine, theirs in ((lean.runs, full.runs), (lean.parts.runs, full.parts.runs)):
        assert len(mine) > 0
        for field in dataclasses.fields(Runs):
            assert np.array_equal(getattr(mine, field.name), getattr(theirs, field.name)), field
    assert np.array_equal(lean.parent, full.parent)
    assert_same_table(Registry().detect(lean), Registry().detect(full))


def test_a_word_list_that_changed_after_tokenizing_is_refused() -> None:
    transcripts = [list(t.words) for t in generate(5, seed=3)]
    redactor = Redactor()
    batch, scanned, table = redactor.find(transcripts)
    transcripts[0].insert(0, transcripts[0][0])
    with pytest.raises(ValueError, match="transcript 0 changed"):
        redactor.views(transcripts, batch, scanned, table)


def test_the_detectors_ask_for_no_effective_distance_past_the_horizon() -> None:
    assert base._FADE <= HORIZON  # closeness fades out by then
    # a negated number's keyword: within NEAR_BEFORE before or 3 after, penalised
    assert base.NEAR_BEFORE + BEFORE_PENALTY < HORIZON
    assert AFTER_WEIGHT * 3 + AFTER_PENALTY < HORIZON
