"""Transcripts while the call runs: a number read across two looks is still redacted whole,
because the last seconds of each look are held back, unredacted, in memory only."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from gateway.analysis.live import HOLD_S, LookSpec, look
from tests.support.speech_service import SpeechService

RATE = 8000
LOOK_S = 10.0


@pytest.fixture
def service() -> Iterator[SpeechService]:
    running = SpeechService().start()
    try:
        yield running
    finally:
        running.stop()


def _words(text: str, start: float, step: float = 0.5) -> list[dict[str, object]]:
    return [
        {"text": word, "start": start + i * step, "end": start + i * step + 0.4}
        for i, word in enumerate(text.split())
    ]


def _spec(service: SpeechService, offset: float, held: dict[str, list]) -> LookSpec:
    return LookSpec(
        pcm=bytes(int(LOOK_S * RATE) * 4),
        sample_rate=RATE,
        offset_s=offset,
        final=False,
        held=held,
        transcriber="http",
        transcriber_options={"url": service.url, "language": "en"},
        entities=("CARD", "CVV", "EXPIRY", "DIGITS"),
        replacement="tag",
    )


def test_a_card_read_across_two_looks_is_redacted_whole(service: SpeechService) -> None:
    # look 1: talk, then "my card number is four one one one" in its last seconds
    service.words = _words("hello thanks for calling", 1.0) + _words(
        "my card number is four one one one", 6.4
    )
    first = look(_spec(service, 0.0, {}))
    stored = [w["text"] for w in first.words["caller"]]
    assert stored == ["hello", "thanks", "for", "calling"]  # the rest is held back
    held = first.held["caller"]
    assert [t for t, _, _ in held][-4:] == ["four", "one", "one", "one"]
    assert all(end > LOOK_S - HOLD_S - 0.5 for _, _, end in held)

    # look 2: the rest of the number, then more talk
    service.words = _words("one one one one one one one one one one one one", 0.2, 0.4) + _words(
        "thank you that is all", 6.0
    )
    second = look(_spec(service, LOOK_S, first.held))
    texts = [w["text"] for w in second.words["caller"]]
    assert "[CARD]" in texts, texts
    assert not any(t in {"four", "one"} or any(c.isdigit() for c in t) for t in texts), texts
    (span,) = [s for s in second.spans["caller"] if s["entity"] == "CARD"]
    assert span["start_s"] == pytest.approx(6.4 + 4 * 0.5)  # from the held "four"
    assert span["end_s"] > LOOK_S
    # the spans' word indexes point into the stored words
    assert texts[span["word_start"]] == "[CARD]"


def test_the_last_look_holds_nothing_back(service: SpeechService) -> None:
    service.words = _words("goodbye now", 8.0)
    spec = _spec(service, 0.0, {})
    final = look(dataclasses.replace(spec, final=True))
    assert [w["text"] for w in final.words["caller"]] == ["goodbye", "now"]
    assert final.held["caller"] == []


def test_a_number_reaching_into_the_held_seconds_is_held_whole(service: SpeechService) -> None:
    """No context words, and most of the digits before the held seconds: still held."""
    service.words = _words("so it is four one one one one one one one one", 1.0, 0.6)
    first = look(_spec(service, 0.0, {}))
    assert [w["text"] for w in first.words["caller"]] == ["so", "it", "is"]
    assert next(t for t, _, _ in first.held["caller"]) == "four"
