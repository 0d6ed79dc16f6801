"""Vectorised check digits against plain per-number references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.redact.checksums import aba_valid, iban_valid, luhn_valid, segment_sums
from tests.support.spoken_corpus import luhn_check_digit


def luhn_reference(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == number[-1]


def ragged(numbers: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digits = np.array([int(c) for c in "".join(numbers)], dtype=np.int8)
    lengths = np.array([len(n) for n in numbers], dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return digits, offsets, lengths


def test_known_numbers() -> None:
    digits, offsets, lengths = ragged(["4111111111111111", "4111111111111112", "79927398713"])
    assert luhn_valid(digits, offsets, lengths).tolist() == [True, False, True]
    digits, offsets, _ = ragged(["011000015", "011000016", "121000358"])
    assert aba_valid(digits, offsets).tolist() == [True, False, True]
    codes = ["GB82WEST12345698765432", "GB83WEST12345698765432", "DE89370400440532013000"]
    assert iban_valid(codes).tolist() == [True, False, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("0123456789", min_size=1, max_size=25), min_size=1, max_size=30))
def test_luhn_matches_the_reference(numbers: list[str]) -> None:
    digits, offsets, lengths = ragged(numbers)
    assert luhn_valid(digits, offsets, lengths).tolist() == [luhn_reference(n) for n in numbers]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("0123456789", min_size=9, max_size=9), min_size=1, max_size=30))
def test_aba_matches_the_reference(numbers: list[str]) -> None:
    digits, offsets, _ = ragged(numbers)
    weights = [3, 7, 1] * 3
    expected = [sum(int(c) * w for c, w in zip(n, weights, strict=True)) % 10 == 0 for n in numbers]
    assert aba_valid(digits, offsets).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GB", "DE", "FR", "NL"]),
            st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=10, max_size=30),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_iban_matches_python_integers(parts: list[tuple[str, str]]) -> None:
    codes = []
    for country, body in parts:
        check = 98 - int("".join(str(int(c, 36)) for c in body + country + "00")) % 97
        codes.append(f"{country}{check:02d}{body}")
    assert iban_valid(codes).all()
    broken = [code[:2] + f"{(int(code[2:4]) + 1) % 100:02d}" + code[4:] for code in codes]
    assert not iban_valid(broken).any()


def test_segment_sums_allow_empty_segments() -> None:
    values = np.arange(10)
    sums = segment_sums(values, np.array([0, 3, 3, 9]), np.array([3, 0, 6, 1]))
    assert sums.tolist() == [3, 0, 3 + 4 + 5 + 6 + 7 + 8, 9]
