"""Voice activity: framing for the WebRTC detector, smoothing, speech found where it was placed.

The speech is real synthesized speech from espeak-ng (required on CI), placed
in digital silence or line noise at known offsets; a segment must start and
end within a tolerance of where the voice (samples above 1 % of the peak)
starts and ends.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsp.vad import (
    Segment,
    VadConfig,
    VadError,
    frame_decisions,
    frames,
    segments_from_decisions,
    smooth,
    speech_segments,
)
from tests.unit.dsp import signals

RATE = 8000
START_TOLERANCE_S = 0.1
END_TOLERANCE_S = 0.25  # the detector's own release plus a frame

SENTENCE = "Thank you for calling, how can I help you today?"
OTHER_SENTENCE = "I would like to check the status of my order please."


@pytest.fixture(scope="module")
def espeak_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not signals.espeak_available():
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is required on CI for the VAD tests (apt install espeak-ng)")
        pytest.skip("espeak-ng is not installed")
    return tmp_path_factory.mktemp("espeak")


def speech(text: str, directory: Path, voice: str = "en", level_dbfs: float = -6.0) -> Voice:
    return Voice.of(
        signals.scale_to_dbfs(signals.espeak_speech(text, voice, directory), level_dbfs)
    )


class Voice:
    """An utterance and where its voice is inside it (espeak pads with silence)."""

    def __init__(self, pcm: npt.NDArray[np.int16], first: int, last: int) -> None:
        self.pcm = pcm
        self.first = first
        self.last = last

    @classmethod
    def of(cls, pcm: npt.NDArray[np.int16]) -> Voice:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 0.01 * np.abs(pcm).max())
        return cls(pcm, int(loud[0]), int(loud[-1]) + 1)


def place(total_s: float, *parts: tuple[float, Voice]) -> tuple[npt.NDArray[np.int16], list]:
    """Utterances at the given offsets in silence, and where each one's voice is (s)."""
    out = np.zeros(round(total_s * RATE), dtype=np.int32)
    truth = []
    for at_s, voice in parts:
        start = round(at_s * RATE)
        out[start : start + len(voice.pcm)] += voice.pcm
        truth.append(((start + voice.first) / RATE, (start + voice.last) / RATE))
    return np.clip(out, -32768, 32767).astype(np.int16), truth


def assert_segment_matches(segment: Segment, truth: tuple[float, float]) -> None:
    assert abs(segment.start_s - truth[0]) <= START_TOLERANCE_S, (segment, truth)
    assert abs(segment.end_s - truth[1]) <= END_TOLERANCE_S, (segment, truth)


# ---------------------------------------------------------------------- framing


@pytest.mark.parametrize(("frame_ms", "size"), [(10, 80), (20, 160), (30, 240)])
def test_frames_are_rows_of_the_audio_without_the_part_frame(frame_ms: int, size: int) -> None:
    pcm = np.arange(1000, dtype=np.int16)
    rows = frames(pcm, RATE, frame_ms)
    assert rows.shape == (1000 // size, size)
    assert rows.flags.c_contiguous
    np.testing.assert_array_equal(rows.ravel(), pcm[: rows.size])
    assert np.shares_memory(rows, pcm)  # no copy of contiguous audio


def test_frames_of_strided_audio_are_copied_in_order() -> None:
    stereo = np.arange(2000, dtype=np.int16).reshape(-1, 2)
    rows = frames(stereo[:, 1], RATE, 10)
    np.testing.assert_array_equal(rows.ravel(), stereo[:960, 1])


@pytest.mark.parametrize(
    ("pcm", "rate", "frame_ms"),
    [
        (np.zeros(800, dtype=np.float64), RATE, 30),
        (np.zeros((800, 2), dtype=np.int16), RATE, 30),
        (np.zeros(800, dtype=np.int16), 11025, 30),
        (np.zeros(800, dtype=np.int16), RATE, 25),
    ],
    ids=["float", "2-D", "rate", "frame"],
)
def test_frames_refuse_what_the_detector_cannot_take(
    pcm: npt.NDArray, rate: int, frame_ms: int
) -> None:
    with pytest.raises(VadError):
        frames(pcm, rate, frame_ms)


def test_config_refuses_bad_settings() -> None:
    for bad in ({"frame_ms": 40}, {"aggressiveness": 4}, {"hangover_ms": -1}):
        with pytest.raises(VadError):
            VadConfig(**bad)  # type: ignore[arg-type]


def test_one_decision_per_whole_frame() -> None:
    pcm = np.zeros(RATE + 100, dtype=np.int16)
    for frame_ms in (10, 20, 30):
        decided = frame_decisions(pcm, RATE, VadConfig(frame_ms=frame_ms))
        assert decided.dtype == np.bool_
        assert len(decided) == (RATE + 100) // (RATE * frame_ms // 1000)
        assert not decided.any()


# ---------------------------------------------------------------------- smoothing


def runs(pattern: str) -> npt.NDArray[np.bool_]:
    """Decisions from a string: '#' speech, '.' not."""
    return np.array([c == "#" for c in pattern], dtype=np.bool_)


def test_smooth_bridges_short_pauses_and_splits_at_long_ones() -> None:
    config = VadConfig(frame_ms=10, hangover_ms=30, min_speech_ms=0)
    #                          0         1         2         3
    #                          0123456789012345678901234567890123
    decided = runs("..#####...####....###.#")
    assert smooth(decided, config).tolist() == [[2, 14], [18, 23]]


def test_smooth_drops_segments_shorter_than_the_minimum() -> None:
    config = VadConfig(frame_ms=10, hangover_ms=0, min_speech_ms=30)
    decided = runs("##..###..#.####")
    assert smooth(decided, config).tolist() == [[4, 7], [11, 15]]


def test_minimum_applies_after_bridging() -> None:
    config = VadConfig(frame_ms=10, hangover_ms=20, min_speech_ms=50)
    assert smooth(runs("..##..##......#"), config).tolist() == [[2, 8]]


def test_smooth_of_nothing_and_of_everything() -> None:
    config = VadConfig(frame_ms=30)
    assert smooth(np.zeros(0, dtype=np.bool_), config).shape == (0, 2)
    assert smooth(np.zeros(50, dtype=np.bool_), config).shape == (0, 2)
    assert smooth(np.ones(50, dtype=np.bool_), config).tolist() == [[0, 50]]


@given(
    st.lists(st.booleans(), max_size=300),
    st.sampled_from([10, 20, 30]),
    st.integers(0, 200),
    st.integers(0, 200),
)
def test_smooth_matches_a_frame_by_frame_reference(
    decided: list[bool], frame_ms: int, hangover_ms: int, min_speech_ms: int
) -> None:
    config = VadConfig(frame_ms, 2, hangover_ms, min_speech_ms)
    expected = reference_smooth(decided, hangover_ms // frame_ms, -(-min_speech_ms // frame_ms))
    assert smooth(np.array(decided, dtype=np.bool_), config).tolist() == expected


def reference_smooth(decided: list[bool], hangover: int, shortest: int) -> list[list[int]]:
    """A plain loop: open at speech, close after more than ``hangover`` frames of silence."""
    segments: list[list[int]] = []
    current: list[int] | None = None
    for index, voiced in enumerate(decided):
        if not voiced:
            continue
        if current is not None and index - current[1] <= hangover:
            current[1] = index + 1
        else:
            if current is not None:
                segments.append(current)
            current = [index, index + 1]
    if current is not None:
        segments.append(current)
    return [s for s in segments if s[1] - s[0] >= shortest]


def test_segments_are_in_seconds_on_the_frame_grid() -> None:
    config = VadConfig(frame_ms=20, hangover_ms=0, min_speech_ms=0)
    found = segments_from_decisions(runs("..###....#"), config)
    assert found == (Segment(0.04, 0.1), Segment(0.18, 0.2))
    assert found[0].duration_s == pytest.approx(0.06)


# ---------------------------------------------------------------------- real speech


def test_silence_has_no_speech() -> None:
    assert speech_segments(np.zeros(10 * RATE, dtype=np.int16)) == ()


@pytest.mark.parametrize("rms", [30.0, 300.0])  # about -60 and -40 dBFS of hiss
def test_line_noise_alone_has_no_speech(rms: float) -> None:
    noise = np.rint(signals.white_noise(20 * RATE, rms, seed=3)).astype(np.int16)
    assert speech_segments(noise) == ()


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_an_utterance_is_found_where_it_was_placed(espeak_dir: Path, frame_ms: int) -> None:
    voice = speech(SENTENCE, espeak_dir)
    pcm, truth = place(8.0, (2.5, voice))
    found = speech_segments(pcm, RATE, VadConfig(frame_ms=frame_ms))
    assert len(found) == 1
    assert_segment_matches(found[0], truth[0])


@pytest.mark.parametrize("voice_name", ["en", "en-us+f3", "de"])
def test_two_utterances_apart_are_two_segments(espeak_dir: Path, voice_name: str) -> None:
    first = speech(SENTENCE, espeak_dir, voice_name)
    second = speech(OTHER_SENTENCE, espeak_dir, voice_name, level_dbfs=-20.0)
    gap_s = 2.0
    second_at = 1.0 + (first.last + gap_s * RATE - second.first) / RATE
    pcm, truth = place(second_at + len(second.pcm) / RATE + 1.0, (1.0, first), (second_at, second))
    found = speech_segments(pcm)
    assert len(found) == 2
    for segment, placed in zip(found, truth, strict=True):
        assert_segment_matches(segment, placed)


def test_a_short_pause_is_bridged_by_the_hangover(espeak_dir: Path) -> None:
    first = speech(SENTENCE, espeak_dir)
    second = speech(OTHER_SENTENCE, espeak_dir)
    second_at = 1.0 + (first.last + 0.15 * RATE - second.first) / RATE  # 150 ms pause
    pcm, _ = place(second_at + len(second.pcm) / RATE + 1.0, (1.0, first), (second_at, second))
    assert len(speech_segments(pcm)) == 1
    split = speech_segments(pcm, RATE, VadConfig(hangover_ms=0))
    assert len(split) >= 2  # without the hangover the pause shows


@pytest.mark.parametrize("rms", [30.0, 300.0])
def test_speech_in_line_noise_is_found(espeak_dir: Path, rms: float) -> None:
    voice = speech(OTHER_SENTENCE, espeak_dir, "en-us+f3", level_dbfs=-12.0)
    pcm, truth = place(10.0, (4.0, voice))
    noise = signals.white_noise(len(pcm), rms, seed=5)
    noisy = np.clip(np.rint(pcm + noise), -32768, 32767).astype(np.int16)
    found = speech_segments(noisy)
    assert len(found) == 1
    assert_segment_matches(found[0], truth[0])


def test_total_speech_time_tracks_the_voice(espeak_dir: Path) -> None:
    voices = [speech(text, espeak_dir) for text in (SENTENCE, OTHER_SENTENCE, SENTENCE)]
    parts = [(1.0, voices[0]), (7.0, voices[1]), (14.0, voices[2])]
    pcm, truth = place(20.0, *parts)
    found = speech_segments(pcm)
    spoken = sum(end - start for start, end in truth)
    assert sum(s.duration_s for s in found) == pytest.approx(spoken, abs=3 * END_TOLERANCE_S)
