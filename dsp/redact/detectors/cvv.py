"""Card verification codes (CVV2, CVC2, CID): 3 or 4 digits said after their name.

PCI DSS v4.0.1 3.3.1.2: a card verification code must not be kept after
authorization, in any form, recordings included (PCI SSC FAQ 1210). The
code is read after "security code", "CVV", "CVC", "the three digits on the
back" (or said before "... is the security code"); "code" alone counts in
payment talk. Amounts, times of day and dates ("10/28", "march twenty
eight") are not codes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    RunDetector,
    context_score,
    digit_count_in,
    everyday_number,
    payment_context,
)
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Flag, Kind

__all__ = ["CvvDetector"]


class CvvDetector(RunDetector):
    """3-4 digits near a CVV keyword, or near "code" in payment talk (a little lower)."""

    name = "cvv"
    entity = "CVV"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        named = context_score(scan, Ctx.CVV)
        code = (context_score(scan, Ctx.CODE) - 0.05) * payment_context(scan)
        score = np.maximum(named, code)
        runs = scan.runs
        dated = runs.has_kind(Kind.MONTH) | runs.has_flag(Flag.DATE)
        return score * (digit_count_in(scan, 3, 4) & ~dated & ~everyday_number(scan))
