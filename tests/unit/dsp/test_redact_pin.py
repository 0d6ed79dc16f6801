"""PINs: digits said after "PIN"."""

from __future__ import annotations

from dsp.redact.detectors import PinDetector
from tests.support.spoken_corpus import found


def test_detector_identity() -> None:
    assert (PinDetector.name, PinDetector.entity) == ("pin", "PIN")


def test_pins() -> None:
    assert found("my pin is one two three four") == [("PIN", "one two three four")]
    assert found("pin number double five triple seven") == [("PIN", "double five triple seven")]
    assert found("nine oh eight seven is my pin") == [("PIN", "nine oh eight seven")]
    assert found("the passcode is 482913") == [("PIN", "482913")]


def test_not_pins() -> None:
    assert found("my pin is one two") == []  # too short
    assert found("pin it to the board at ten thirty") == []
    assert found("I changed my pin in twenty nineteen") == []
