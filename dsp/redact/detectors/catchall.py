"""The fail-closed catch-all: any number of three or more digits in payment or banking talk.

A number the typed detectors did not claim (a card read short, a CVV said
without its name, a reference read between the card and the expiry) is
still redacted when it lies inside a payment-context window or next to a
sensitive keyword. Amounts, times of day and years ("since twenty
nineteen") are left alone. Score 0.3: the
lowest, so any typed detector wins.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import (
    NEAR_AFTER,
    NEAR_BEFORE,
    SENSITIVE,
    RunDetector,
    everyday_number,
    payment_context,
)
from dsp.redact.scan import Scan

__all__ = ["CatchAllDetector"]


class CatchAllDetector(RunDetector):
    """Three or more digits inside payment talk or beside a sensitive keyword (0.3)."""

    name = "payment_digits"
    entity = "DIGITS"
    catch_all = True

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        inside = payment_context(scan) | scan.near(SENSITIVE, NEAR_BEFORE, NEAR_AFTER)
        keep = inside & ~everyday_number(scan)
        return 0.3 * keep.astype(np.float64)
