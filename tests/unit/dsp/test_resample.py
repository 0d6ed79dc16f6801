"""The polyphase resampler: level and frequency kept in band, aliases rejected, timing kept."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from dsp.resample import ResampleError, resample


def sine(frequency_hz: float, rate: int, seconds: float, amplitude: float = 10000.0) -> npt.NDArray:
    n = np.arange(round(rate * seconds))
    return amplitude * np.sin(2 * np.pi * frequency_hz * n / rate)


def middle(x: npt.NDArray) -> npt.NDArray:
    """The middle half, away from the edges where the filter sees the zero padding."""
    return x[len(x) // 4 : 3 * len(x) // 4]


def rms_db(x: npt.NDArray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(x)))))


def peak_frequency(x: npt.NDArray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


@pytest.mark.parametrize(("from_rate", "to_rate"), [(22050, 8000), (16000, 8000), (48000, 8000)])
def test_in_band_tone_keeps_its_frequency_and_level(from_rate: int, to_rate: int) -> None:
    x = sine(1000, from_rate, 2.0)
    y = resample(x, from_rate, to_rate)
    assert y.dtype == np.float64
    assert len(y) == 2 * to_rate
    assert abs(rms_db(middle(y)) - rms_db(x)) < 0.5
    assert peak_frequency(middle(y), to_rate) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize(
    ("from_rate", "frequency_hz"), [(22050, 6000), (22050, 4100), (16000, 5000), (48000, 7000)]
)
def test_tones_above_the_new_nyquist_are_rejected(from_rate: int, frequency_hz: float) -> None:
    x = sine(frequency_hz, from_rate, 1.0)
    y = resample(x, from_rate, 8000)
    assert rms_db(middle(y)) < rms_db(x) - 40


def test_output_is_time_aligned_with_the_input() -> None:
    """The filter's delay is compensated: the output is the same sine, sample for sample."""
    y = resample(sine(1000, 22050, 1.0), 22050, 8000)
    expected = sine(1000, 8000, 1.0)
    assert np.max(np.abs(middle(y) - middle(expected))) < 0.01 * 10000


def test_upsampling_adds_no_images() -> None:
    x = sine(1000, 8000, 1.0)
    y = resample(x, 8000, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(middle(y) * np.hanning(len(middle(y)))))
    freqs = np.fft.rfftfreq(len(middle(y)), 1 / 16000)
    image = spectrum[freqs > 4500].max()  # the 1 kHz tone's image would sit at 7 kHz
    assert 20 * math.log10(image / spectrum.max()) < -60
    assert np.max(np.abs(middle(y) - middle(sine(1000, 16000, 1.0)))) < 0.01 * 10000


def test_equal_rates_return_a_float_copy() -> None:
    x = np.array([1, -2, 3, 32767], dtype=np.int16)
    y = resample(x, 8000, 8000)
    assert y.dtype == np.float64
    assert y.tolist() == [1.0, -2.0, 3.0, 32767.0]
    y[0] = 99
    assert x[0] == 1


def test_int16_input_and_constant_level() -> None:
    x = np.full(16000, 1000, dtype=np.int16)
    y = resample(x, 16000, 8000)
    assert np.allclose(middle(y), 1000.0, atol=0.5)


@pytest.mark.parametrize(
    ("length", "from_rate", "to_rate", "expected"),
    [(0, 22050, 8000, 0), (1, 22050, 8000, 1), (441, 22050, 8000, 160), (442, 22050, 8000, 161)],
)
def test_output_length(length: int, from_rate: int, to_rate: int, expected: int) -> None:
    assert len(resample(np.ones(length), from_rate, to_rate)) == expected


@pytest.mark.parametrize(
    ("from_rate", "to_rate", "message"),
    [
        (0, 8000, "from_rate"),
        (8000, -1, "to_rate"),
        (8000.0, 16000, "from_rate"),
        (True, 8000, "from_rate"),
    ],
)
def test_rates_must_be_positive_integers(from_rate: int, to_rate: int, message: str) -> None:
    with pytest.raises(ResampleError, match=message):
        resample(np.zeros(10), from_rate, to_rate)


def test_two_dimensional_input_is_refused() -> None:
    with pytest.raises(ResampleError, match="1-D"):
        resample(np.zeros((10, 2)), 16000, 8000)
