"""Check-digit tests, vectorised over many numbers at once.

- Luhn (ISO/IEC 7812-1 annex B): from the rightmost digit, double every
  second digit, subtract 9 from doubles over 9, and the sum is a multiple of
  10. Card numbers carry it; so do random digit strings one time in ten,
  which is why it labels a card's confidence and never decides redaction.
- ABA routing number (the American Bankers Association's check digit):
  ``3(d1 + d4 + d7) + 7(d2 + d5 + d8) + (d3 + d6 + d9)`` is a multiple of 10.
- IBAN (ISO 13616-1, check by ISO 7064 MOD 97-10): move the first four
  characters to the end, letters to numbers (A = 10 ... Z = 35), and the
  number modulo 97 is 1.

Numbers are ragged: every function takes one flat array of digits and each
number's ``offsets`` and ``lengths`` into it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["aba_valid", "iban_valid", "luhn_valid", "ragged_positions", "segment_sums"]

_LUHN_DOUBLE: Final = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)
_ABA_WEIGHTS: Final = np.array([3, 7, 1, 3, 7, 1, 3, 7, 1], dtype=np.int64)


def segment_sums(
    values: npt.NDArray[np.integer], offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Sum of ``values[offsets[i] : offsets[i] + lengths[i]]`` for every ``i`` (may be empty)."""
    cumulative = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=cumulative[1:])
    return cumulative[offsets + lengths] - cumulative[offsets]


def ragged_positions(
    offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every index ``offsets[i] .. offsets[i] + lengths[i] - 1`` in order, and where each
    number's indices start in that list."""
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum()) if len(lengths) else 0
    return np.repeat(offsets - starts, lengths) + np.arange(total), starts


def luhn_valid(
    digits: npt.NDArray[np.int8], offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Whether each number passes the Luhn check (empty numbers do not)."""
    positions, starts = ragged_positions(offsets, lengths)
    from_right = np.repeat(offsets + lengths - 1, lengths) - positions
    chosen = digits[positions].astype(np.int64)
    values = np.where(from_right & 1, _LUHN_DOUBLE[chosen], chosen)
    return (segment_sums(values, starts, lengths) % 10 == 0) & (lengths > 0)


def aba_valid(
    digits: npt.NDArray[np.int8], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Whether the nine digits at each offset pass the ABA routing check digit."""
    if len(offsets) == 0:
        return np.zeros(0, dtype=np.bool_)
    matrix = digits[offsets[:, None] + np.arange(9)].astype(np.int64)
    return (matrix @ _ABA_WEIGHTS) % 10 == 0


def iban_valid(codes: list[str]) -> npt.NDArray[np.bool_]:
    """Whether each upper-case alphanumeric IBAN passes ISO 7064 MOD 97-10.

    The numbers are laid out right-aligned in one matrix (leading zeros do not
    change a remainder) and reduced column by column: one pass for the batch.
    """
    if not codes:
        return np.zeros(0, dtype=np.bool_)
    rearranged = [code[4:] + code[:4] for code in codes]
    numeric = ["".join(str(int(c, 36)) for c in text) for text in rearranged]
    width = max(len(text) for text in numeric)
    padded = np.frombuffer("".join(text.rjust(width, "0") for text in numeric).encode(), np.uint8)
    matrix = (padded.reshape(len(codes), width) - ord("0")).astype(np.int64)
    remainder = np.zeros(len(codes), dtype=np.int64)
    for column in range(width):
        remainder = (remainder * 10 + matrix[:, column]) % 97
    return remainder == 1
