"""Phone numbers: NANP and E.164, spoken or written."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import PhoneDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (PhoneDetector.name, PhoneDetector.entity) == ("phone", "PHONE")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("call me at four one five five five five zero one three four", None),
        ("my cell is (415) 555-0134", "(415) 555-0134"),
        ("reach me on +1-415-555-0134", "+1-415-555-0134"),
        (
            "my phone number is plus four four two zero seven nine four six zero nine five eight",
            "plus four four two zero seven nine four six zero nine five eight",
        ),
        ("four one five, five five five, zero one three four is my phone number", None),
        ("my number is one eight hundred five five five one two one two", None),
    ],
)
def test_phone_numbers(text: str, number: str | None) -> None:
    spans = found(text)
    assert [entity for entity, _ in spans] == ["PHONE"]
    if number:
        assert spans[0][1] == number


def test_a_valid_number_alone_is_a_phone() -> None:
    assert found("it's 415 555 0134") == [("PHONE", "415 555 0134")]


def test_invalid_nanp_without_context_is_nothing() -> None:
    assert found("it's 015 555 0134") == []  # area codes start with 2-9
    assert found("my order number is 415 555 0134") == []
