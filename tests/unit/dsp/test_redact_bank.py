"""Bank account numbers (8-17 digits with context) and ABA routing numbers (check digit)."""

from __future__ import annotations

from dsp.redact.detectors import BankAccountDetector, RoutingDetector
from tests.support.spoken_corpus import found


def test_detector_identities() -> None:
    assert (BankAccountDetector.name, BankAccountDetector.entity) == (
        "bank_account",
        "BANK_ACCOUNT",
    )
    assert (RoutingDetector.name, RoutingDetector.entity) == ("aba_routing", "ROUTING")


def test_routing_then_account() -> None:
    text = (
        "the routing number is zero one one zero zero zero zero one five. "
        "| and the account number is one two three four five six seven eight"
    )
    assert found(text) == [
        ("ROUTING", "zero one one zero zero zero zero one five."),
        ("BANK_ACCOUNT", "one two three four five six seven eight"),
    ]


def test_routing_checksum_labels_but_context_decides() -> None:
    assert found("routing 011000015") == [("ROUTING", "011000015")]
    # a routing number misheard (check digit fails) is still redacted as one
    assert found("routing 011000016") == [("ROUTING", "011000016")]
    # near only "bank", the check digit must hold
    assert found("my bank uses 011000015") == [("ROUTING", "011000015")]
    assert [e for e, _ in found("my bank uses 011000016")] != ["ROUTING"]


def test_account_lengths() -> None:
    # 7 digits: too short for an account, still redacted by the fail-closed catch-all
    assert found("checking account 1234567") == [("DIGITS", "1234567")]
    assert found("checking account 12345678") == [("BANK_ACCOUNT", "12345678")]
    assert found("savings account 12345678901234567") == [("BANK_ACCOUNT", "12345678901234567")]


def test_not_accounts() -> None:
    assert found("my account balance is forty nine ninety nine dollars") == []
    assert found("I opened the account in twenty nineteen") == []
