"""The store accepts every value the consent state machine and rules produce."""

from __future__ import annotations

from gateway.consent.machine import CALL, Digits, Method, Outcome, PartyState
from gateway.consent.rule import Mode, Parties
from gateway.store.models import (
    CONSENT_EVENT_PARTIES,
    CONSENT_METHODS,
    CONSENT_MODES,
    CONSENT_OUTCOMES,
    CONSENT_PARTIES,
    CONSENT_STATES,
)
from gateway.store.ops import DTMF_DIGITS


def test_modes_parties_outcomes_and_states_are_the_machines() -> None:
    assert set(CONSENT_MODES) == {mode.value for mode in Mode}
    assert set(CONSENT_PARTIES) == {parties.value for parties in Parties}
    assert set(CONSENT_OUTCOMES) == {outcome.value for outcome in Outcome}
    assert set(CONSENT_STATES) == {state.value for state in PartyState}


def test_every_method_and_call_level_party_is_accepted() -> None:
    assert {method.value for method in Method} <= set(CONSENT_METHODS)
    assert CALL in CONSENT_EVENT_PARTIES


def test_the_default_consent_digits_are_dtmf_digits() -> None:
    digits = Digits()
    pressed = {digits.consent, digits.decline, digits.withdraw, digits.pause, digits.resume}
    assert pressed <= set(DTMF_DIGITS)
