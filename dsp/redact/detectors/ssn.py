"""US Social Security numbers: nine digits, read as a run or in groups of 3-2-4.

An SSN is AAA-GG-SSSS (SSA, "The SSN numbering scheme"). It is an SSN with
"social", "SSN" near it (about 0.9), and so are four digits near those
words; four digits with "the last four" and "social" near them ("the
last four of my social are ...", "... are the last four of my social") at
0.97. Without a keyword, nine digits read in
groups of three, two and four are an SSN at 0.6 (a written
"123-45-6789" too); a bare nine-digit run is not (routing numbers,
ZIP+4 and order numbers are nine digits too).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    RunDetector,
    context_score,
    everyday_number,
)
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["SsnDetector"]


class SsnDetector(RunDetector):
    """Nine digits (or the last four) near "social"/"SSN"; nine in 3-2-4 groups alone."""

    name = "ssn"
    entity = "SSN"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        named = context_score(scan, Ctx.SSN, 10, 8)
        nine = runs.ndigits == 9
        four = (runs.ndigits == 4) & ~everyday_number(scan)
        last_four = four & (named > 0) & scan.near(Ctx.LAST4, 6, 6)
        score = np.maximum(named * (nine | four), 0.97 * last_four)
        return np.maximum(score, 0.6 * runs.groups_324)
