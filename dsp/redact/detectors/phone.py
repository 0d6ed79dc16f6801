"""Telephone numbers: NANP (10 digits, or 11 with the leading 1) and E.164 ("plus ...").

NANP numbers are NPA-NXX-XXXX: the area code and the exchange each start
with 2-9 (ATIS-0300051). E.164 numbers are at most 15 digits after the
"+" (ITU-T E.164 section 6). A valid number near "phone", "call", "reach"
is a phone; seven or ten digits there that are not valid (a local number,
a digit misheard) a little less surely; a valid NANP or E.164 number
alone at 0.5.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import RunDetector, context_score
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Flag

__all__ = ["PhoneDetector"]


class PhoneDetector(RunDetector):
    """NANP or E.164 numbers, surer near a phone keyword."""

    name = "phone"
    entity = "PHONE"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        ndigits = runs.ndigits
        if not len(runs):
            return np.zeros(0)
        lead5 = runs.lead(5)  # wide enough for an 11-digit number's 1 + NPA + N
        ten = (ndigits == 10) & (lead5 // 10000 >= 2) & ((lead5 // 10) % 10 >= 2)
        eleven = (ndigits == 11) & (lead5 // 10000 == 1) & ((lead5 // 1000) % 10 >= 2)
        eleven &= lead5 % 10 >= 2
        plus = runs.has_flag(Flag.PLUS)
        e164 = plus & (ndigits >= 8) & (ndigits <= 15)
        valid = ten | eleven | e164
        named = context_score(scan, Ctx.PHONE, 10, 5)
        local = (ndigits == 7) | (ndigits == 10) | (ndigits == 11)
        score = np.where(valid, named + 0.03, np.where(local, named - 0.1, 0.0))
        return np.maximum(np.maximum(score, 0.0), 0.5 * valid)
