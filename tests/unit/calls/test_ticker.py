"""The capture ticker keeps a fixed rate: late ticks do not push the later ones back."""

from __future__ import annotations

import pytest

from gateway.calls.consent_service import TICK_S, next_tick_due


def test_the_next_tick_is_one_period_after_the_last_was_due_even_when_it_ran_late() -> None:
    assert next_tick_due(10.0, 10.0) == pytest.approx(10.0 + TICK_S)
    late = 10.0 + TICK_S * 0.6  # the last tick ran 60 % of a period late
    assert next_tick_due(10.0, late) == pytest.approx(10.0 + TICK_S)


def test_ticks_missed_while_the_loop_was_busy_are_skipped_not_run_in_a_burst() -> None:
    busy_until = 10.0 + 3.5 * TICK_S
    due = next_tick_due(10.0, busy_until)
    assert due == busy_until  # at once, once
    assert next_tick_due(due, busy_until) == pytest.approx(busy_until + TICK_S)
