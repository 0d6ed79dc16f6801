"""How long a call lasted and how much of it is billable."""

from __future__ import annotations

from datetime import datetime


def call_durations(
    started_at: datetime, answered_at: datetime | None, ended_at: datetime
) -> tuple[float, float]:
    """``(duration_s, billable_s)``: end minus start, and end minus answer (0 if unanswered).

    Billing starts at the 2xx to the INVITE (RFC 3261 13.2.2.4), so an
    unanswered call bills nothing. A clock that stepped backwards yields 0,
    never a negative duration.
    """
    duration_s = max(0.0, (ended_at - started_at).total_seconds())
    if answered_at is None:
        return duration_s, 0.0
    return duration_s, max(0.0, (ended_at - answered_at).total_seconds())
