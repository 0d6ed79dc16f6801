"""Test signals for the DSP tests: speech-like and music-like audio, noise, espeak-ng speech.

Everything is generated from a seeded random generator, so every run sees
the same audio.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FULL_SCALE = 32767

# (F1, F2, F3) in Hz of a few vowels (Peterson and Barney's adult averages, rounded)
VOWEL_FORMANTS = (
    (730, 1090, 2440),  # a
    (530, 1840, 2480),  # e
    (270, 2290, 3010),  # i
    (570, 840, 2410),  # o
    (300, 870, 2240),  # u
    (660, 1720, 2410),  # ae
    (490, 1350, 1690),  # er
)
FORMANT_BANDWIDTHS_HZ = (90.0, 110.0, 170.0)


def scale_to_dbfs(signal: npt.NDArray[np.float64], peak_dbfs: float) -> npt.NDArray[np.int16]:
    """``signal`` scaled so its peak sits at ``peak_dbfs``, as int16."""
    peak = float(np.max(np.abs(signal))) or 1.0
    target = FULL_SCALE * 10.0 ** (peak_dbfs / 20.0)
    return np.rint(signal * (target / peak)).astype(np.int16)


def _smooth_walk(rng: np.random.Generator, count: int, points: int) -> npt.NDArray[np.float64]:
    """A smooth random curve in [0, 1] over ``count`` samples through ``points`` knots."""
    knots = rng.random(points)
    return np.interp(np.linspace(0, points - 1, count), np.arange(points), knots)


def voiced_speech(
    seconds: float, *, seed: int, pitch_hz: tuple[float, float] = (85.0, 260.0)
) -> npt.NDArray[np.float64]:
    """Speech-like audio: a harmonic-rich glottal source with a moving pitch, shaped by
    moving vowel formants, in syllables (3-6 per second) with fricative noise and pauses."""
    rng = np.random.default_rng(seed)
    count = round(seconds * SAMPLE_RATE)
    low, high = pitch_hz
    pitch = low + (high - low) * _smooth_walk(rng, count, max(int(seconds * 4), 2))
    pitch *= 1.0 + 0.02 * np.sin(2 * np.pi * 5.5 * np.arange(count) / SAMPLE_RATE)  # vibrato
    phase = np.cumsum(2 * np.pi * pitch / SAMPLE_RATE)

    # formant tracks: glide between random vowels, one vowel every ~120-250 ms
    vowel_count = max(int(seconds * 6), 2)
    chosen = np.array(
        [VOWEL_FORMANTS[i] for i in rng.integers(0, len(VOWEL_FORMANTS), vowel_count)]
    )
    where = np.linspace(0, vowel_count - 1, count)
    formants = np.stack(
        [np.interp(where, np.arange(vowel_count), chosen[:, f]) for f in range(3)], axis=1
    )

    signal = np.zeros(count)
    harmonics = int(SAMPLE_RATE / 2 / low)
    for k in range(1, harmonics + 1):
        frequency = k * pitch
        audible = frequency < SAMPLE_RATE / 2 - 100
        if not audible.any():
            break
        envelope = sum(
            1.0 / (1.0 + ((frequency - formants[:, f]) / FORMANT_BANDWIDTHS_HZ[f]) ** 2) * (0.5**f)
            for f in range(3)
        )
        signal += np.where(audible, envelope / k**0.5, 0.0) * np.sin(k * phase)

    # syllables: amplitude envelope with gaps; some syllables start with a fricative
    syllable_rate = rng.uniform(3.0, 6.0)
    syllable = np.sin(np.pi * ((np.arange(count) / SAMPLE_RATE * syllable_rate) % 1.0)) ** 2
    gate = np.repeat(rng.random(int(seconds * syllable_rate) + 2) > 0.15, SAMPLE_RATE)[:count]
    gate = np.interp(
        np.arange(count), np.arange(count)[:: SAMPLE_RATE // 50], gate[:: SAMPLE_RATE // 50]
    )
    noise = rng.standard_normal(count)
    fricative = np.diff(noise, prepend=0.0) * (syllable < 0.3) * 0.3
    return (signal * syllable + fricative) * gate


def equal_tempered_hz(semitones_from_a4: int) -> float:
    return 440.0 * 2.0 ** (semitones_from_a4 / 12.0)


def chords(seconds: float, *, seed: int) -> npt.NDArray[np.float64]:
    """Music-like audio: a sequence of 3- and 4-note chords of harmonic-rich notes
    (sawtooth-like, harmonics at 1/k), each 0.25-1 s with attack and decay."""
    rng = np.random.default_rng(seed)
    count = round(seconds * SAMPLE_RATE)
    signal = np.zeros(count)
    position = 0
    while position < count:
        length = min(int(rng.uniform(0.25, 1.0) * SAMPLE_RATE), count - position)
        t = np.arange(length) / SAMPLE_RATE
        envelope = np.minimum(t / 0.02, 1.0) * np.exp(-t * rng.uniform(0.5, 3.0))
        root = int(rng.integers(-24, 16))
        shape = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 3, 7, 10), (0, 4, 7, 11)][
            int(rng.integers(0, 5))
        ]
        chord = np.zeros(length)
        for interval in shape:
            base = equal_tempered_hz(root + interval) * (1 + rng.uniform(-0.003, 0.003))
            for k in range(1, 12):
                if k * base >= SAMPLE_RATE / 2 - 100:
                    break
                chord += np.sin(2 * np.pi * k * base * t + rng.uniform(0, 2 * np.pi)) / k
        signal[position : position + length] = chord * envelope
        position += length
    return signal


def white_noise(count: int, rms: float, *, seed: int) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).standard_normal(count) * rms


def resample(signal: npt.NDArray[np.float64], rate: int, new_rate: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling by the FFT (the spectrum cut at the lower Nyquist)."""
    count = round(len(signal) * new_rate / rate)
    spectrum = np.fft.rfft(signal)
    kept = min(len(spectrum), count // 2 + 1)
    resized = np.zeros(count // 2 + 1, dtype=complex)
    resized[:kept] = spectrum[:kept]
    return np.fft.irfft(resized, n=count) * (count / len(signal))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_speech(
    text: str, voice: str, directory: Path, *, pitch: int = 50
) -> npt.NDArray[np.float64]:
    """``text`` spoken by espeak-ng with ``voice``, resampled to 8 kHz."""
    path = directory / f"speech-{abs(hash((text, voice, pitch)))}.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "160", "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with wave.open(str(path), "rb") as reader:
        rate = reader.getframerate()
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise ValueError(f"espeak-ng wrote an unexpected WAV format to {path}")
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return resample(samples.astype(np.float64), rate, SAMPLE_RATE)
