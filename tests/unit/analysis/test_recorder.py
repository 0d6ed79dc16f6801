"""StereoRecorder: time-aligned stereo WAV, latency window, .part file renamed on close."""

from __future__ import annotations

import hashlib
import itertools
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.analysis.recorder import (
    WAV_HEADER_BYTES,
    RecordingInfo,
    StereoRecorder,
    wav_header,
)

RATE = 8000
CALLER = 0
CALLEE = 1


def tone(frequency: float, count: int, amplitude: int = 12000) -> npt.NDArray[np.int16]:
    t = np.arange(count) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def noise(count: int, seed: int) -> npt.NDArray[np.int16]:
    return np.random.default_rng(seed).integers(-32768, 32768, count, dtype=np.int16)


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], wave.Wave_read]:
    """Frames (rows) by channel (columns), read with the standard library's reader."""
    with wave.open(str(path), "rb") as reader:
        frames = reader.readframes(reader.getnframes())
        assert len(frames) == reader.getnframes() * reader.getnchannels() * 2
        data = np.frombuffer(frames, dtype="<i2").reshape(-1, reader.getnchannels())
    return data, reader


def test_two_channels_hold_their_samples_at_their_offsets(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "call.wav")
    left = tone(440.0, 4000)
    right = tone(1000.0, 2400)
    recorder.write(CALLER, 1000, left)
    recorder.write(CALLEE, 3000, right)
    info = recorder.close()
    assert info is not None
    data, reader = read_wav(info.path)
    assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, RATE)
    assert reader.getcomptype() == "NONE"
    assert reader.getnframes() == 5400 == info.frames
    expected = np.zeros((5400, 2), dtype=np.int16)
    expected[1000:5000, 0] = left
    expected[3000:5400, 1] = right
    np.testing.assert_array_equal(data, expected)


def test_a_one_second_gap_in_one_channel_is_8000_zero_frames(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "gap.wav")
    first = tone(300.0, 800)
    second = tone(500.0, 800)
    recorder.write(CALLER, 0, first)
    recorder.write(CALLER, 800 + RATE, second)
    recorder.write(CALLEE, 0, tone(700.0, 800 + RATE + 800))
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    np.testing.assert_array_equal(data[:800, 0], first)
    assert not data[800 : 800 + RATE, 0].any()
    assert len(data[800 : 800 + RATE, 0]) == RATE
    np.testing.assert_array_equal(data[800 + RATE :, 0], second)
    np.testing.assert_array_equal(data[:, 1], tone(700.0, 800 + RATE + 800))


def test_out_of_order_writes_within_the_window_are_placed(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "ooo.wav", latency_s=0.1)
    packets = [noise(160, seed) for seed in range(12)]
    delays = [0.03, 0.0, 0.05, 0.01, 0.07, 0.02, 0.0, 0.06, 0.04, 0.0, 0.09, 0.01]
    arrivals = sorted((index * 0.02 + delay, index) for index, delay in enumerate(delays))
    assert [index for _, index in arrivals] != sorted(range(12))
    for now, index in arrivals:
        recorder.flush_due(now)  # the window trails arrival by 100 ms
        recorder.write(CALLER, index * 160, packets[index])
    assert recorder.written_frames > 0
    assert recorder.late_samples == 0
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    np.testing.assert_array_equal(data[:, 0], np.concatenate(packets))
    assert not data[:, 1].any()


def test_late_writes_are_dropped_and_counted(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "late.wav", latency_s=0.5)
    recorder.write(CALLER, 0, np.full(8000, 5, dtype=np.int16))
    recorder.flush_due(1.0)  # everything before 0.5 s (4000) is final
    assert recorder.written_frames == 4000
    recorder.write(CALLEE, 3900, np.full(160, 9, dtype=np.int16))  # 100 late, 60 kept
    recorder.write(CALLEE, 1000, np.full(160, 9, dtype=np.int16))  # all late
    assert recorder.late_samples == 260
    info = recorder.close()
    assert info is not None
    assert info.late_samples == 260
    data, _ = read_wav(info.path)
    assert not data[:4000, 1].any()
    assert (data[4000:4060, 1] == 9).all()
    assert not data[4060:, 1].any()
    assert (data[:, 0] == 5).all()


def test_overlapping_writes_later_write_wins(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "overlap.wav")
    recorder.write(CALLER, 0, np.full(320, 1, dtype=np.int16))
    recorder.write(CALLER, 160, np.full(320, 2, dtype=np.int16))
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    assert (data[:160, 0] == 1).all()
    assert (data[160:480, 0] == 2).all()


def test_nothing_written_creates_no_file(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "none.wav"
    recorder = StereoRecorder(final)
    recorder.flush(8000)
    recorder.flush_due(10.0)
    recorder.write(CALLER, 0, np.zeros(0, dtype=np.int16))
    assert not recorder.started
    assert recorder.close() is None
    assert recorder.close() is None
    assert not final.parent.exists()


def test_part_file_exists_until_close_then_is_renamed(tmp_path: Path) -> None:
    final = tmp_path / "tenant" / "2024" / "call.wav"
    recorder = StereoRecorder(final)
    recorder.write(CALLEE, 0, tone(1000.0, 160))
    part = final.with_name("call.wav.part")
    assert recorder.started
    assert recorder.part_path == part
    assert part.exists()
    assert not final.exists()
    info = recorder.close()
    assert info is not None
    assert final.exists()
    assert not part.exists()
    assert info.path == final


def test_info_sizes_and_sha256_match_the_file(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "sum.wav")
    recorder.write(CALLER, 0, noise(12_345, 1))
    recorder.write(CALLEE, 5, noise(12_000, 2))
    info = recorder.close()
    assert info is not None
    content = info.path.read_bytes()
    assert info.frames == 12_345
    assert info.bytes == len(content) == WAV_HEADER_BYTES + 12_345 * 4
    assert info.sha256 == hashlib.sha256(content).hexdigest()
    assert info.duration_s == pytest.approx(12_345 / RATE)
    assert (info.sample_rate, info.channels, info.late_samples) == (RATE, 2, 0)
    assert content[:WAV_HEADER_BYTES] == wav_header(RATE, 2, 12_345 * 4)
    assert int.from_bytes(content[4:8], "little") == len(content) - 8
    assert int.from_bytes(content[40:44], "little") == 12_345 * 4
    assert content[8:16] == b"WAVEfmt "
    _, reader = read_wav(info.path)
    assert reader.getnframes() == 12_345


def test_closing_twice_returns_the_same_recording(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "twice.wav")
    recorder.write(CALLER, 0, tone(440.0, 800))
    first = recorder.close()
    second = recorder.close()
    assert isinstance(first, RecordingInfo)
    assert first == second
    with pytest.raises(ValueError, match="closed"):
        recorder.write(CALLER, 800, tone(440.0, 160))
    recorder.flush_due(100.0)  # harmless after close
    assert first.path.stat().st_size == first.bytes


def test_abort_removes_the_part_file(tmp_path: Path) -> None:
    final = tmp_path / "aborted.wav"
    recorder = StereoRecorder(final)
    recorder.write(CALLER, 0, tone(440.0, 8000))
    recorder.flush(4000)
    assert recorder.part_path.exists()
    recorder.abort()
    assert not recorder.part_path.exists()
    assert not final.exists()
    assert not recorder.started
    assert recorder.close() is None
    assert list(tmp_path.iterdir()) == []


def test_abort_after_close_keeps_the_recording(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "kept.wav")
    recorder.write(CALLER, 0, tone(440.0, 800))
    info = recorder.close()
    recorder.abort()
    assert info is not None
    assert info.path.exists()


def test_bad_input_is_refused(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="int16"):
        recorder.write(CALLER, 0, np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int16"):
        recorder.write(CALLER, 0, np.zeros((2, 80), dtype=np.int16))
    with pytest.raises(ValueError, match="channel"):
        recorder.write(2, 0, np.zeros(160, dtype=np.int16))
    assert not recorder.started


def test_paused_capture_becomes_silence_of_its_true_length(tmp_path: Path) -> None:
    """Flushing through a pause longer than the buffer writes silence frame for frame."""
    recorder = StereoRecorder(tmp_path / "pause.wav", latency_s=0.5)
    before = noise(1600, 3)
    after = noise(1600, 4)
    recorder.write(CALLER, 0, before)
    recorder.write(CALLEE, 0, before)
    for tick in range(1, 301):  # 30 s of ticks with nothing captured
        recorder.flush_due(tick * 0.1)
    restart = 30 * RATE
    recorder.write(CALLER, restart, after)
    recorder.write(CALLEE, restart + 80, after)
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    assert len(data) == restart + 80 + 1600
    np.testing.assert_array_equal(data[:1600, 0], before)
    np.testing.assert_array_equal(data[:1600, 1], before)
    assert not data[1600:restart].any()
    np.testing.assert_array_equal(data[restart : restart + 1600, 0], after)
    np.testing.assert_array_equal(data[restart + 80 :, 1], after)


def test_write_far_ahead_then_behind_it(tmp_path: Path) -> None:
    """A write past the buffer, then one before it: the buffer moves and grows."""
    recorder = StereoRecorder(tmp_path / "far.wav")
    late_audio = noise(500, 5)
    early_audio = noise(300, 6)
    recorder.write(CALLER, 100_000, late_audio)
    recorder.write(CALLEE, 50, early_audio)
    recorder.write(CALLEE, 60_000, early_audio)
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    expected = np.zeros((100_500, 2), dtype=np.int16)
    expected[100_000:, 0] = late_audio
    expected[50:350, 1] = early_audio
    expected[60_000:60_300, 1] = early_audio
    np.testing.assert_array_equal(data, expected)


def test_a_long_call_with_jitter_matches_the_signal(tmp_path: Path) -> None:
    """60 s of 20 ms packets, arriving up to 4 packets out of order, flushed every 100 ms."""
    rng = np.random.default_rng(11)
    count = 60 * RATE
    caller = noise(count, 7)
    callee = noise(count, 8)
    recorder = StereoRecorder(tmp_path / "long.wav", latency_s=0.5)
    packets = [(channel, start) for start in range(0, count, 160) for channel in (0, 1)]
    arrival = np.array([start / RATE for _, start in packets]) + rng.uniform(0, 0.08, len(packets))
    next_tick = 0.1
    for index in np.argsort(arrival, kind="stable"):
        channel, start = packets[index]
        while arrival[index] >= next_tick:
            recorder.flush_due(next_tick)
            next_tick += 0.1
        signal = caller if channel == 0 else callee
        recorder.write(channel, start, signal[start : start + 160])
    info = recorder.close()
    assert info is not None
    assert info.late_samples == 0
    data, _ = read_wav(info.path)
    np.testing.assert_array_equal(data[:, 0], caller)
    np.testing.assert_array_equal(data[:, 1], callee)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_many_small_flushes_equal_one_big_flush(tmp_path: Path, data: st.DataObject) -> None:
    length = data.draw(st.integers(1, 30_000), label="length")
    caller = noise(length, 9)
    callee = noise(length, 10)
    whole = StereoRecorder(tmp_path / "whole.wav")
    whole.write(CALLER, 0, caller)
    whole.write(CALLEE, 0, callee)
    whole.flush(length)
    one = whole.close()

    cuts = sorted(data.draw(st.sets(st.integers(1, length - 1) if length > 1 else st.nothing())))
    bounds = [0, *cuts, length]
    chunked = StereoRecorder(tmp_path / "chunked.wav")
    for low, high in itertools.pairwise(bounds):
        chunked.write(CALLER, low, caller[low:high])
        chunked.write(CALLEE, low, callee[low:high])
        chunked.flush(data.draw(st.integers(0, high), label="flush upto"))
    many = chunked.close()
    assert one is not None and many is not None
    assert chunked.late_samples == 0
    assert (many.frames, many.sha256) == (one.frames, one.sha256)
    assert many.path.read_bytes()[WAV_HEADER_BYTES:] == one.path.read_bytes()[WAV_HEADER_BYTES:]


OPERATION = st.one_of(
    st.tuples(
        st.just("write"),
        st.integers(0, 1),
        st.integers(-500, 40_000),
        st.integers(0, 6000),
        st.integers(0, 2**16),
    ),
    st.tuples(st.just("flush"), st.integers(0, 45_000)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(OPERATION, max_size=40))
def test_random_writes_and_flushes_match_a_model(
    tmp_path: Path, operations: list[tuple[object, ...]]
) -> None:
    """Any order of writes and flushes: the file is what a plain array model says."""
    final = tmp_path / "model.wav"
    final.unlink(missing_ok=True)
    recorder = StereoRecorder(final, latency_s=0.1)
    model = np.zeros((100_000, 2), dtype=np.int16)
    flushed = 0
    furthest = 0
    started = False
    late = 0
    for operation in operations:
        if operation[0] == "write":
            _, channel, start, count, seed = operation
            assert isinstance(channel, int) and isinstance(start, int)
            assert isinstance(count, int) and isinstance(seed, int)
            samples = noise(count, seed)
            recorder.write(channel, start, samples)
            keep_from = min(count, max(flushed - start, 0))
            late += keep_from
            if keep_from < count:
                started = True
                model[start + keep_from : start + count, channel] = samples[keep_from:]
                furthest = max(furthest, start + count)
        else:
            upto = operation[1]
            assert isinstance(upto, int)
            recorder.flush(upto)
            if started:
                flushed = max(flushed, upto)
        assert recorder.started == started
        assert recorder.written_frames == flushed
    info = recorder.close()
    assert recorder.late_samples == late
    if not started:
        assert info is None
        assert not final.exists()
        return
    assert info is not None
    frames = max(flushed, furthest)
    assert info.frames == frames
    data, _ = read_wav(final)
    np.testing.assert_array_equal(data, model[:frames])


def test_flush_due_writes_in_chunks_of_at_least_a_quarter_second(tmp_path: Path) -> None:
    recorder = StereoRecorder(tmp_path / "chunks.wav", latency_s=0.5)
    recorder.write(CALLER, 0, np.full(16000, 5, dtype=np.int16))
    recorder.flush_due(0.55)  # 0.05 s due: left for a larger write
    assert recorder.written_frames == 0
    recorder.flush_due(0.75)  # 0.25 s due
    assert recorder.written_frames == 2000
    recorder.flush_due(0.9)
    assert recorder.written_frames == 2000
    info = recorder.close()
    assert info is not None
    data, _ = read_wav(info.path)
    assert len(data) == 16000 and (data[:, 0] == 5).all()
