"""Duration and billable seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.store.durations import call_durations
from tests.unit.store.records import T0


def test_answered_call_bills_from_the_answer() -> None:
    duration, billable = call_durations(
        T0, T0 + timedelta(seconds=4.5), T0 + timedelta(seconds=70.25)
    )
    assert duration == pytest.approx(70.25)
    assert billable == pytest.approx(65.75)


def test_unanswered_call_bills_nothing() -> None:
    assert call_durations(T0, None, T0 + timedelta(seconds=12)) == (12.0, 0.0)


def test_clock_stepping_back_gives_zero_not_negative() -> None:
    assert call_durations(T0, T0, T0 - timedelta(seconds=1)) == (0.0, 0.0)
