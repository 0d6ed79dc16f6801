"""One key press counted once across the RFC 4733, INFO and in-band DTMF paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent.digits import DTMF_METHODS, DigitMerger, KeyPress


def test_rfc4733_then_inband_60_ms_later_is_one_press() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "1", "rfc4733", at=10.000) is True
    assert merger.accept("caller", "1", "inband", at=10.060) is False
    assert merger.presses == [KeyPress("caller", "1", "rfc4733", 10.000)]


def test_the_second_path_may_report_first() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "9", "inband", at=5.00) is True
    assert merger.accept("caller", "9", "rfc4733", at=4.98) is False
    assert merger.accept("caller", "9", "info", at=5.20) is False
    assert len(merger.presses) == 1


def test_the_same_method_twice_is_two_presses() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "1", "rfc4733", at=1.0) is True
    assert merger.accept("caller", "1", "rfc4733", at=1.2) is True
    assert [press.at for press in merger.presses] == [1.0, 1.2]


def test_different_parties_are_two_presses() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "1", "rfc4733", at=1.0) is True
    assert merger.accept("callee", "1", "inband", at=1.05) is True


def test_different_digits_are_two_presses() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "1", "rfc4733", at=1.0) is True
    assert merger.accept("caller", "2", "inband", at=1.05) is True


def test_outside_the_window_is_two_presses() -> None:
    merger = DigitMerger(window_s=0.5)
    assert merger.accept("caller", "1", "rfc4733", at=1.0) is True
    assert merger.accept("caller", "1", "inband", at=1.51) is True
    assert merger.accept("caller", "1", "info", at=1.50) is False  # within 0.5 of both


def test_the_window_edge_is_inside() -> None:
    merger = DigitMerger(window_s=0.25)
    assert merger.accept("caller", "5", "info", at=2.0) is True
    assert merger.accept("caller", "5", "rfc4733", at=2.25) is False


def test_info_and_rfc4733_and_inband_of_one_press() -> None:
    merger = DigitMerger()
    assert merger.accept("callee", "#", "info", at=3.00) is True
    assert merger.accept("callee", "#", "rfc4733", at=3.02) is False
    assert merger.accept("callee", "#", "inband", at=3.07) is False
    assert len(merger.presses) == 1


def test_a_press_absorbs_one_report_per_method() -> None:
    merger = DigitMerger()
    assert merger.accept("caller", "3", "rfc4733", at=1.00) is True
    assert merger.accept("caller", "3", "inband", at=1.05) is False
    # in-band dedupes its own presses: a second in-band report is a second press
    assert merger.accept("caller", "3", "inband", at=1.30) is True


def test_quick_presses_on_two_paths_pair_up() -> None:
    merger = DigitMerger()
    outcomes = [
        merger.accept("caller", "7", "rfc4733", at=1.00),
        merger.accept("caller", "7", "rfc4733", at=1.20),
        merger.accept("caller", "7", "inband", at=1.06),
        merger.accept("caller", "7", "inband", at=1.26),
    ]
    assert outcomes == [True, True, False, False]
    assert len(merger.presses) == 2


def test_a_repeat_pairs_with_the_closest_press() -> None:
    merger = DigitMerger(window_s=0.5)
    merger.accept("caller", "7", "rfc4733", at=1.00)
    merger.accept("caller", "7", "rfc4733", at=1.40)
    assert merger.accept("caller", "7", "inband", at=1.02) is False  # the 1.00 press
    # the 1.40 press is still free to take an in-band report
    assert merger.accept("caller", "7", "inband", at=1.85) is False
    assert merger.accept("caller", "7", "inband", at=1.86) is True
    assert len(merger.presses) == 3


def test_a_repeat_pairs_with_the_closest_press_not_the_oldest() -> None:
    merger = DigitMerger(window_s=0.5)
    merger.accept("caller", "7", "rfc4733", at=1.00)
    merger.accept("caller", "7", "rfc4733", at=1.40)
    assert merger.accept("caller", "7", "inband", at=1.38) is False  # the 1.40 press
    assert merger.accept("caller", "7", "inband", at=0.60) is False  # the 1.00 press
    assert len(merger.presses) == 2


def test_history_is_bounded() -> None:
    merger = DigitMerger(history=64)
    for index in range(200):
        assert merger.accept("caller", "0", "rfc4733", at=float(index))
    assert len(merger.presses) == 64
    assert merger.presses[0].at == 136.0
    assert merger.presses[-1].at == 199.0


def test_forgotten_presses_absorb_nothing() -> None:
    merger = DigitMerger(history=1)
    assert merger.accept("caller", "1", "rfc4733", at=1.0) is True
    assert merger.accept("callee", "2", "rfc4733", at=1.1) is True
    assert merger.accept("caller", "1", "inband", at=1.2) is True


@pytest.mark.parametrize(
    ("digit", "method"), [("1", "sms"), ("1", "RFC4733"), ("E", "info"), ("12", "info")]
)
def test_unknown_methods_and_digits_are_refused(digit: str, method: str) -> None:
    with pytest.raises(ValueError):
        DigitMerger().accept("caller", digit, method, at=0.0)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="window_s"):
        DigitMerger(window_s=0)
    with pytest.raises(ValueError, match="history"):
        DigitMerger(history=0)


reports = st.lists(
    st.tuples(
        st.sampled_from(["caller", "callee"]),
        st.sampled_from("19#"),
        st.sampled_from(sorted(DTMF_METHODS)),
        st.floats(0.0, 5.0, allow_nan=False),
    ),
    max_size=40,
)


@given(reports)
def test_presses_are_at_least_the_most_any_one_method_reported(
    report_list: list[tuple[str, str, str, float]],
) -> None:
    merger = DigitMerger(history=1000)
    accepted = sum(merger.accept(*report) for report in report_list)
    assert accepted == len(merger.presses)
    for party in ("caller", "callee"):
        for digit in "19#":
            mine = [r for r in report_list if r[0] == party and r[1] == digit]
            most_by_one_method = max(
                (sum(1 for r in mine if r[2] == method) for method in DTMF_METHODS), default=0
            )
            merged = [p for p in merger.presses if p.party == party and p.digit == digit]
            assert most_by_one_method <= len(merged) <= len(mine)
