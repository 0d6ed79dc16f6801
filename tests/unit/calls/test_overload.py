"""Overload control's decisions (gateway.calls.overload), sample by sample."""

from __future__ import annotations

import pytest

from gateway.calls.overload import AdmissionControl, OverloadLimits

LIMITS = OverloadLimits(
    target_lag_s=0.1, sustain_s=0.1, rise_per_s=2.5, fall_per_s=0.5, interval_s=0.02
)


def test_a_late_invite_is_refused_only_within_a_run_of_late_messages() -> None:
    control = AdmissionControl(LIMITS)  # target 0.1 s, sustain 0.1 s
    assert control.admit(0.15, late_for_s=0.0), "a lone late message: a stall, not overload"
    assert control.admit(0.15, late_for_s=0.05)
    assert not control.admit(0.15, late_for_s=0.1)
    assert control.admit(0.05, late_for_s=0.0), "on time again"
    assert control.admit()
    assert (control.admitted, control.shed) == (4, 1)
    no_sustain = AdmissionControl(OverloadLimits(target_lag_s=0.1, sustain_s=0))
    assert not no_sustain.admit(0.15)


def test_one_late_sample_changes_nothing_a_sustained_lag_sheds() -> None:
    control = AdmissionControl(LIMITS)
    control.observe(0.3)  # one collector pause
    assert control.shed_share == 0.0
    control.observe(0.01)
    control.observe(0.3)
    assert control.shed_share == 0.0, "the streak restarts after a sample under the target"
    control.observe(0.3)
    # the second late sample in a row covers interval + lag = 0.32 s at 2.5/s
    assert control.shed_share == pytest.approx(0.8)
    control.observe(0.3)
    assert control.shed_share == 1.0
    assert control.max_lag_s == 0.3


def test_the_share_falls_back_slower_than_it_rose() -> None:
    control = AdmissionControl(LIMITS)
    for _ in range(3):
        control.observe(0.2)
    assert control.shed_share == 1.0
    control.observe(0.0)
    assert control.shed_share == pytest.approx(1.0 - 0.5 * 0.02)
    samples = 0
    while control.shed_share > 0.0:
        control.observe(0.0)
        samples += 1
    assert samples == pytest.approx(100, abs=1)  # 2 s of 20 ms samples


def test_admission_at_a_share_refuses_exactly_that_share_in_order() -> None:
    control = AdmissionControl(LIMITS)
    control.shed_share = 0.25
    decisions = [control.admit() for _ in range(400)]
    assert decisions.count(False) == 100
    # evenly spread: never two refusals in a row at a quarter
    assert all(decisions[i] or decisions[i + 1] for i in range(len(decisions) - 1))
    control.shed_share = 1.0
    assert not any(control.admit() for _ in range(10))


def test_a_target_of_zero_turns_shedding_off() -> None:
    control = AdmissionControl(OverloadLimits(target_lag_s=0))
    for _ in range(10):
        control.observe(5.0)
    assert control.shed_share == 0.0
    assert control.admit(10.0)
    assert control.last_lag_s == 5.0


@pytest.mark.parametrize(
    "fields",
    [
        {"target_lag_s": -1},
        {"rise_per_s": 0},
        {"fall_per_s": -0.5},
        {"interval_s": 0},
        {"sustain": 0},
        {"sustain_s": -0.1},
        {"retry_after_s": -1},
    ],
)
def test_bad_limits_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OverloadLimits(**fields)  # type: ignore[arg-type]
