"""Tone generation: frequencies by FFT peak, levels in dBFS, ramps, trains, DTMF pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dsp import tones

RATE = 8000


def spectrum_peaks(signal: np.ndarray, count: int) -> list[float]:
    """Frequencies (Hz) of the ``count`` strongest spectral peaks, refined by parabolic
    interpolation of the log-magnitude of a Hann-windowed FFT."""
    window = np.hanning(len(signal))
    magnitude = np.abs(np.fft.rfft(signal.astype(np.float64) * window, n=4 * len(signal)))
    log = np.log(magnitude + 1e-12)
    is_peak = (log[1:-1] > log[:-2]) & (log[1:-1] >= log[2:])
    candidates = np.flatnonzero(is_peak) + 1
    strongest = candidates[np.argsort(magnitude[candidates])[::-1][:count]]
    peaks = []
    for index in sorted(strongest):
        left, centre, right = log[index - 1 : index + 2]
        offset = 0.5 * (left - right) / (left - 2 * centre + right)
        peaks.append((index + offset) * RATE / (4 * len(signal)))
    return peaks


def level_dbfs(signal: np.ndarray) -> float:
    """Sine level in dBFS from the RMS: a full-scale sine is 0 dBFS (AES17)."""
    rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))
    return 20 * np.log10(rms * np.sqrt(2) / tones.FULL_SCALE)


@pytest.mark.parametrize("frequency", [200.0, 440.0, 1000.0, 1400.0, 2718.3, 3700.0])
def test_tone_frequency_is_the_fft_peak(frequency: float) -> None:
    signal = tones.tone(frequency, 0.5)
    assert signal.dtype == np.int16 and len(signal) == 4000
    (peak,) = spectrum_peaks(signal, 1)
    assert peak == pytest.approx(frequency, abs=0.5)


@pytest.mark.parametrize("dbfs", [0.0, -3.0, -10.0, -20.0, -40.0])
def test_tone_level_in_dbfs(dbfs: float) -> None:
    signal = tones.tone(1000.0, 1.0, amplitude_dbfs=dbfs)
    assert level_dbfs(signal) == pytest.approx(dbfs, abs=0.02)
    assert int(np.abs(signal).max()) == pytest.approx(tones.FULL_SCALE * 10 ** (dbfs / 20), abs=1)


def test_phase_and_sample_rate() -> None:
    cosine = tones.tone(1000.0, 0.01, sample_rate=16000, phase=np.pi / 2, amplitude_dbfs=0.0)
    assert len(cosine) == 160
    assert cosine[0] == tones.FULL_SCALE  # sin(pi/2): starts at the peak
    assert cosine[8] == -tones.FULL_SCALE  # half a period later at 16 kHz


def test_dual_tone_has_both_frequencies_and_the_twist() -> None:
    signal = tones.dual_tone(697.0, 1209.0, 1.0, amplitude_dbfs=-6.0, twist_db=4.0)
    low, high = spectrum_peaks(signal, 2)
    assert low == pytest.approx(697.0, abs=0.5)
    assert high == pytest.approx(1209.0, abs=0.5)
    low_part = tones.tone(697.0, 1.0, amplitude_dbfs=-6.0)
    assert level_dbfs(signal - low_part) == pytest.approx(-10.0, abs=0.05)


@pytest.mark.parametrize("digit", list(tones.DTMF_DIGITS))
def test_every_dtmf_digit_has_its_q23_pair(digit: str) -> None:
    low_hz, high_hz = tones.DTMF_FREQUENCIES[digit]
    assert low_hz in tones.DTMF_ROW_HZ and high_hz in tones.DTMF_COLUMN_HZ
    peaks = spectrum_peaks(tones.dtmf_tone(digit, 0.5), 2)
    assert peaks == pytest.approx([low_hz, high_hz], abs=0.5)


def test_dtmf_keypad_layout() -> None:
    assert tones.DTMF_FREQUENCIES["1"] == (697.0, 1209.0)
    assert tones.DTMF_FREQUENCIES["5"] == (770.0, 1336.0)
    assert tones.DTMF_FREQUENCIES["9"] == (852.0, 1477.0)
    assert tones.DTMF_FREQUENCIES["0"] == (941.0, 1336.0)
    assert tones.DTMF_FREQUENCIES["*"] == (941.0, 1209.0)
    assert tones.DTMF_FREQUENCIES["#"] == (941.0, 1477.0)
    assert tones.DTMF_FREQUENCIES["D"] == (941.0, 1633.0)
    assert np.array_equal(tones.dtmf_tone("a", 0.05), tones.dtmf_tone("A", 0.05))


def test_dtmf_frequency_error_shifts_both_tones() -> None:
    peaks = spectrum_peaks(tones.dtmf_tone("5", 0.5, frequency_error=0.02), 2)
    assert peaks == pytest.approx([770.0 * 1.02, 1336.0 * 1.02], abs=0.5)


def test_silence_is_zeros() -> None:
    quiet = tones.silence(0.02)
    assert quiet.dtype == np.int16 and len(quiet) == 160 and not quiet.any()


def test_ramp_removes_the_click() -> None:
    hard = tones.tone(1000.0, 0.1, amplitude_dbfs=0.0, phase=np.pi / 2)
    soft = tones.tone(1000.0, 0.1, amplitude_dbfs=0.0, phase=np.pi / 2, ramp_s=0.005)
    assert abs(int(hard[0])) == tones.FULL_SCALE and abs(int(hard[-1])) > 20000
    assert abs(int(soft[0])) < 200 and abs(int(soft[-1])) < 200
    envelope = np.abs(soft[:40].astype(np.int32))
    peaks = [envelope[i : i + 8].max() for i in range(0, 40, 8)]
    assert peaks == sorted(peaks)  # rises over the 5 ms ramp
    assert np.array_equal(soft[40:-40], hard[40:-40])  # untouched between the ramps


def test_beep_train_period_and_beep() -> None:
    train = tones.beep_train(beep_s=0.2, period_s=1.0, periods=3)
    assert len(train) == 3 * RATE
    for start in range(0, 3 * RATE, RATE):
        beep = train[start : start + 1600]
        (peak,) = spectrum_peaks(beep, 1)
        assert peak == pytest.approx(1400.0, abs=1.0)
        assert level_dbfs(beep[80:-80]) == pytest.approx(-10.0, abs=0.1)
        assert not train[start + 1600 : start + RATE].any()


def test_beep_train_defaults_are_a_15_second_period() -> None:
    train = tones.beep_train()
    assert len(train) == 15 * RATE
    assert train[: RATE // 2].any() and not train[RATE // 2 :].any()


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: tones.tone(4000.0, 0.1), "outside"),
        (lambda: tones.tone(-5.0, 0.1), "outside"),
        (lambda: tones.tone(1000.0, -0.1), "duration"),
        (lambda: tones.tone(1000.0, float("nan")), "duration"),
        (lambda: tones.tone(1000.0, 0.1, amplitude_dbfs=1.0), "full scale"),
        (lambda: tones.tone(1000.0, 0.1, sample_rate=0), "sample rate"),
        (lambda: tones.dual_tone(697.0, 1209.0, 0.1, amplitude_dbfs=-3.0), "full scale"),
        (lambda: tones.dtmf_tone("E", 0.1), "not a DTMF digit"),
        (lambda: tones.beep_train(beep_s=2.0, period_s=1.0), "longer than its period"),
        (lambda: tones.beep_train(periods=-1), "periods"),
    ],
)
def test_impossible_tones_are_refused_with_a_reason(
    call: Callable[[], object], reason: str
) -> None:
    with pytest.raises(tones.ToneError, match=reason):
        call()


def test_dtmf_sequence_concatenates_tones_and_gaps() -> None:
    sequence = tones.dtmf_sequence("19", tone_s=0.05, gap_s=0.03)
    assert len(sequence) == 2 * (400 + 240)
    assert np.array_equal(sequence[:400], tones.dtmf_tone("1", 0.05))
    assert not sequence[400:640].any()
    assert np.array_equal(sequence[640:1040], tones.dtmf_tone("9", 0.05))
    assert len(tones.dtmf_sequence("")) == 0
