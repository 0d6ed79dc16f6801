"""Payment card numbers (PAN): 13 to 19 digits, every issuer's range.

ISO/IEC 7812-1 numbers run from 13 to 19 digits; the issuer ranges (BINs)
change (Mastercard's 2-series since 2017), so none is required here. In a
payment context every 13-19 digit number is a card: the Luhn check only
labels the confidence, because a card read together with its expiry or with
a digit misheard fails the check and must still be redacted (PCI DSS v4.0.1
3.3.1 and 3.5.1). Outside payment talk, too, a 13-19 digit number is taken
as a card unless a keyword says it is something else ("order number"): the
recogniser may have lost the very words that made the context ("my card
number is" heard as "we or"), and a card number left in a transcript costs
more than a redacted tracking number. Luhn raises the score there as well.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    NEAR_BEFORE,
    RunDetector,
    closeness,
    digit_count_in,
    payment_context,
)
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["CardDetector"]


class CardDetector(RunDetector):
    """13-19 digits: in payment context always (0.72-0.98: nearer card words and Luhn
    raise it), else unless "order number" or the like is near (0.45, 0.55 with Luhn)."""

    name = "card"
    entity = "CARD"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        length = digit_count_in(scan, 13, 19)
        payment = payment_context(scan)
        named = closeness(scan, Ctx.PAY)
        negative = scan.near(Ctx.NEGATIVE, NEAR_BEFORE, 2)
        score = np.where(named > 0, 0.72 + 0.18 * named, 0.72) + 0.08 * runs.luhn
        score *= length & payment
        alone = length & ~payment & ~negative
        return np.where(alone, 0.45 + 0.1 * runs.luhn, score)
