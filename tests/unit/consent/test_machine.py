"""The per-call consent state machine: transitions per mode, and the capture invariant."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.consent.machine import (
    CALL,
    ConsentMachine,
    Digits,
    Method,
    Outcome,
    PartyState,
)
from gateway.consent.rule import Mode

PARTIES = ("caller", "callee")


def machine(mode: Mode, required: tuple[str, ...] = PARTIES, internal=("callee",)):
    m = ConsentMachine(mode, PARTIES, required, internal)
    m.start(0.0)
    return m


def test_notice_mode_grants_when_the_notice_ends() -> None:
    m = machine(Mode.NOTICE, required=("caller",))
    assert m.states == {"caller": PartyState.PENDING, "callee": PartyState.GRANTED}
    assert not m.capture_allowed
    m.notice_started(1.0, "caller", "abc")
    assert not m.capture_allowed
    [change] = m.notice_finished(5.0, "caller")
    assert change.state is PartyState.GRANTED and change.method is Method.IMPLIED
    assert change.notice_sha256 == "abc"
    assert m.capture_allowed and m.outcome is Outcome.GRANTED


def test_one_party_rule_grants_the_internal_party_by_policy() -> None:
    m = ConsentMachine(Mode.NOTICE, PARTIES, ("caller",), ("callee",))
    changes = m.start(0.0)
    by_party = {c.party: c for c in changes}
    assert by_party["callee"].method is Method.POLICY
    assert by_party["callee"].state is PartyState.GRANTED
    assert by_party["caller"].state is PartyState.PENDING


def test_all_party_needs_both() -> None:
    m = machine(Mode.OPT_IN)
    for party in PARTIES:
        m.notice_started(1.0, party, "h")
    m.digit(2.0, "caller", "1")
    assert m.states["caller"] is PartyState.GRANTED
    assert not m.capture_allowed  # callee has not consented
    m.window_expired(20.0, "callee")
    assert m.states["callee"] is PartyState.TIMED_OUT
    assert not m.capture_allowed
    assert m.outcome is Outcome.TIMED_OUT


def test_opt_out_decline_and_window() -> None:
    m = machine(Mode.OPT_OUT, required=("caller",))
    m.notice_started(0.5, "caller", "h")
    m.notice_finished(4.0, "caller")
    assert not m.capture_allowed  # the decline window is open
    [change] = m.window_expired(19.0, "caller")
    assert change.state is PartyState.GRANTED and change.method is Method.TIMEOUT
    assert m.capture_allowed

    m = machine(Mode.OPT_OUT, required=("caller",))
    m.notice_started(0.5, "caller", "h")
    [change] = m.digit(2.0, "caller", "9")
    assert change.state is PartyState.DECLINED and change.digit == "9"
    assert m.window_expired(19.0, "caller") == []
    assert not m.capture_allowed and m.outcome is Outcome.DECLINED


def test_digits_before_the_notice_do_not_count() -> None:
    m = machine(Mode.OPT_IN, required=("caller",))
    assert m.digit(0.1, "caller", "1") == []
    assert m.states["caller"] is PartyState.PENDING


def test_withdraw_is_final_and_pause_is_internal_only() -> None:
    m = machine(Mode.OPT_IN, required=("caller",))
    m.notice_started(0.5, "caller", "h")
    m.digit(1.0, "caller", "1")
    assert m.capture_allowed
    assert m.digit(2.0, "caller", "*") == []  # the external party cannot pause
    [pause] = m.digit(3.0, "callee", "*")
    assert pause.party == CALL and pause.state is PartyState.PAUSED
    assert pause.previous is PartyState.GRANTED
    assert not m.capture_allowed
    assert m.digit(4.0, "caller", "#") == []  # nor resume
    assert not m.capture_allowed
    [resume] = m.digit(5.0, "callee", "#")
    assert resume.state is PartyState.GRANTED and m.capture_allowed
    [withdrawn] = m.digit(6.0, "caller", "7")
    assert withdrawn.state is PartyState.WITHDRAWN
    assert not m.capture_allowed
    m.digit(7.0, "caller", "1")
    m.set_paused(8.0, True, Method.API)
    m.set_paused(9.0, False, Method.API)
    assert not m.capture_allowed and m.outcome is Outcome.WITHDRAWN


def test_mode_none_never_captures() -> None:
    m = machine(Mode.NONE)
    assert m.notice_started(0.0, "caller", "h") == []
    assert m.grant(1.0, "caller", Method.API, "crm") == []
    assert not m.capture_allowed and m.outcome is Outcome.NONE


def test_notice_that_cannot_play_closes_the_call() -> None:
    m = machine(Mode.NOTICE, required=("caller",))
    [change] = m.notice_failed(0.2, "no G.711 codec on the caller's leg")
    assert change.party == CALL
    m.notice_started(0.5, "caller", "h")
    m.notice_finished(3.0, "caller")
    assert not m.capture_allowed and m.outcome is Outcome.UNAVAILABLE


def test_digits_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Digits(consent="1", decline="1")


def test_required_must_be_a_party() -> None:
    with pytest.raises(ValueError, match="not parties"):
        ConsentMachine(Mode.NOTICE, PARTIES, ("agent",))


# ---------------------------------------------------------------- property test

EVENT = st.one_of(
    st.tuples(st.just("notice_started"), st.sampled_from(PARTIES)),
    st.tuples(st.just("notice_finished"), st.sampled_from(PARTIES)),
    st.tuples(st.just("window_expired"), st.sampled_from(PARTIES)),
    st.tuples(st.just("digit"), st.sampled_from(PARTIES), st.sampled_from(list("0123456789*#"))),
    st.tuples(st.just("grant"), st.sampled_from(PARTIES)),
    st.tuples(st.just("withdraw"), st.sampled_from(PARTIES)),
    st.tuples(st.just("pause"), st.booleans()),
    st.tuples(st.just("notice_failed")),
)


@dataclass
class History:
    """What happened to one party, as the invariant needs it."""

    notified: bool = False
    consent_digit: bool = False
    asserted: bool = False
    final: PartyState | None = None
    granted_count: int = 0
    decisions: list[PartyState] = field(default_factory=list)


@settings(max_examples=400, deadline=None)
@given(
    mode=st.sampled_from(list(Mode)),
    required=st.sampled_from([("caller",), ("callee",), PARTIES]),
    events=st.lists(EVENT, max_size=30),
)
def test_capture_only_when_every_party_consented(mode, required, events) -> None:
    m = ConsentMachine(mode, PARTIES, required, internal=("callee",))
    m.start(0.0)
    history = {party: History() for party in PARTIES}
    ever_final = False
    unavailable = False
    paused = False
    for step, event in enumerate(events, start=1):
        at = float(step)
        kind = event[0]
        if kind == "notice_started":
            m.notice_started(at, event[1], "sha")
            history[event[1]].notified = True
        elif kind == "notice_finished":
            m.notice_finished(at, event[1])
        elif kind == "window_expired":
            m.window_expired(at, event[1])
        elif kind == "digit":
            party, digit = event[1], event[2]
            if digit == "1" and history[party].notified:
                history[party].consent_digit = True
            m.digit(at, party, digit)
            if party == "callee" and digit in "*#" and mode is not Mode.NONE:
                paused = digit == "*"
        elif kind == "grant":
            m.grant(at, event[1], Method.API, "asserted")
            history[event[1]].asserted = True
        elif kind == "withdraw":
            m.withdraw(at, event[1], Method.API)
        elif kind == "pause":
            m.set_paused(at, event[1], Method.INFO)
            if mode is not Mode.NONE:
                paused = event[1]
        elif kind == "notice_failed":
            m.notice_failed(at, "no codec")
            unavailable = unavailable or mode is not Mode.NONE

        # the gate is exactly "every party granted, not paused, mode captures"
        expected = (
            mode is not Mode.NONE
            and not unavailable
            and not paused
            and all(state is PartyState.GRANTED for state in m.states.values())
        )
        assert m.capture_allowed == expected
        for party in PARTIES:
            state = m.states[party]
            past = history[party]
            # a final state never changes
            if past.final is not None:
                assert state is past.final
            elif state.final:
                past.final = state
                ever_final = True
            if state is PartyState.GRANTED and party in required:
                # a required party is granted only after being told, or by an assertion
                assert past.notified or past.asserted
                if mode is Mode.OPT_IN:
                    # opt-in: only the consent digit or an assertion grants
                    assert past.consent_digit or past.asserted
        # once any party reached a final state, nothing is ever captured again
        if ever_final:
            assert not m.capture_allowed
        if m.capture_allowed:
            assert m.outcome is Outcome.GRANTED
