"""Card expiry dates near card talk."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import ExpiryDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (ExpiryDetector.name, ExpiryDetector.entity) == ("expiry", "EXPIRY")


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("the expiry is oh nine twenty seven", "oh nine twenty seven"),
        ("it expires 09/27", "09/27"),
        ("expiration date september twenty seven", "september twenty seven"),
        ("valid until nine twenty seven", "nine twenty seven"),
        ("it expires twelve twenty eight", "twelve twenty eight"),
        ("exp september twenty twenty seven", "september twenty twenty seven"),
        ("my visa card | 09/2027", "09/2027"),
    ],
)
def test_expiry_dates(text: str, date: str) -> None:
    assert found(text) == [("EXPIRY", date)]


@pytest.mark.parametrize(
    "text",
    [
        "the expiry is thirteen twenty seven",  # no month 13
        "it expires in nineteen seventy five",  # not a card's year
        "my card expires | the store opens at nine fifteen",
    ],
)
def test_not_expiry_dates(text: str) -> None:
    assert all(entity != "EXPIRY" for entity, _ in found(text))
