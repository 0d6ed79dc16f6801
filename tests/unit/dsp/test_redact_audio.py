"""Muting redacted spans in audio: spans to time ranges, ranges to silence or a tone."""

from __future__ import annotations

import numpy as np
import pytest

from dsp import tones
from dsp.redact import Span, mute_audio, mute_ranges, redact
from tests.support.spoken_corpus import words_of

RATE = 8000


def span(start: float, end: float) -> Span:
    return Span("CARD", "card", 0, 1, start, end, 0.9)


def test_ranges_take_a_margin_and_merge() -> None:
    ranges = mute_ranges([span(2.0, 3.0), span(0.05, 0.5), span(3.1, 4.0)], margin_s=0.1)
    assert np.allclose(ranges, [[0.0, 0.6], [1.9, 4.1]])
    assert mute_ranges([], margin_s=0.1).shape == (0, 2)
    with pytest.raises(ValueError):
        mute_ranges([span(0, 1)], margin_s=-0.1)


def test_silence_covers_exactly_the_ranges() -> None:
    pcm = tones.tone(440.0, 2.0, amplitude_dbfs=-6.0)
    out = mute_audio(pcm, np.array([[0.5, 1.0], [1.5, 5.0]]))
    assert out.dtype == np.int16 and len(out) == len(pcm)
    assert not out[4000:8000].any() and not out[12000:].any()
    assert np.array_equal(out[:4000], pcm[:4000])
    assert np.array_equal(out[8000:12000], pcm[8000:12000])
    assert np.array_equal(pcm, tones.tone(440.0, 2.0, amplitude_dbfs=-6.0))  # input untouched


def test_tone_replaces_the_ranges() -> None:
    pcm = np.full(RATE, 1000, dtype=np.int16)
    out = mute_audio(pcm, np.array([[0.25, 0.5]]), mode="tone", tone_hz=1000.0, amplitude_dbfs=-20)
    burst = out[2000:4000].astype(np.float64)
    peak = tones.FULL_SCALE * 10 ** (-20 / 20)
    assert np.abs(burst).max() == pytest.approx(peak, rel=0.02)
    spectrum = np.abs(np.fft.rfft(burst))
    assert np.argmax(spectrum) * RATE / len(burst) == pytest.approx(1000.0, abs=5)
    assert (out[:2000] == 1000).all() and (out[4000:] == 1000).all()


def test_stereo_and_out_of_range() -> None:
    pcm = np.ones((RATE, 2), dtype=np.int16)
    out = mute_audio(pcm, np.array([[-1.0, 0.5], [3.0, 4.0]]))
    assert not out[:4000].any() and out[4000:].all()
    with pytest.raises(ValueError):
        mute_audio(pcm, np.zeros((0, 2)), mode="beep")  # type: ignore[arg-type]


def test_a_redacted_card_is_muted_where_its_words_were() -> None:
    words = words_of(
        "hello my card number is four one one one one one one one one one one one "
        "one one one one thanks"
    )
    result = redact(words)
    ranges = mute_ranges(result.spans, margin_s=0.05)
    pcm = np.full(int(words[-1].end * RATE) + RATE, 500, dtype=np.int16)
    out = mute_audio(pcm, ranges)
    first, last = words[5], words[20]
    assert not out[int(first.start * RATE) : int(last.end * RATE)].any()
    assert (out[: int(words[4].end * RATE)] == 500).all()
    assert (out[int(words[21].start * RATE) :] == 500).all()
