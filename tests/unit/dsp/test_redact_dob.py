"""Dates of birth, with their context words."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import DateOfBirthDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (DateOfBirthDetector.name, DateOfBirthDetector.entity) == ("date_of_birth", "DOB")


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("I was born on march third nineteen eighty five", "march third nineteen eighty five"),
        (
            "my date of birth is the third of march nineteen eighty five",
            "third of march nineteen eighty five",
        ),
        ("dob 03/03/1985", "03/03/1985"),
        ("my birthday is oh three oh three eighty five", "oh three oh three eighty five"),
        ("I was born in nineteen eighty", "nineteen eighty"),
        ("date of birth july fourth two thousand five", "july fourth two thousand five"),
    ],
)
def test_dates_of_birth(text: str, date: str) -> None:
    assert found(text) == [("DOB", date)]


def test_dates_without_birth_context_are_not_kept_secret() -> None:
    assert found("the branch reopened on march third nineteen eighty five") == []
    assert found("I was born to do this at three thirty") == []
