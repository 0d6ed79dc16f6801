"""Card numbers: every 13-19 digit number in payment talk, Luhn only for confidence."""

from __future__ import annotations

import random

import pytest

from dsp.redact.detectors import CardDetector
from dsp.redact.redactor import redact
from tests.support.spoken_corpus import card_number, found, speak_digits, words_of


def test_detector_identity() -> None:
    assert (CardDetector.name, CardDetector.entity) == ("card", "CARD")


@pytest.mark.parametrize(
    "text",
    [
        "my card number is four one one one one one one one one one one one one one one one",
        "the visa is forty one eleven eleven eleven eleven eleven eleven eleven",
        "card number 4111 1111 1111 1111",
        "it's a mastercard two two two one oh oh oh oh oh oh oh oh oh oh oh nine",
        "my amex is three seven eight two double two triple four double six oh oh five",
        "card 4 one 1 1 eleven 1 um one one one one, one one one one one",
    ],
)
def test_spoken_and_written_cards(text: str) -> None:
    assert [entity for entity, _ in found(text)] == ["CARD"]


def test_a_card_failing_luhn_in_payment_talk_is_still_a_card() -> None:
    spans = found(
        "my credit card is four one one one one one one one one one one one one one one two"
    )
    assert [entity for entity, _ in spans] == ["CARD"]


def test_every_length_from_13_to_19() -> None:
    for length in range(13, 20):
        digits = " ".join(["four"] + ["one"] * (length - 1))
        assert [e for e, _ in found(f"the card number is {digits}")] == ["CARD"], length


def test_a_card_split_across_segments_and_turns() -> None:
    half = "four one one one one one one one"
    rest = "one one one one one one one one"
    assert found(f"card number {half} | {rest}") == [("CARD", f"{half} {rest}")]
    assert found(f"card number {half} | mhm | {rest}") == [("CARD", f"{half} mhm {rest}")]


def test_outside_payment_talk_long_numbers_still_count_and_luhn_raises_the_score() -> None:
    """The context words may be what the recogniser lost: fail closed, Luhn only labels."""
    assert found("the number is 4111 1111 1111 1111") == [("CARD", "4111 1111 1111 1111")]
    assert found("the number is 4111 1111 1111 1112") == [("CARD", "4111 1111 1111 1112")]
    heard = "we or " + " ".join(["one"] * 15)  # "my card number is four ..." misheard
    assert found(heard) == [("CARD", " ".join(["one"] * 15))]
    valid = redact(words_of("the number is 4111 1111 1111 1111")).spans[0].score
    invalid = redact(words_of("the number is 4111 1111 1111 1112")).spans[0].score
    assert valid > invalid


def test_order_numbers_are_not_cards() -> None:
    assert found("my order number is 4111 1111 1111 1111") == []
    assert (
        found(
            "the tracking number is one two three four five six seven eight nine one two three four"
        )
        == []
    )


def test_generated_cards_in_every_form() -> None:
    rng = random.Random(5)
    for _ in range(200):
        number = card_number(rng, valid=rng.random() < 0.8)
        spoken = " ".join(word for word, _ in speak_digits(number, rng, (4, 4, 4, 4)))
        words = words_of(f"my card number is {spoken}")
        assert [e for e, _ in found(" ".join(w.text for w in words))] == ["CARD"], spoken
