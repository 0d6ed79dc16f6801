"""The consent state machine of one call: each party's state and the capture decision.

Sans-IO: methods take what happened and when (seconds on any monotonic
clock) and return the :class:`ConsentChange` list it caused; they start no
timer and touch no socket. The call's glue plays the notices, runs the
timers, feeds the digits, and stores every change as a consent event.

Parties and their states
------------------------

A party that must be told or asked (``required``) moves through::

    pending --notice--> notified --(implied | digit | timeout)--> granted
                                  \\--(decline digit)-------------> declined
                                  \\--(opt-in timeout)------------> timed_out
    granted --(withdraw)--> withdrawn

``declined``, ``timed_out`` and ``withdrawn`` are final: nothing re-opens
them during the call. A party the rule does not ask (the tenant's own agent
under a one-party rule) is ``granted`` from the start by the tenant's
policy, and its trail says so.

What counts as consent follows the mode (see :mod:`gateway.consent.rule`):

``notice``
    the notice played to its end and the party stayed on: implied consent
    (the "verbal notice recorded at the start" of 47 C.F.R. 64.501 and
    Conn. Gen. Stat. 52-570d).
``opt_out``
    as ``notice``, but the party has ``timeout`` seconds after the notice to
    press the decline digit; not declining is consent. The consent digit
    grants at once.
``opt_in``
    only the consent digit (or an API or header assertion) grants; no digit
    within the timeout is ``timed_out``.
``none``
    nothing is ever captured; no party is asked.

A digit counts from the moment the notice starts (a caller may press 1
before the notice ends); digits before it are ignored, since the party has
not yet been told what they mean.

Pause
-----

Pause is a state of the call, not of a party: while paused (payment card
entry) nothing is captured, whoever is speaking. Only the tenant's side
(its PBX or agent, or the API) pauses and resumes, so a customer keying a
card number that ends in the resume digit cannot restart capture.

The gate
--------

:attr:`ConsentMachine.capture_allowed` is the one decision the capture
gate reads: true exactly when the mode captures, every party is
``granted``, and the call is not paused. Under an all-party rule one
party's consent is not enough: nothing of either party is captured until
both have consented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.consent.rule import Mode

CALL = "call"
"""The party name of call-level events (pause, resume, a notice that cannot play)."""


class PartyState(StrEnum):
    """Where a party is in giving consent."""

    PENDING = "pending"
    NOTIFIED = "notified"
    GRANTED = "granted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    WITHDRAWN = "withdrawn"
    PAUSED = "paused"

    @property
    def final(self) -> bool:
        """States no event leaves during the call."""
        return self in _FINAL


_FINAL = frozenset({PartyState.DECLINED, PartyState.TIMED_OUT, PartyState.WITHDRAWN})


class Method(StrEnum):
    """How a change came about, as the consent trail records it."""

    POLICY = "policy"  # the tenant's rule: this party is not asked
    NOTICE = "notice"  # the notice started playing to the party
    IMPLIED = "implied"  # the notice ended and the party stayed on
    DIGIT = "digit"  # a DTMF digit (RFC 4733 or in-band)
    INFO = "info"  # a DTMF digit in SIP INFO, or a capture command in SIP INFO
    HEADER = "header"  # a SIP header asserted it
    API = "api"  # the HTTP API asserted it
    TIMEOUT = "timeout"  # the consent window ran out


class Outcome(StrEnum):
    """The call's consent outcome, as the call record keeps it."""

    GRANTED = "granted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    WITHDRAWN = "withdrawn"
    PENDING = "pending"  # the call ended before every party had decided
    NONE = "none"  # the rule never captures
    UNAVAILABLE = "unavailable"  # the notice could not be played (no G.711 on the leg)


@dataclass(frozen=True, slots=True)
class Digits:
    """The DTMF digits a tenant's policy gives each meaning."""

    consent: str = "1"
    decline: str = "9"
    withdraw: str = "7"
    pause: str = "*"
    resume: str = "#"

    def __post_init__(self) -> None:
        values = [self.consent, self.decline, self.withdraw, self.pause, self.resume]
        if len(set(values)) != len(values):
            raise ValueError(f"consent digits must be distinct, got {values}")


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One transition: the consent event the store keeps."""

    at: float
    party: str
    state: PartyState
    previous: PartyState | None
    method: Method
    digit: str | None = None
    notice_sha256: str | None = None
    detail: str | None = None


class ConsentMachine:
    """Consent of the parties of one call under one mode.

    ``parties`` are all the call's parties (``caller``, ``callee``);
    ``required`` those the rule tells or asks; ``internal`` those on the
    tenant's side (its PBX's users), who may pause and resume. Call
    :meth:`start` once, first.
    """

    def __init__(
        self,
        mode: Mode,
        parties: Iterable[str],
        required: Iterable[str],
        internal: Iterable[str] = (),
        digits: Digits | None = None,
    ) -> None:
        self.mode = mode
        self.parties: tuple[str, ...] = tuple(parties)
        self.required: frozenset[str] = frozenset(required)
        unknown = self.required.difference(self.parties)
        if unknown:
            raise ValueError(f"required parties {sorted(unknown)} are not parties of the call")
        self.internal: frozenset[str] = frozenset(internal)
        self.digits = digits or Digits()
        self.states: dict[str, PartyState] = dict.fromkeys(self.parties, PartyState.PENDING)
        self.paused = False
        self.unavailable = False
        self.started = False
        self.notice_sha256: str | None = None
        self._notice_ended: set[str] = set()
        self._allowed = False

    # ------------------------------------------------------------ reading

    @property
    def capture_allowed(self) -> bool:
        """Whether captured audio may flow at this instant: the gate's one decision."""
        return self._allowed

    def _recompute(self) -> None:
        self._allowed = (
            self.started
            and self.mode is not Mode.NONE
            and not self.unavailable
            and not self.paused
            and all(state is PartyState.GRANTED for state in self.states.values())
        )

    @property
    def call_state(self) -> PartyState:
        """The call's state for call-level events: paused, granted, final or pending."""
        if self.paused:
            return PartyState.PAUSED
        outcome = self.outcome
        if outcome is Outcome.GRANTED:
            return PartyState.GRANTED
        for state in (PartyState.WITHDRAWN, PartyState.DECLINED, PartyState.TIMED_OUT):
            if outcome.value == state.value:
                return state
        return PartyState.PENDING

    @property
    def settled(self) -> bool:
        """Whether no party is still to decide (every one granted or final)."""
        return all(state is PartyState.GRANTED or state.final for state in self.states.values())

    @property
    def outcome(self) -> Outcome:
        """The call's outcome: the first final state of a party, else granted or pending."""
        if self.mode is Mode.NONE:
            return Outcome.NONE
        if self.unavailable:
            return Outcome.UNAVAILABLE
        for wanted, outcome in (
            (PartyState.WITHDRAWN, Outcome.WITHDRAWN),
            (PartyState.DECLINED, Outcome.DECLINED),
            (PartyState.TIMED_OUT, Outcome.TIMED_OUT),
        ):
            if any(state is wanted for state in self.states.values()):
                return outcome
        if all(state is PartyState.GRANTED for state in self.states.values()):
            return Outcome.GRANTED
        return Outcome.PENDING

    def awaiting(self, party: str) -> bool:
        """Whether ``party`` has been told and not yet decided (its consent window)."""
        return self.states.get(party) is PartyState.NOTIFIED

    # ------------------------------------------------------------ inputs

    def start(self, at: float) -> list[ConsentChange]:
        """The rule is known: unasked parties are granted by policy, the others pending."""
        if self.started:
            return []
        self.started = True
        changes: list[ConsentChange] = []
        if self.mode is Mode.NONE:
            self._recompute()
            return changes
        for party in self.parties:
            if party in self.required:
                changes.append(
                    ConsentChange(
                        at,
                        party,
                        PartyState.PENDING,
                        None,
                        Method.POLICY,
                        detail=f"{self.mode.value}: this party is told and asked",
                    )
                )
            else:
                changes.append(
                    self._set(
                        at,
                        party,
                        PartyState.GRANTED,
                        Method.POLICY,
                        detail="the rule does not ask this party "
                        "(the tenant's own side under a one-party rule)",
                    )
                )
        self._recompute()
        return changes

    def notice_started(self, at: float, party: str, sha256: str) -> list[ConsentChange]:
        """The notice began playing to ``party``."""
        self.notice_sha256 = sha256
        if self.states.get(party) is not PartyState.PENDING or self.mode is Mode.NONE:
            return []
        return [self._set(at, party, PartyState.NOTIFIED, Method.NOTICE, notice_sha256=sha256)]

    def notice_finished(self, at: float, party: str) -> list[ConsentChange]:
        """The notice to ``party`` played to its end; under ``notice`` that is consent."""
        self._notice_ended.add(party)
        if self.mode is Mode.NOTICE and self.states.get(party) is PartyState.NOTIFIED:
            return self._finish(
                [
                    self._set(
                        at,
                        party,
                        PartyState.GRANTED,
                        Method.IMPLIED,
                        notice_sha256=self.notice_sha256,
                        detail="the notice played and the party stayed on the line",
                    )
                ]
            )
        return []

    def notice_failed(self, at: float, reason: str) -> list[ConsentChange]:
        """A notice cannot be played (no G.711 on a leg): nothing is captured in this call."""
        if self.mode is Mode.NONE or self.unavailable:
            return []
        self.unavailable = True
        self._recompute()
        return [ConsentChange(at, CALL, PartyState.PENDING, None, Method.NOTICE, detail=reason)]

    def window_expired(self, at: float, party: str) -> list[ConsentChange]:
        """The consent window after the notice ran out without a deciding digit."""
        if self.states.get(party) is not PartyState.NOTIFIED:
            return []
        if self.mode is Mode.OPT_OUT:
            change = self._set(
                at,
                party,
                PartyState.GRANTED,
                Method.TIMEOUT,
                detail="the party did not press the decline digit",
            )
        elif self.mode is Mode.OPT_IN:
            change = self._set(
                at,
                party,
                PartyState.TIMED_OUT,
                Method.TIMEOUT,
                detail="the party did not press the consent digit",
            )
        else:
            return []
        return self._finish([change])

    def digit(
        self, at: float, party: str, digit: str, method: Method = Method.DIGIT
    ) -> list[ConsentChange]:
        """A key press by ``party``; what it means depends on the mode and the states."""
        state = self.states.get(party)
        if state is None or self.mode is Mode.NONE or not self.started:
            return []
        keys = self.digits
        if digit == keys.withdraw and state is PartyState.GRANTED and party in self.required:
            return self.withdraw(at, party, method, digit=digit)
        if digit in (keys.pause, keys.resume) and party in self.internal:
            paused = digit == keys.pause
            return self.set_paused(at, paused, method, digit=digit, party=party)
        if state is not PartyState.NOTIFIED:
            return []
        if digit == keys.consent and self.mode in (Mode.OPT_IN, Mode.OPT_OUT):
            return self._finish(
                [
                    self._set(
                        at,
                        party,
                        PartyState.GRANTED,
                        method,
                        digit=digit,
                        notice_sha256=self.notice_sha256,
                    )
                ]
            )
        if digit == keys.decline and self.mode in (Mode.OPT_IN, Mode.OPT_OUT):
            return self._finish(
                [
                    self._set(
                        at,
                        party,
                        PartyState.DECLINED,
                        method,
                        digit=digit,
                        notice_sha256=self.notice_sha256,
                    )
                ]
            )
        return []

    def grant(self, at: float, party: str, method: Method, detail: str) -> list[ConsentChange]:
        """Consent asserted for ``party`` outside the call's audio (API, header)."""
        state = self.states.get(party)
        if state is None or state.final or state is PartyState.GRANTED or self.mode is Mode.NONE:
            return []
        return self._finish([self._set(at, party, PartyState.GRANTED, method, detail=detail)])

    def withdraw(
        self,
        at: float,
        party: str,
        method: Method,
        *,
        digit: str | None = None,
        detail: str | None = None,
    ) -> list[ConsentChange]:
        """``party`` withdraws consent (or declines before giving it): final for the call."""
        state = self.states.get(party)
        if state is None or state.final or self.mode is Mode.NONE:
            return []
        target = PartyState.WITHDRAWN if state is PartyState.GRANTED else PartyState.DECLINED
        return self._finish([self._set(at, party, target, method, digit=digit, detail=detail)])

    def set_paused(
        self,
        at: float,
        paused: bool,
        method: Method,
        *,
        digit: str | None = None,
        party: str = CALL,
        detail: str | None = None,
    ) -> list[ConsentChange]:
        """Pause or resume capture for the whole call (card entry); no effect if unchanged."""
        if paused == self.paused or self.mode is Mode.NONE:
            return []
        previous = self.call_state
        self.paused = paused
        self._recompute()
        state = self.call_state
        note = detail or (f"by {party}" if party != CALL else None)
        return [ConsentChange(at, CALL, state, previous, method, digit=digit, detail=note)]

    # ------------------------------------------------------------ helpers

    def _set(
        self,
        at: float,
        party: str,
        state: PartyState,
        method: Method,
        *,
        digit: str | None = None,
        notice_sha256: str | None = None,
        detail: str | None = None,
    ) -> ConsentChange:
        previous = self.states[party]
        self.states[party] = state
        return ConsentChange(at, party, state, previous, method, digit, notice_sha256, detail)

    def _finish(self, changes: list[ConsentChange]) -> list[ConsentChange]:
        self._recompute()
        return changes
