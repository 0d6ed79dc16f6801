"""Entity-level precision and recall on a generated spoken-form corpus, held to targets.

The corpus (:mod:`tests.support.spoken_corpus`) is generated with a seed the
detectors were not tuned on. An entity is found when every word carrying it
is redacted and a span of its type overlaps it; a span is correct when it
overlaps an entity of its type (see :func:`~tests.support.spoken_corpus.evaluate`).

Targets: recall >= 0.99 and precision >= 0.95 for cards, CVVs and SSNs (the
bar the design sets). For the other types the targets sit a little under
what the redactor reaches on this corpus (about 0.98-1.00 recall, 0.96-1.00
precision), so that a change that costs accuracy fails here. The catch-all
``DIGITS`` is held to coverage only: any type may redact a number read short.
Every labelled entity, whatever its type, must be redacted (coverage).
"""

from __future__ import annotations

import pytest

from dsp.redact import redact_batch
from tests.support.spoken_corpus import Score, evaluate, format_scores, generate

SEED = 20261206
TRANSCRIPTS = 3000

TARGETS: dict[str, tuple[float, float]] = {  # type: (recall, precision)
    "CARD": (0.99, 0.95),
    "CVV": (0.99, 0.95),
    "SSN": (0.99, 0.95),
    "EXPIRY": (0.98, 0.97),
    "PIN": (0.97, 0.95),
    "BANK_ACCOUNT": (0.97, 0.97),
    "ROUTING": (0.96, 0.98),
    "IBAN": (0.98, 0.98),
    "PHONE": (0.97, 0.98),
    "EMAIL": (0.98, 0.98),
    "DOB": (0.98, 0.97),
}
MIN_COVERAGE = 0.995


@pytest.fixture(scope="module")
def scores() -> dict[str, Score]:
    corpus = generate(TRANSCRIPTS, seed=SEED)
    results = redact_batch([transcript.words for transcript in corpus])
    predicted = [
        [(span.entity, span.start_word, span.end_word) for span in result.spans]
        for result in results
    ]
    found = evaluate(corpus, predicted)
    for row in format_scores(found):
        print("  ".join(row))
    return found


@pytest.mark.parametrize("entity", sorted(TARGETS))
def test_recall_and_precision(scores: dict[str, Score], entity: str) -> None:
    recall, precision = TARGETS[entity]
    score = scores[entity]
    assert score.gold >= 100, f"too few {entity} entities to measure: {score.gold}"
    assert score.recall >= recall, f"{entity} recall {score.recall:.3f} < {recall}"
    assert score.precision >= precision, f"{entity} precision {score.precision:.3f} < {precision}"


def test_every_entity_is_redacted(scores: dict[str, Score]) -> None:
    for entity, score in scores.items():
        assert score.coverage >= MIN_COVERAGE, f"{entity} coverage {score.coverage:.3f}"


def test_the_catch_all_redacts_what_it_should(scores: dict[str, Score]) -> None:
    assert scores["DIGITS"].gold > 10
    assert scores["DIGITS"].coverage == 1.0
    assert scores["DIGITS"].precision >= 0.85


def test_the_measure_can_fail() -> None:
    corpus = generate(200, seed=SEED + 1)
    nothing = evaluate(corpus, [[] for _ in corpus])
    assert nothing["CARD"].recall == 0.0
    everything = evaluate(corpus, [[("CARD", 0, len(t.words))] for t in corpus])
    assert everything["CARD"].precision < 0.5
