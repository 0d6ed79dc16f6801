"""IBANs, written and spoken, by country length and the mod-97 check."""

from __future__ import annotations

import random

from dsp.redact.detectors import IbanDetector
from tests.support.spoken_corpus import found, iban_number


def test_detector_identity() -> None:
    assert (IbanDetector.name, IbanDetector.entity) == ("iban", "IBAN")


def test_written_iban() -> None:
    assert found("my iban is GB82 WEST 1234 5698 7654 32 thanks") == [
        ("IBAN", "GB82 WEST 1234 5698 7654 32")
    ]


def test_spoken_iban_with_a_filler() -> None:
    digits = "one two three four five six um nine eight seven six five four three two"
    text = f"iban g b eight two w e s t {digits}"
    spans = found(text)
    assert spans[0][0] == "IBAN"
    assert spans[0][1].startswith("g b") and spans[0][1].endswith("three two")


def test_generated_ibans() -> None:
    rng = random.Random(3)
    for _ in range(50):
        iban = iban_number(rng)
        groups = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        assert found(f"the iban is {groups}") == [("IBAN", groups)]


def test_a_wrong_check_fails_closed_near_iban_only() -> None:
    spans = found("my iban is GB83 WEST 1234 5698 7654 32")
    assert spans[0] == ("IBAN", "GB83 WEST 1234 5698 7654 32")
    assert all(entity != "IBAN" for entity, _ in found("the code GB83 WEST 1234 5698 7654 32"))
