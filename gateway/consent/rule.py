"""One recording-consent rule: what a jurisdiction requires before a call is captured.

Modes, from least to most strict:

``notice``
    a recorded notice is played; staying on the line is consent.
``opt_out``
    the notice offers a digit to decline ("press 9"); not declining is consent.
``opt_in``
    nothing is captured unless the party presses the consent digit.
``none``
    the call is never captured.

``none`` ranks *strictest*, above ``opt_in``: it never comes from the law
(no jurisdiction in the reference forbids recording outright, so no shipped
default is ``none``); it is a tenant's choice not to capture calls that
touch a jurisdiction. Ranked below ``notice``, a tenant's ``none`` for one
party would lose to a ``notice`` for the other and the call would be
captured against the tenant's word; ranked strictest, it wins, and a call
that touches it is not captured at all.

Parties: ``all`` means every party on the call gets the notice or prompt
and must consent (all-party states, data-protection laws that protect every
speaker); ``one`` means one party's consent suffices, so where the tenant's
own user is a party only the external party is told or asked.

Confidence marks follow the reference facts: ``S`` confirmed against a
statute, court opinion or authoritative summary; ``2`` secondary source;
``U`` unsettled or unconfirmed, and the rule takes the stricter reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    """What must happen before a party's audio may be captured."""

    NOTICE = "notice"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    NONE = "none"

    @property
    def strictness(self) -> int:
        """Rank for combining rules: notice 0 < opt_out 1 < opt_in 2 < none 3."""
        return _MODE_RANK[self]


_MODE_RANK: dict[Mode, int] = {Mode.NOTICE: 0, Mode.OPT_OUT: 1, Mode.OPT_IN: 2, Mode.NONE: 3}


class Parties(StrEnum):
    """Whose consent is needed: every party's, or one party's."""

    ONE = "one"
    ALL = "all"

    @property
    def strictness(self) -> int:
        return 1 if self is Parties.ALL else 0


class Confidence(StrEnum):
    """How firmly the rule's source supports it."""

    CONFIRMED = "S"
    SECONDARY = "2"
    UNSETTLED = "U"


@dataclass(frozen=True, slots=True)
class Rule:
    """The rule for one jurisdiction or group of them.

    ``key`` is the jurisdiction code (``US-CA``, ``DE``), a group name
    (``EU``) or ``unknown``; ``source`` cites the law or guidance it comes
    from; ``notes`` says what the citation alone does not.
    """

    key: str
    name: str
    mode: Mode
    parties: Parties
    source: str
    confidence: Confidence
    notes: str = ""

    def at_least_as_strict_as(self, other: Rule) -> bool:
        """Whether this rule asks at least as much as ``other`` in both mode and parties."""
        return (
            self.mode.strictness >= other.mode.strictness
            and self.parties.strictness >= other.parties.strictness
        )

    def summary(self) -> str:
        """``US-CA (California): notice, all parties [S] Penal Code 632, ...``."""
        who = "all parties" if self.parties is Parties.ALL else "one party"
        label = f"{self.key} ({self.name})" if self.name else self.key
        return f"{label}: {self.mode.value}, {who} [{self.confidence.value}] {self.source}"
