"""Dates of birth: a date said after "date of birth", "born on", "birthday", "DOB".

A date is a month word with a day and a year ("march third nineteen
eighty five"), a written date ("03/03/1985"), five to eight digits ("oh
three oh three eighty five"), or a year alone after the keyword ("born in
nineteen eighty").
Only near a birth keyword: other dates are
not personal data on their own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.redact.detectors.base import RunDetector, context_score, digit_count_in
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Flag, Kind

__all__ = ["DateOfBirthDetector"]


class DateOfBirthDetector(RunDetector):
    """A date or a year near a birth keyword."""

    name = "date_of_birth"
    entity = "DOB"

    def score(self, scan: Scan) -> npt.NDArray[np.float64]:
        runs = scan.runs
        dated = runs.has_kind(Kind.MONTH) | runs.has_flag(Flag.DATE)
        year = (runs.ndigits == 4) & ((runs.lead2 == 19) | (runs.lead2 == 20))
        year &= scan.distances(Ctx.DOB)[0] <= 10  # "born in 1980", not "since 2019. born on"
        date = digit_count_in(scan, 5, 8) | (dated & digit_count_in(scan, 3, 8)) | year
        return context_score(scan, Ctx.DOB, 10, 5) * date
