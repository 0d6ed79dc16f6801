"""One detector per entity type; :data:`DEFAULT_DETECTORS` is the registry's default set."""

from __future__ import annotations

from typing import Final

from dsp.redact.detectors.account import BankAccountDetector
from dsp.redact.detectors.base import Candidates, Detector, RunDetector, SpanDetector
from dsp.redact.detectors.card import CardDetector
from dsp.redact.detectors.catchall import CatchAllDetector
from dsp.redact.detectors.cvv import CvvDetector
from dsp.redact.detectors.dob import DateOfBirthDetector
from dsp.redact.detectors.email import EmailDetector
from dsp.redact.detectors.expiry import ExpiryDetector
from dsp.redact.detectors.iban import IbanDetector
from dsp.redact.detectors.phone import PhoneDetector
from dsp.redact.detectors.pin import PinDetector
from dsp.redact.detectors.routing import RoutingDetector
from dsp.redact.detectors.ssn import SsnDetector

__all__ = [
    "DEFAULT_DETECTORS",
    "BankAccountDetector",
    "Candidates",
    "CardDetector",
    "CatchAllDetector",
    "CvvDetector",
    "DateOfBirthDetector",
    "Detector",
    "EmailDetector",
    "ExpiryDetector",
    "IbanDetector",
    "PhoneDetector",
    "PinDetector",
    "RoutingDetector",
    "RunDetector",
    "SpanDetector",
    "SsnDetector",
]

DEFAULT_DETECTORS: Final[tuple[Detector, ...]] = (
    CardDetector(),
    CvvDetector(),
    ExpiryDetector(),
    PinDetector(),
    SsnDetector(),
    BankAccountDetector(),
    RoutingDetector(),
    IbanDetector(),
    PhoneDetector(),
    EmailDetector(),
    DateOfBirthDetector(),
    CatchAllDetector(),
)
"""Every built-in detector, in the order ties between equal scores go."""
