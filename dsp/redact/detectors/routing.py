"""ABA routing transit numbers: nine digits whose ABA check digit holds.

A routing number is nine digits; ``3(d1+d4+d7) + 7(d2+d5+d8) + (d3+d6+d9)``
is a multiple of ten (see :mod:`dsp.redact.checksums`). With "routing" or
"ABA" near it it is one, surer when the check passes (a number that fails
it may be a digit misheard, and is still redacted); with only
"account"/"bank" near it, the check must pass (0.7).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import RunDetector, context_score
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["RoutingDetector"]


class RoutingDetector(RunDetector):
    """Nine digits near "routing" (surer with the ABA check), or passing it near "bank"."""

    name = "aba_routing"
    entity = "ROUTING"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        named = context_score(scan, Ctx.ROUTING, 10, 5)
        score = np.where(runs.aba, named + 0.04, named - 0.1)
        banking = scan.near(Ctx.ACCOUNT | Ctx.BANK, 10, 5)
        score = np.maximum(score, np.where(banking & runs.aba, 0.7, 0.0))
        return np.maximum(score, 0.0) * (runs.ndigits == 9)
