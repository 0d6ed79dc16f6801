"""Talk-off: speech and music must not fire DTMF digits (ITU-T Q.24's talk-off requirement).

Three kinds of audio: synthetic voiced speech (a harmonic-rich source with a
moving pitch and moving vowel formants, in syllables), music-like chords of
harmonic-rich notes, and real synthesized speech from espeak-ng when it is
installed (required on CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dsp import tones
from dsp.dtmf import detect_dtmf
from tests.unit.dsp import signals

LEVELS_DBFS = (-3.0, -20.0)  # peak level of the whole signal

SENTENCES = (
    "Please hold while we connect your call. This call may be recorded for quality "
    "and training purposes.",
    "The quick brown fox jumps over the lazy dog, and she sells sea shells by the sea shore.",
    "Welcome to customer service. Press one for billing, two for technical support, "
    "or stay on the line to speak with an agent.",
    "Seven hundred and seventy, eight hundred fifty two, nine four one, twelve oh nine.",
)
VOICES = ("en", "en-us+f3", "de", "fr+m3", "es+f2")


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("pitch_hz", [(85.0, 260.0), (160.0, 420.0)], ids=["low", "high"])
def test_synthetic_speech_fires_no_digit(seed: int, pitch_hz: tuple[float, float]) -> None:
    speech = signals.voiced_speech(20.0, seed=seed, pitch_hz=pitch_hz)
    for level in LEVELS_DBFS:
        assert detect_dtmf(signals.scale_to_dbfs(speech, level)) == []


@pytest.mark.parametrize("seed", range(10))
def test_chords_fire_no_digit(seed: int) -> None:
    music = signals.chords(20.0, seed=seed)
    for level in LEVELS_DBFS:
        assert detect_dtmf(signals.scale_to_dbfs(music, level)) == []


def test_synthetic_speech_is_speech_like() -> None:
    """The talk-off material is worth testing against: loud, voiced, harmonic-rich."""
    speech = signals.scale_to_dbfs(signals.voiced_speech(5.0, seed=0), -3.0)
    spectrum = np.abs(np.fft.rfft(speech[4000:8096].astype(np.float64) * np.hanning(4096)))
    band = spectrum[(np.arange(len(spectrum)) * 8000 / 4096 > 600)]
    strong = band > band.max() * 0.1
    assert strong.sum() >= 5  # many strong partials above 600 Hz, not one tone
    assert np.sqrt(np.mean(speech.astype(np.float64) ** 2)) > 1000


@pytest.fixture(scope="module")
def espeak_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not signals.espeak_available():
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is required on CI for the talk-off test (apt install espeak-ng)")
        pytest.skip("espeak-ng is not installed")
    return tmp_path_factory.mktemp("espeak")


@pytest.mark.parametrize("voice", VOICES)
def test_espeak_speech_fires_no_digit(espeak_dir: Path, voice: str) -> None:
    for pitch in (30, 70):
        for sentence in SENTENCES:
            speech = signals.espeak_speech(sentence, voice, espeak_dir, pitch=pitch)
            assert len(speech) > 8000
            for level in LEVELS_DBFS:
                assert detect_dtmf(signals.scale_to_dbfs(speech, level)) == []


def test_digits_between_spoken_sentences_are_still_found(espeak_dir: Path) -> None:
    first = signals.scale_to_dbfs(signals.espeak_speech(SENTENCES[2], "en", espeak_dir), -6.0)
    second = signals.scale_to_dbfs(signals.espeak_speech(SENTENCES[0], "de", espeak_dir), -6.0)
    digits = tones.dtmf_sequence("42", tone_s=0.08, gap_s=0.08, amplitude_dbfs=-12.0)
    pcm = np.concatenate([first, digits, second])
    assert [event.digit for event in detect_dtmf(pcm)] == ["4", "2"]
