"""Dates of birth: a date said after "date of birth", "born on", "birthday", "DOB".

A date is three to eight digits: a month word with a day and a year
("march third nineteen eighty five"), or numbers ("oh three oh three
eighty five", "03/03/1985"). Only near a birth keyword: other dates are
not personal data on their own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import RunDetector, context_score, digit_count_in
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx

__all__ = ["DateOfBirthDetector"]


class DateOfBirthDetector(RunDetector):
    """3-8 digits near a birth keyword."""

    name = "date_of_birth"
    entity = "DOB"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        return context_score(scan, Ctx.DOB, 10, 5) * digit_count_in(scan, 3, 8)
