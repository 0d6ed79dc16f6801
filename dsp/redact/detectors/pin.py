"""Personal identification numbers: 4 to 12 digits after "PIN" (ISO 9564-1 allows 4-12)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    RunDetector,
    context_score,
    digit_count_in,
    everyday_number,
)
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["PinDetector"]


class PinDetector(RunDetector):
    """4-12 digits near "PIN" or "passcode"."""

    name = "pin"
    entity = "PIN"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        named = context_score(scan, Ctx.PIN)
        return named * (digit_count_in(scan, 4, 12) & ~everyday_number(scan))
