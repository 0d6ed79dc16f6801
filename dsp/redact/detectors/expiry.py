"""Card expiry dates near card talk: "oh nine twenty seven", "09/27", "september twenty seven".

The date on a card is a month and a year: MMYY (four digits, "nine twenty
seven" drops the month's leading zero: three), or MMYYYY with a 20xx year;
the year is 15 to 49 (cards run about five years).
It is an expiry near "expiry", "expires", "valid" (about 0.9), or when it
is a written or spoken month and year inside payment talk (0.72).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    RunDetector,
    clock_time,
    context_score,
    money,
    payment_context,
)
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Flag, Kind

__all__ = ["ExpiryDetector"]

_FIRST_YEAR: Final = 15  # two-digit years a card read now may show
_LAST_YEAR: Final = 49


class ExpiryDetector(RunDetector):
    """A month and year: near an expiry keyword, or written as a date in payment talk."""

    name = "expiry"
    entity = "EXPIRY"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        ndigits = runs.ndigits
        month = runs.lead2
        year = runs.tail2
        plausible = (year >= _FIRST_YEAR) & (year <= _LAST_YEAR)
        valid = (ndigits == 3) & (month >= 10)  # "nine twenty seven": M YY, M 1-9
        valid |= (ndigits == 4) & (month >= 1) & (month <= 12)
        year_20 = (runs.lead(4) % 100 == 20) if len(runs) else np.zeros(0, np.bool_)
        valid |= (ndigits == 6) & (month >= 1) & (month <= 12) & year_20
        valid &= plausible
        dated = runs.has_kind(Kind.MONTH) | runs.has_flag(Flag.DATE)
        named = context_score(scan, Ctx.EXPIRY, 8, 4)
        score = np.maximum(named, 0.72 * (dated & payment_context(scan)))
        return score * (valid & ~money(scan) & ~clock_time(scan))
