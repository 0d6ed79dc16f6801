"""Sample-rate conversion by a rational factor with a polyphase windowed-sinc filter.

Converting from ``from_rate`` to ``to_rate`` is upsampling by ``L`` and
downsampling by ``M`` with ``L/M = to_rate/from_rate`` in lowest terms
(``g = gcd(from_rate, to_rate)``, ``L = to_rate/g``, ``M = from_rate/g``),
with one low-pass filter at the upsampled rate doing both jobs: removing the
images of upsampling and keeping out what would alias on downsampling
(Crochiere and Rabiner, "Interpolation and Decimation of Digital Signals: A
Tutorial Review", Proc. IEEE 69(3), 1981, section IV).

The filter is an ideal low-pass (a sinc) shaped by a Kaiser window (Kaiser,
"Nonrecursive digital filter design using the I0-sinh window function",
1974). Its band edges are set for telephony: flat up to 85 % of the lower
rate's Nyquist frequency (3.4 kHz at 8 kHz, the top of the telephone band),
at least 80 dB down from that Nyquist frequency on, so nothing folds back
into the passband.

Each output sample needs only every ``L``-th filter tap (one polyphase
branch); the outputs that share a branch are evenly spaced, ``L`` apart,
and read input windows ``M`` apart, so every branch is one matrix-vector
product over strided windows of the input, done in blocks to bound memory.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["PASSBAND_EDGE", "STOPBAND_ATTENUATION_DB", "ResampleError", "resample"]

PASSBAND_EDGE: Final = 0.85
"""End of the flat band as a fraction of the lower rate's Nyquist frequency."""

STOPBAND_ATTENUATION_DB: Final = 80.0
"""Attenuation the Kaiser design aims for from the lower rate's Nyquist frequency up."""

_BLOCK_ELEMENTS: Final = 1 << 20
"""Upper bound on window elements gathered at once (8 MiB of float64)."""


class ResampleError(ValueError):
    """Arguments the resampler cannot work with (the message says why)."""


def _kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window shape for a stopband ``attenuation_db`` down (Kaiser 1974, eq. 11)."""
    if attenuation_db > 50.0:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db >= 21.0:
        return 0.5842 * (attenuation_db - 21.0) ** 0.4 + 0.07886 * (attenuation_db - 21.0)
    return 0.0


@lru_cache(maxsize=16)
def _branches(up: int, down: int) -> tuple[npt.NDArray[np.float64], int]:
    """The polyphase branches of the filter for ``up``/``down``, shape (up, taps), and its delay.

    Row ``r`` holds taps ``r, r + up, r + 2 up, ...`` of the prototype,
    reversed so that a window of input in time order dots with it.
    """
    step = max(up, down)  # upsampled samples per period of the lower rate
    transition = (1.0 - PASSBAND_EDGE) / 2.0  # of the lower rate, on each side of the cutoff
    cutoff = (1.0 - transition) / (2.0 * step)  # cycles per upsampled sample
    # Kaiser 1974 eq. 12: length for the attenuation over the transition width (in upsampled
    # cycles per sample), rounded up to whole periods of the lower rate on each side.
    width = 2.0 * math.pi * (1.0 - PASSBAND_EDGE) / (2.0 * step)
    length = (STOPBAND_ATTENUATION_DB - 7.95) / (2.285 * width) + 1.0
    half = math.ceil(length / (2.0 * step)) * step
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    prototype = 2.0 * cutoff * np.sinc(2.0 * cutoff * offsets)
    prototype *= np.kaiser(len(offsets), _kaiser_beta(STOPBAND_ATTENUATION_DB))
    prototype *= up / prototype.sum()  # unity gain at DC after zero-stuffing by ``up``
    taps = math.ceil(len(prototype) / up)
    padded = np.zeros(taps * up, dtype=np.float64)
    padded[: len(prototype)] = prototype
    branches = np.ascontiguousarray(padded.reshape(taps, up).T[:, ::-1])
    branches.setflags(write=False)
    return branches, half


def _check_rate(name: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise ResampleError(f"{name} must be a positive integer in Hz, got {rate!r}")


def resample(
    x: npt.NDArray[np.float64] | npt.NDArray[np.int16], from_rate: int, to_rate: int
) -> npt.NDArray[np.float64]:
    """``x`` (1-D, sampled at ``from_rate`` Hz) sampled at ``to_rate`` Hz, as float64.

    The output has ``ceil(len(x) * to_rate / from_rate)`` samples on the
    input's scale, aligned with it (the filter's delay is compensated).
    Equal rates return a float64 copy of ``x``.
    """
    _check_rate("from_rate", from_rate)
    _check_rate("to_rate", to_rate)
    signal = np.asarray(x)
    if signal.ndim != 1:
        raise ResampleError(f"resample takes a 1-D array, got shape {signal.shape}")
    signal = signal.astype(np.float64)
    if from_rate == to_rate or len(signal) == 0:
        return signal if from_rate == to_rate else np.zeros(0, dtype=np.float64)
    common = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // common, int(from_rate) // common
    branches, delay = _branches(up, down)
    taps = branches.shape[1]
    count = -(-len(signal) * up // down)
    # Output k reads input samples newest-first from n(k) = (k*down + delay) // up with
    # branch (k*down + delay) % up; the window ending at n(k) starts taps - 1 earlier.
    newest = ((count - 1) * down + delay) // up
    right = max(0, newest + 1 - len(signal))
    padded = np.concatenate((np.zeros(taps - 1), signal, np.zeros(right)))
    windows = sliding_window_view(padded, taps)  # windows[n] ends at input n
    out = np.empty(count, dtype=np.float64)
    inverse = pow(down, -1, up) if up > 1 else 0
    block = max(1, _BLOCK_ELEMENTS // taps)
    for branch in range(up):
        first = ((branch - delay) * inverse) % up  # first output using this branch
        if first >= count:
            continue
        outputs = range(first, count, up)
        start = (first * down + delay) // up
        coefficients = branches[branch]
        for offset in range(0, len(outputs), block):
            size = min(block, len(outputs) - offset)
            begin = start + offset * down
            chunk = windows[begin : begin + (size - 1) * down + 1 : down]
            out[first + offset * up : first + (offset + size) * up : up] = chunk @ coefficients
    return out
