"""E-mail addresses, written and spoken."""

from __future__ import annotations

import pytest

from dsp.redact.detectors import EmailDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (EmailDetector.name, EmailDetector.entity) == ("email", "EMAIL")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("my email is john dot smith at gmail dot com", "john dot smith at gmail dot com"),
        (
            "email j smith eighty five at yahoo dot co dot uk",
            "j smith eighty five at yahoo dot co dot uk",
        ),
        (
            "it's mary underscore jones at outlook dot com",
            "mary underscore jones at outlook dot com",
        ),
        ("send it to john.smith@gmail.com please", "john.smith@gmail.com"),
        ("email john at | mhm | gmail dot com", "john at mhm gmail dot com"),
        ("it's o brown at acme dot io", "o brown at acme dot io"),
    ],
)
def test_addresses(text: str, address: str) -> None:
    assert found(text) == [("EMAIL", address)]


@pytest.mark.parametrize(
    "text",
    [
        "meet me at one dot me",
        "see you at the dot",
        "we talked at one dot five percent interest",
        "I was at home dot dot dot",
        "the meeting is at noon dot com is down",
    ],
)
def test_not_addresses(text: str) -> None:
    assert all(entity != "EMAIL" for entity, _ in found(text))
