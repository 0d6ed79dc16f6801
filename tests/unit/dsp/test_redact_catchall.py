"""The fail-closed catch-all: numbers in payment talk that no typed detector claims."""

from __future__ import annotations

from dsp.redact.detectors import CatchAllDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (CatchAllDetector.name, CatchAllDetector.entity) == ("payment_digits", "DIGITS")
    assert CatchAllDetector.catch_all


def test_a_card_read_short_is_still_redacted() -> None:
    assert found("the card number is four one one one one one one one one one one one") == [
        ("DIGITS", "four one one one one one one one one one one one")
    ]


def test_a_card_read_with_its_expiry_is_still_redacted() -> None:
    spans = found("my card is 4111 1111 1111 1111 0927")
    assert [entity for entity, _ in spans] == ["DIGITS"]


def test_numbers_near_payment_talk_but_not_secrets_stay() -> None:
    assert found("my card was charged forty nine ninety nine dollars") == []
    assert found("my card was declined at three thirty") == []
    assert found("I have had the card since twenty nineteen") == []
    assert found("the card is for room two oh four") == []


def test_outside_any_context_nothing_is_redacted() -> None:
    assert found("I called three four five times about it") == []
