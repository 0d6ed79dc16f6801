"""Tone generation: test tones, notice beeps, DTMF digits, as int16 samples.

Levels are in dBFS for a sine: 0 dBFS is a sine whose peak reaches full
scale (32,767), the AES17 convention, so a sine at L dBFS has peak amplitude
32,767 x 10^(L/20) and RMS 3.01 dB lower. A dual tone's level is per
component. Samples are rounded to the nearest integer; a level whose sum of
peaks would pass full scale is refused rather than clipped.

DTMF frequencies are those of ITU-T Q.23: rows (low group) 697,
770, 852, 941 Hz; columns (high group) 1209, 1336, 1477, 1633 Hz.

Optional raised-cosine (Hann) ramps shape a tone's onset and end so the
tone starts and stops without a click.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DTMF_COLUMN_HZ",
    "DTMF_DIGITS",
    "DTMF_FREQUENCIES",
    "DTMF_KEYPAD",
    "DTMF_ROW_HZ",
    "FULL_SCALE",
    "ToneError",
    "beep_train",
    "dtmf_sequence",
    "dtmf_tone",
    "dual_tone",
    "silence",
    "tone",
]

FULL_SCALE: Final = 32767
"""Peak amplitude of a 0 dBFS sine in int16 samples."""

DTMF_ROW_HZ: Final = (697.0, 770.0, 852.0, 941.0)
"""Low-group (row) frequencies, ITU-T Q.23."""

DTMF_COLUMN_HZ: Final = (1209.0, 1336.0, 1477.0, 1633.0)
"""High-group (column) frequencies, ITU-T Q.23."""

DTMF_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")
"""The keypad by row (low group) then column (high group), as ITU-T Q.23 lays it out."""

DTMF_DIGITS: Final = "".join(DTMF_KEYPAD)
"""The sixteen DTMF digits in keypad order."""

DTMF_FREQUENCIES: Final[dict[str, tuple[float, float]]] = {
    digit: (DTMF_ROW_HZ[row], DTMF_COLUMN_HZ[column])
    for row, keys in enumerate(DTMF_KEYPAD)
    for column, digit in enumerate(keys)
}
"""Each digit's (low, high) frequency pair in Hz."""


class ToneError(ValueError):
    """A tone that cannot be generated as asked (the message says why)."""


def _sample_count(duration_s: float, sample_rate: int) -> int:
    if sample_rate <= 0:
        raise ToneError(f"sample rate must be positive, got {sample_rate}")
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ToneError(f"duration must be a finite number of seconds >= 0, got {duration_s}")
    return round(duration_s * sample_rate)


def _peak(amplitude_dbfs: float) -> float:
    if not math.isfinite(amplitude_dbfs):
        raise ToneError(f"level must be a finite dBFS value, got {amplitude_dbfs}")
    return FULL_SCALE * 10.0 ** (amplitude_dbfs / 20.0)


def _check_frequency(frequency_hz: float, sample_rate: int) -> None:
    if not math.isfinite(frequency_hz) or not 0 < frequency_hz < sample_rate / 2:
        raise ToneError(
            f"frequency {frequency_hz} Hz is outside (0, {sample_rate / 2:g}) Hz "
            f"at {sample_rate} samples/s"
        )


def _sines(
    components: list[tuple[float, float, float]], count: int, sample_rate: int, ramp_s: float
) -> npt.NDArray[np.int16]:
    """Sum of ``(frequency_hz, peak, phase)`` sines over ``count`` samples, ramped, as int16."""
    total_peak = sum(peak for _, peak, _ in components)
    if total_peak > FULL_SCALE + 0.5:
        raise ToneError(
            f"peak {total_peak:.0f} passes full scale {FULL_SCALE}: lower the level "
            f"({20 * math.log10(total_peak / FULL_SCALE):.2f} dB too high)"
        )
    n = np.arange(count, dtype=np.float64)
    signal = np.zeros(count, dtype=np.float64)
    for frequency_hz, peak, phase in components:
        signal += peak * np.sin(2.0 * np.pi * frequency_hz / sample_rate * n + phase)
    _apply_ramps(signal, _sample_count(ramp_s, sample_rate))
    return np.clip(np.rint(signal), -FULL_SCALE - 1, FULL_SCALE).astype(np.int16)


def _apply_ramps(signal: npt.NDArray[np.float64], ramp_samples: int) -> None:
    """Raised-cosine fade-in and fade-out of ``ramp_samples`` each (shortened to fit)."""
    ramp_samples = min(ramp_samples, len(signal) // 2)
    if ramp_samples == 0:
        return
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_samples) + 0.5) / ramp_samples)
    signal[:ramp_samples] *= rise
    signal[len(signal) - ramp_samples :] *= rise[::-1]


def tone(
    frequency_hz: float,
    duration_s: float,
    *,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
    phase: float = 0.0,
    ramp_s: float = 0.0,
) -> npt.NDArray[np.int16]:
    """A sine of ``frequency_hz`` lasting ``duration_s``, peak at ``amplitude_dbfs``.

    ``phase`` is the starting phase in radians (0 starts at a zero crossing,
    rising); ``ramp_s`` the length of each raised-cosine ramp (0: none).
    """
    count = _sample_count(duration_s, sample_rate)
    _check_frequency(frequency_hz, sample_rate)
    return _sines([(frequency_hz, _peak(amplitude_dbfs), phase)], count, sample_rate, ramp_s)


def dual_tone(
    low_hz: float,
    high_hz: float,
    duration_s: float,
    *,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
    twist_db: float = 0.0,
    phase: float = 0.0,
    ramp_s: float = 0.0,
) -> npt.NDArray[np.int16]:
    """Two sines summed: ``low_hz`` at ``amplitude_dbfs``, ``high_hz`` ``twist_db`` below it.

    ``twist_db`` follows the DTMF receiver convention (as in Bellcore's LSSGR
    and spandsp): positive is "normal" twist, the high-frequency tone weaker
    than the low one; negative is "reverse" twist, the high tone stronger.
    ``phase`` offsets the high tone's starting phase against the low tone's.
    """
    count = _sample_count(duration_s, sample_rate)
    _check_frequency(low_hz, sample_rate)
    _check_frequency(high_hz, sample_rate)
    components = [
        (low_hz, _peak(amplitude_dbfs), 0.0),
        (high_hz, _peak(amplitude_dbfs - twist_db), phase),
    ]
    return _sines(components, count, sample_rate, ramp_s)


def silence(duration_s: float, *, sample_rate: int = 8000) -> npt.NDArray[np.int16]:
    """``duration_s`` of digital silence (zero samples)."""
    return np.zeros(_sample_count(duration_s, sample_rate), dtype=np.int16)


def dtmf_tone(
    digit: str,
    duration_s: float,
    *,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
    twist_db: float = 0.0,
    frequency_error: float = 0.0,
    ramp_s: float = 0.0,
) -> npt.NDArray[np.int16]:
    """The DTMF dual tone of ``digit`` (one of ``0-9 * # A-D``) for ``duration_s``.

    ``amplitude_dbfs`` is the low-group tone's level; ``twist_db`` as in
    :func:`dual_tone`. ``frequency_error`` shifts both tones by that fraction
    of their nominal frequency (0.015 is +1.5 %), for receiver tests.
    """
    try:
        low_hz, high_hz = DTMF_FREQUENCIES[digit.upper()]
    except (KeyError, AttributeError):
        raise ToneError(f"{digit!r} is not a DTMF digit (one of {DTMF_DIGITS})") from None
    scale = 1.0 + frequency_error
    return dual_tone(
        low_hz * scale,
        high_hz * scale,
        duration_s,
        sample_rate=sample_rate,
        amplitude_dbfs=amplitude_dbfs,
        twist_db=twist_db,
        ramp_s=ramp_s,
    )


def dtmf_sequence(
    digits: str,
    *,
    tone_s: float = 0.1,
    gap_s: float = 0.1,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
) -> npt.NDArray[np.int16]:
    """``digits`` dialled as DTMF: each tone ``tone_s`` long, followed by ``gap_s`` of silence."""
    parts: list[npt.NDArray[np.int16]] = []
    for digit in digits:
        parts.append(
            dtmf_tone(digit, tone_s, sample_rate=sample_rate, amplitude_dbfs=amplitude_dbfs)
        )
        parts.append(silence(gap_s, sample_rate=sample_rate))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def beep_train(
    frequency_hz: float = 1400.0,
    beep_s: float = 0.5,
    period_s: float = 15.0,
    *,
    periods: int = 1,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
    ramp_s: float = 0.005,
) -> npt.NDArray[np.int16]:
    """``periods`` periods of a recording-warning beep: each a ``beep_s`` tone, then silence.

    The defaults are the North American recorded-call warning: a 1,400 Hz
    tone repeated every 15 seconds. A looping player repeats one period.
    """
    if periods < 0:
        raise ToneError(f"periods must be >= 0, got {periods}")
    if beep_s > period_s:
        raise ToneError(f"beep ({beep_s} s) is longer than its period ({period_s} s)")
    beep = tone(
        frequency_hz,
        beep_s,
        sample_rate=sample_rate,
        amplitude_dbfs=amplitude_dbfs,
        ramp_s=ramp_s,
    )
    period = np.zeros(_sample_count(period_s, sample_rate), dtype=np.int16)
    period[: len(beep)] = beep
    return np.tile(period, periods)
