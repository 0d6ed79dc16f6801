"""US Social Security numbers: nine digits with context, groups of 3-2-4, the last four."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import SsnDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (SsnDetector.name, SsnDetector.entity) == ("ssn", "SSN")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("my social is one two three four five six seven eight nine", None),
        ("my ssn is one two three, four five, six seven eight nine", None),
        ("social security number 123-45-6789", "123-45-6789"),
        ("five oh one two three four five six seven is my social", None),
        (
            "can you verify your social security number | sure it's two three four five six "
            "seven eight nine one",
            None,
        ),
        ("my social is one twenty three forty five sixty seven eighty nine", None),
    ],
)
def test_numbers(text: str, number: str | None) -> None:
    spans = found(text)
    assert [entity for entity, _ in spans] == ["SSN"]
    if number:
        assert spans[0][1] == number


def test_last_four_before_and_after() -> None:
    assert found("the last four of my social are one two three four") == [
        ("SSN", "one two three four")
    ]
    assert found("six seven eight nine are the last four of my social") == [
        ("SSN", "six seven eight nine")
    ]


def test_groups_of_three_two_four_without_context() -> None:
    assert found("it's one two three, four five, six seven eight nine") == [
        ("SSN", "one two three, four five, six seven eight nine")
    ]


def test_not_social_security_numbers() -> None:
    assert found("we have been customers since twenty nineteen social media") == []
    assert found("it's one two three four five six seven eight nine") == []  # no context
    assert found("my social club meets at seven thirty") == []
