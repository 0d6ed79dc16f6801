"""What a detector is, and the context tests detectors share.

A detector finds one entity type and says how sure it is, as Presidio's
recognizers do. There are two shapes:

- a :class:`RunDetector` scores every number of a :class:`~dsp.redact.scan.Scan`
  at once (an array, 0 where the number is not its entity); the registry
  gives each number to the detector with the highest score;
- a :class:`SpanDetector` finds spans of its own (e-mail addresses, IBANs:
  letters as well as digits); a span it finds wins over the numbers inside.

Context is the keywords within a window on both sides of a number: up to
:data:`NEAR_BEFORE` tokens before its first word or :data:`NEAR_AFTER`
after its last ("my social is ..." and "... is my social"). Payment
context is wider (:data:`PAYMENT_BEFORE`, :data:`PAYMENT_AFTER`): card
talk spans a few sentences, and the catch-all redacts every number inside it.
A keyword before a number is read as about it more surely than one after it
(after, it is often about the next number), and one in the same segment
more surely than one in another (:meth:`~dsp.redact.scan.Scan.effective`).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Flag

__all__ = [
    "NEAR_AFTER",
    "NEAR_BEFORE",
    "PAYMENT_AFTER",
    "PAYMENT_BEFORE",
    "SENSITIVE",
    "Candidates",
    "Detector",
    "RunDetector",
    "SpanDetector",
    "calendar_year",
    "clock_time",
    "closeness",
    "context_score",
    "digit_count_in",
    "everyday_number",
    "money",
    "negated",
    "payment_context",
    "shared",
]

NEAR_BEFORE: Final = 8
NEAR_AFTER: Final = 5
PAYMENT_BEFORE: Final = 40
PAYMENT_AFTER: Final = 15
PAYMENT: Final = Ctx.PAY | Ctx.CVV | Ctx.EXPIRY
_FADE: Final = 20.0  # effective distance at which closeness would reach 0
SENSITIVE: Final = (
    Ctx.SSN | Ctx.ACCOUNT | Ctx.ROUTING | Ctx.PIN | Ctx.CVV | Ctx.IBAN | Ctx.BANK
) | (Ctx.PHONE | Ctx.DOB)


@dataclass(frozen=True)
class Candidates:
    """Spans a :class:`SpanDetector` found: token ranges ``first..last`` (inclusive)."""

    first: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.first)


class Detector(ABC):
    """A detector of one entity type."""

    name: ClassVar[str]
    entity: ClassVar[str]
    catch_all: ClassVar[bool] = False
    """Whether this detector only keeps what no typed detector claims (fails closed)."""


class RunDetector(Detector):
    """Scores every number found by the scan."""

    @abstractmethod
    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        """One score per run of ``scan.runs`` (0: not this entity)."""


class SpanDetector(Detector):
    """Finds spans of its own in the batch."""

    @abstractmethod
    def find(self, scan: Scan) -> Candidates:
        """Spans of this entity in ``scan.batch``."""


def closeness(
    scan: Scan, ctx: Ctx, before: int = NEAR_BEFORE, after: int = NEAR_AFTER
) -> npt.NDArray[np.float64]:
    """How strongly a keyword of ``ctx`` points at each number: 0 when none is within
    ``before`` tokens before it or ``after`` after it, else from 1 (right next to it)
    down to 0.05 with the :meth:`~dsp.redact.scan.Scan.effective` distance."""
    inside = scan.near(ctx, before, after)
    strength = np.clip(1.0 - scan.effective(ctx) / _FADE, 0.05, 1.0)
    return np.where(inside, strength, 0.0)


def context_score(
    scan: Scan, ctx: Ctx, before: int = NEAR_BEFORE, after: int = NEAR_AFTER
) -> npt.NDArray[np.float64]:
    """The score of a number named by a keyword of ``ctx``: 0.7 plus up to 0.25 for
    closeness; 0 without the keyword. Typed detectors compete on this."""
    near = closeness(scan, ctx, before, after)
    return np.where(near > 0, 0.7 + 0.25 * near, 0.0)


def digit_count_in(scan: Scan, low: int, high: int) -> npt.NDArray[np.bool_]:
    """Whether each number has ``low`` to ``high`` digits."""
    ndigits = scan.runs.ndigits
    return (ndigits >= low) & (ndigits <= high)


def shared(
    feature: Callable[[Scan], npt.NDArray[np.bool_]],
) -> Callable[[Scan], npt.NDArray[np.bool_]]:
    """A feature of a scan's runs that several detectors read: computed once per scan."""
    name = feature.__name__

    @functools.wraps(feature)
    def cached(scan: Scan) -> npt.NDArray[np.bool_]:
        found = scan.cache.get(name)
        if found is None:
            found = feature(scan)
            scan.cache[name] = found
        return found

    return cached


@shared
def payment_context(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers inside a payment-context window (card, CVV or expiry talk nearby)."""
    return scan.near(PAYMENT, PAYMENT_BEFORE, PAYMENT_AFTER)


@shared
def money(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers that are amounts: "forty nine ninety nine dollars", "the total is ...",
    "$49.99"."""
    before, _ = scan.distances(Ctx.MONEY_BEFORE)
    _, after = scan.distances(Ctx.MONEY_AFTER)
    runs = scan.runs
    return ((before <= 3) | (after <= 2) | runs.has_flag(Flag.MONEY)) & (runs.ndigits <= 8)


@shared
def negated(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers a negative keyword owns: "order", "tracking", "confirmation", "room" is
    nearer to them (by effective distance) than any payment or sensitive keyword."""
    negative = scan.near(Ctx.NEGATIVE, NEAR_BEFORE, 3)
    return negative & (scan.effective(Ctx.NEGATIVE) < scan.effective(PAYMENT | SENSITIVE))


@shared
def calendar_year(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers that are years: 19xx or 20xx after "since", "in", "year"."""
    runs = scan.runs
    before, _ = scan.distances(Ctx.YEAR_BEFORE)
    century = (runs.lead2 == 19) | (runs.lead2 == 20)
    return (runs.ndigits == 4) & century & (before <= 2)


@shared
def everyday_number(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers of everyday talk, not secrets: amounts, times of day, years."""
    return money(scan) | clock_time(scan) | calendar_year(scan)


def clock_time(scan: Scan) -> npt.NDArray[np.bool_]:
    """Numbers that are times of day: "at three thirty", "ten fifteen pm", "3:30"."""
    runs = scan.runs
    before, _ = scan.distances(Ctx.TIME_BEFORE)
    _, after = scan.distances(Ctx.TIME_AFTER)
    three = (runs.ndigits == 3) & (runs.lead2 // 10 >= 1) & (runs.tail2 < 60)
    four = (runs.ndigits == 4) & (runs.lead2 >= 1) & (runs.lead2 <= 12) & (runs.tail2 < 60)
    plausible = three | four
    return (plausible & ((before <= 2) | (after <= 2))) | runs.has_flag(Flag.TIME)
