"""Card verification codes after "security code", "CVV", "the three digits on the back"."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import CvvDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (CvvDetector.name, CvvDetector.entity) == ("cvv", "CVV")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("the security code is one two three", "one two three"),
        ("cvv seven seven seven", "seven seven seven"),
        ("the cvc is 123", "123"),
        ("the three digits on the back are four five six", "four five six"),
        ("one two three four is the security code", "one two three four"),
        ("what's the cvv | it's double five two", "double five two"),
        ("card verification code oh one two", "oh one two"),
    ],
)
def test_codes(text: str, code: str) -> None:
    assert found(text) == [("CVV", code)]


@pytest.mark.parametrize(
    "text",
    [
        "the security code is one two",  # two digits
        "the security code is one two three four five",  # five digits: not a CVV
        "my card was charged at three thirty",
        "the cvv is fine it was forty nine ninety nine dollars",
    ],
)
def test_not_codes(text: str) -> None:
    assert all(entity != "CVV" for entity, _ in found(text))


def test_code_said_after_the_card_in_the_next_turn() -> None:
    text = "my card is 4111 1111 1111 1111. | and the code on the back | nine eight seven"
    assert found(text) == [("CARD", "4111 1111 1111 1111."), ("CVV", "nine eight seven")]
