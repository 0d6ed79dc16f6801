"""Bank account numbers: 8 to 17 digits said with "account", "checking", "savings".

US account numbers run from about 8 to 17 digits (the length Presidio's
US bank recognizer and the ACH record format allow). A number that long
near an account keyword is one (about 0.9); near only "bank" or "wire", 0.6.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import RunDetector, context_score, digit_count_in, money
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["BankAccountDetector"]


class BankAccountDetector(RunDetector):
    """8-17 digits near "account" or near "bank" (0.6)."""

    name = "bank_account"
    entity = "BANK_ACCOUNT"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        named = context_score(scan, Ctx.ACCOUNT, 10, 5)
        score = np.maximum(named, 0.6 * scan.near(Ctx.BANK, 10, 5))
        return score * (digit_count_in(scan, 8, 17) & ~money(scan))
