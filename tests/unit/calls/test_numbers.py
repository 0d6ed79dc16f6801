"""E.164 normalisation of the parties' numbers (gateway/calls/numbers.py)."""

from __future__ import annotations

import pytest

from gateway.calls.numbers import to_e164, uri_number
from gateway.sip.uri import SipUri


@pytest.mark.parametrize(
    ("dialled", "region", "expected"),
    [
        ("+12125550100", "US", "+12125550100"),
        ("12125550100", "US", "+12125550100"),
        ("2125550100", "US", "+12125550100"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("030 1234567", "DE", "+49301234567"),
        ("004930 1234567", "US", None),  # 00 is not the US exit prefix
        ("004930 1234567", "DE", "+49301234567"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("18005550199", "US", "+18005550199"),
        ("anonymous", "US", None),
        ("", "US", None),
        (None, "US", None),
        ("123", "US", None),
    ],
)
def test_to_e164(dialled: str | None, region: str, expected: str | None) -> None:
    assert to_e164(dialled, region) == expected


def test_uri_number_drops_user_parameters() -> None:
    assert uri_number(SipUri.parse("sip:+12125550100;npdi@gw;user=phone")) == "+12125550100"
    assert uri_number(SipUri.parse("sip:gw.example")) is None
