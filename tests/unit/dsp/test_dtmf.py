"""DTMF detection against the ITU-T Q.24 receiver limits, streaming, and masking."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp import tones
from dsp.dtmf import (
    DtmfConfig,
    DtmfDetector,
    DtmfError,
    DtmfEvent,
    DtmfMasker,
    detect_dtmf,
    dtmf_mask,
    feed_many,
)
from tests.unit.dsp import signals

RATE = 8000
DIGITS = list(tones.DTMF_DIGITS)


def ms(milliseconds: float) -> int:
    return round(milliseconds * RATE / 1000)


def quiet(milliseconds: float) -> np.ndarray:
    return np.zeros(ms(milliseconds), dtype=np.int16)


def joined(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.int16)


def with_noise(pcm: np.ndarray, snr_db: float, *, seed: int, reference: np.ndarray) -> np.ndarray:
    """``pcm`` plus white noise ``snr_db`` below the power of ``reference``."""
    power = float(np.mean(reference.astype(np.float64) ** 2))
    noise = signals.white_noise(len(pcm), np.sqrt(power / 10 ** (snr_db / 10)), seed=seed)
    return np.clip(np.rint(pcm + noise), -32768, 32767).astype(np.int16)


def digits_of(events: list[DtmfEvent]) -> str:
    return "".join(event.digit for event in events)


def stream(pcm: np.ndarray, chunk_sizes: list[int], detector: DtmfDetector | None = None) -> list:
    """Every event a detector emits when fed ``pcm`` in chunks cycling through the sizes."""
    detector = detector or DtmfDetector()
    events = []
    position = 0
    for size in itertools.cycle(chunk_sizes):
        if position >= len(pcm):
            break
        events += detector.feed(pcm[position : position + size])
        position += size
    return events + detector.flush()


# ---------------------------------------------------------------- every digit, timing


@pytest.mark.parametrize("digit", DIGITS)
def test_every_digit_is_detected_once_at_its_place(digit: str) -> None:
    pcm = joined(quiet(100), tones.dtmf_tone(digit, 0.1), quiet(100))
    (event,) = detect_dtmf(pcm)
    assert event.digit == digit
    assert abs(event.start_sample - ms(100)) <= ms(7)
    assert event.end_sample is not None and abs(event.end_sample - ms(200)) <= ms(7)


def test_a_whole_keypad_sequence_in_order() -> None:
    pcm = tones.dtmf_sequence("123A456B789C*0#D", tone_s=0.06, gap_s=0.06)
    assert digits_of(detect_dtmf(pcm)) == "123A456B789C*0#D"


def test_a_tone_at_the_very_start_and_end_of_the_buffer() -> None:
    events = detect_dtmf(tones.dtmf_tone("7", 0.2))
    assert digits_of(events) == "7"
    assert events[0].start_sample <= ms(7)  # the first frame has no phase reference
    assert events[0].end_sample is not None and events[0].end_sample >= ms(193)


# ---------------------------------------------------------------- frequency tolerance


@pytest.mark.parametrize("error", [-0.015, 0.015])
@pytest.mark.parametrize("digit", DIGITS)
def test_frequency_error_of_1_5_percent_is_accepted(digit: str, error: float) -> None:
    pcm = joined(quiet(50), tones.dtmf_tone(digit, 0.06, frequency_error=error), quiet(50))
    assert digits_of(detect_dtmf(pcm)) == digit


@pytest.mark.parametrize("error", [-0.035, 0.035])
@pytest.mark.parametrize("digit", DIGITS)
def test_frequency_error_of_3_5_percent_is_rejected(digit: str, error: float) -> None:
    pcm = joined(quiet(50), tones.dtmf_tone(digit, 0.3, frequency_error=error), quiet(50))
    assert detect_dtmf(pcm) == []


@pytest.mark.parametrize(("row_error", "column_error"), [(0.015, -0.015), (-0.015, 0.015)])
def test_opposite_errors_of_the_two_tones_are_accepted(
    row_error: float, column_error: float
) -> None:
    low, high = tones.DTMF_FREQUENCIES["5"]
    pair = tones.dual_tone(low * (1 + row_error), high * (1 + column_error), 0.06)
    assert digits_of(detect_dtmf(joined(quiet(50), pair, quiet(50)))) == "5"


@pytest.mark.parametrize("which", ["row", "column"])
def test_one_tone_3_5_percent_off_is_enough_to_reject(which: str) -> None:
    low, high = tones.DTMF_FREQUENCIES["9"]
    if which == "row":
        low *= 1.035
    else:
        high *= 0.965
    assert detect_dtmf(tones.dual_tone(low, high, 0.3)) == []


# ---------------------------------------------------------------- twist


@pytest.mark.parametrize("twist_db", [8.0, 4.0, 0.0, -2.0, -4.0])
@pytest.mark.parametrize("digit", ["1", "5", "9", "0", "D"])
def test_twist_inside_the_limits_is_accepted(digit: str, twist_db: float) -> None:
    # positive: normal twist (high group weaker); negative: reverse twist
    pcm = tones.dtmf_tone(digit, 0.06, amplitude_dbfs=-12.0, twist_db=twist_db)
    assert digits_of(detect_dtmf(joined(quiet(50), pcm, quiet(50)))) == digit


@pytest.mark.parametrize("twist_db", [11.0, 16.0, -7.0, -12.0])
@pytest.mark.parametrize("digit", ["1", "5", "9", "0", "D"])
def test_twist_outside_the_limits_is_rejected(digit: str, twist_db: float) -> None:
    # both tones stay well above the level floor (-36 dBFS)
    pcm = tones.dtmf_tone(digit, 0.3, amplitude_dbfs=-16.0, twist_db=twist_db)
    assert detect_dtmf(joined(quiet(50), pcm, quiet(50))) == []


def test_twist_limits_are_configurable() -> None:
    pcm = joined(quiet(50), tones.dtmf_tone("3", 0.1, amplitude_dbfs=-7.0, twist_db=6.0))
    assert digits_of(detect_dtmf(pcm)) == "3"
    assert detect_dtmf(pcm, config=DtmfConfig(max_normal_twist_db=5.0)) == []


# ---------------------------------------------------------------- duration and pauses


@pytest.mark.parametrize("offset", range(0, 51, 5))
def test_a_40_ms_tone_is_detected_at_any_alignment(offset: int) -> None:
    for digit in "14*D":
        pcm = joined(quiet(30), np.zeros(offset, np.int16), tones.dtmf_tone(digit, 0.04), quiet(60))
        assert digits_of(detect_dtmf(pcm)) == digit


@pytest.mark.parametrize("duration_ms", [20, 23, 25])
@pytest.mark.parametrize("offset", range(0, 51, 5))
def test_a_tone_of_25_ms_or_less_is_rejected(duration_ms: int, offset: int) -> None:
    for digit in "14*D":
        tone = tones.dtmf_tone(digit, duration_ms / 1000, amplitude_dbfs=-7.0)
        pcm = joined(quiet(30), np.zeros(offset, np.int16), tone, quiet(60))
        assert detect_dtmf(pcm) == []


def test_digits_separated_by_40_ms_pauses_are_counted_separately() -> None:
    pcm = tones.dtmf_sequence("1123321#", tone_s=0.05, gap_s=0.04)
    assert digits_of(detect_dtmf(pcm)) == "1123321#"


@pytest.mark.parametrize("offset", range(0, 51, 10))
def test_the_same_digit_twice_with_a_40_ms_pause_is_two_presses(offset: int) -> None:
    tone = tones.dtmf_tone("8", 0.05)
    pcm = joined(quiet(20), np.zeros(offset, np.int16), tone, quiet(40), tone, quiet(40), tone)
    events = detect_dtmf(pcm)
    assert digits_of(events) == "888"
    assert all(
        a.end_sample is not None and a.end_sample <= b.start_sample
        for a, b in itertools.pairwise(events)
    )


def test_a_held_key_is_one_press_however_long() -> None:
    pcm = joined(quiet(100), tones.dtmf_tone("5", 3.0), quiet(100))
    (event,) = detect_dtmf(pcm)
    assert event.digit == "5"
    assert event.end_sample is not None and event.end_sample - event.start_sample >= ms(2990)


@pytest.mark.parametrize("break_ms", [2, 5, 10])
def test_a_short_break_in_a_held_tone_does_not_make_a_second_press(break_ms: int) -> None:
    tone = tones.dtmf_tone("6", 0.2)
    pcm = joined(quiet(50), tone, quiet(break_ms), tone, quiet(50))
    assert digits_of(detect_dtmf(pcm)) == "6"


def test_changing_digit_without_a_pause_gives_both() -> None:
    pcm = joined(quiet(50), tones.dtmf_tone("2", 0.1), tones.dtmf_tone("3", 0.1), quiet(50))
    events = detect_dtmf(pcm)
    assert digits_of(events) == "23"
    assert events[0].end_sample is not None and events[0].end_sample <= events[1].start_sample


# ---------------------------------------------------------------- level and noise


@pytest.mark.parametrize("level_dbfs", [-7.0, -10.0, -20.0, -28.2, -33.0])
def test_levels_down_to_minus_25_dbm0_are_detected(level_dbfs: float) -> None:
    # -25 dBm0 per tone is -28.2 dBFS in mu-law; each tone here is at ``level_dbfs``
    pcm = joined(quiet(50), tones.dtmf_tone("0", 0.06, amplitude_dbfs=level_dbfs), quiet(50))
    assert digits_of(detect_dtmf(pcm)) == "0"


def test_tones_below_the_level_floor_are_ignored() -> None:
    pcm = joined(quiet(50), tones.dtmf_tone("0", 0.2, amplitude_dbfs=-40.0), quiet(50))
    assert detect_dtmf(pcm) == []
    assert digits_of(detect_dtmf(pcm, config=DtmfConfig(min_level_dbfs=-45.0))) == "0"


@pytest.mark.parametrize("digit", DIGITS)
def test_every_digit_is_detected_in_white_noise_at_15_db_snr(digit: str) -> None:
    tone = tones.dtmf_tone(digit, 0.05, amplitude_dbfs=-10.0)
    clean = joined(quiet(100), tone, quiet(100))
    noisy = with_noise(clean, 15.0, seed=ord(digit), reference=tone)
    assert digits_of(detect_dtmf(noisy)) == digit


@pytest.mark.parametrize(("twist_db", "error"), [(8.0, 0.015), (8.0, -0.015), (-4.0, 0.015)])
def test_worst_case_twist_and_frequency_error_in_noise(twist_db: float, error: float) -> None:
    for seed, digit in enumerate("147*"):
        tone = tones.dtmf_tone(digit, 0.06, twist_db=twist_db, frequency_error=error)
        clean = joined(quiet(100), tone, quiet(100))
        noisy = with_noise(clean, 15.0, seed=seed, reference=tone)
        assert digits_of(detect_dtmf(noisy)) == digit


def test_noise_and_silence_alone_give_nothing() -> None:
    assert detect_dtmf(quiet(2000)) == []
    for seed, rms in enumerate([30.0, 1000.0, 10000.0]):
        noise = signals.white_noise(ms(3000), rms, seed=seed)
        assert detect_dtmf(np.clip(noise, -32768, 32767).astype(np.int16)) == []


def test_a_held_key_in_noise_stays_one_press() -> None:
    tone = tones.dtmf_tone("#", 2.0, amplitude_dbfs=-10.0)
    noisy = with_noise(joined(quiet(100), tone, quiet(100)), 15.0, seed=5, reference=tone)
    assert digits_of(detect_dtmf(noisy)) == "#"


def test_g711_round_trip_keeps_digits() -> None:
    from dsp import g711

    pcm = tones.dtmf_sequence("0123456789", tone_s=0.05, gap_s=0.05, amplitude_dbfs=-20.0)
    for encode, decode in [
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ]:
        assert digits_of(detect_dtmf(decode(encode(pcm)))) == "0123456789"


# ---------------------------------------------------------------- streaming


def mixed_programme() -> np.ndarray:
    """Speech-like audio with digits between phrases, in noise."""
    speech = signals.scale_to_dbfs(signals.voiced_speech(3.0, seed=7), -6.0)
    digits = tones.dtmf_sequence("9#1", tone_s=0.07, gap_s=0.05, amplitude_dbfs=-12.0)
    pcm = joined(speech[:8000], quiet(60), digits, speech[8000:16000], tones.dtmf_tone("5", 0.6))
    return with_noise(pcm, 30.0, seed=1, reference=digits)


@pytest.mark.parametrize(
    "chunk_sizes", [[1], [7, 13], [50, 51, 52], [101, 1, 333], [160], [2048, 17]]
)
def test_streaming_in_any_chunks_gives_the_batch_events(chunk_sizes: list[int]) -> None:
    pcm = mixed_programme()
    batch = detect_dtmf(pcm)
    assert digits_of(batch) == "9#15"
    streamed = stream(pcm, chunk_sizes)
    assert [event for event in streamed if event.ended] == batch
    starts = [event for event in streamed if not event.ended]
    assert [(e.digit, e.start_sample) for e in starts] == [(e.digit, e.start_sample) for e in batch]
    for press in batch:  # each press's start event comes before its end event
        assert streamed.index(DtmfEvent(press.digit, press.start_sample)) < streamed.index(press)


def test_start_event_comes_about_40_ms_into_the_tone() -> None:
    detector = DtmfDetector()
    assert detector.feed(quiet(100)) == []
    tone = tones.dtmf_tone("4", 0.2)
    emitted_at = None
    for position in range(0, len(tone), 40):  # 5 ms chunks
        events = detector.feed(tone[position : position + 40])
        if events:
            assert events == [DtmfEvent("4", events[0].start_sample)]
            emitted_at = position + 40
            break
    assert emitted_at is not None and emitted_at <= ms(45)
    events = detector.feed(quiet(100))
    assert len(events) == 1 and events[0].ended and events[0].digit == "4"
    assert detector.flush() == []


def test_flush_releases_a_held_key_and_starts_a_new_stream() -> None:
    detector = DtmfDetector()
    started = detector.feed(tones.dtmf_tone("C", 0.2))
    assert [event.digit for event in started] == ["C"] and not started[0].ended
    (released,) = detector.flush()
    assert released.digit == "C" and released.ended
    again = detector.feed(tones.dtmf_tone("C", 0.2)) + detector.flush()
    assert [event.start_sample for event in again] == [started[0].start_sample] * 2


@settings(max_examples=40, deadline=None)
@given(
    pcm=hnp.arrays(np.int16, st.integers(0, 3000)),
    chunk_sizes=st.lists(st.integers(1, 700), min_size=1, max_size=5),
)
def test_random_audio_never_breaks_the_detector(pcm: np.ndarray, chunk_sizes: list[int]) -> None:
    events = stream(pcm, chunk_sizes)
    finished = [event for event in events if event.ended]
    assert finished == detect_dtmf(pcm)
    for event in finished:
        assert event.digit in tones.DTMF_DIGITS
        assert event.end_sample is not None
        assert 0 <= event.start_sample < event.end_sample <= len(pcm)


@settings(max_examples=25, deadline=None)
@given(
    digits=st.text(alphabet=tones.DTMF_DIGITS, min_size=1, max_size=4),
    level=st.floats(-30.0, -7.0),
    seed=st.integers(0, 1000),
)
def test_dialled_sequences_in_noise_are_recovered(digits: str, level: float, seed: int) -> None:
    pcm = joined(
        quiet(40), tones.dtmf_sequence(digits, tone_s=0.06, gap_s=0.06, amplitude_dbfs=level)
    )
    reference = tones.dtmf_tone(digits[0], 0.06, amplitude_dbfs=level)
    noisy = with_noise(pcm, 20.0, seed=seed, reference=reference)
    assert digits_of(detect_dtmf(noisy)) == digits


# ---------------------------------------------------------------- masking


def test_mask_silences_the_tone_and_leaves_the_speech() -> None:
    speech = signals.scale_to_dbfs(signals.voiced_speech(2.0, seed=3), -6.0)
    tone = tones.dtmf_tone("7", 0.12, amplitude_dbfs=-8.0)
    pcm = joined(speech[:8000], quiet(50), tone, quiet(50), speech[8000:])
    masked, events = dtmf_mask(pcm, guard_s=0.02)
    assert digits_of(events) == "7"
    tone_start, tone_end = 8000 + ms(50), 8000 + ms(50) + len(tone)
    assert not masked[tone_start - ms(20) : tone_end + ms(20)].any()
    start = events[0].start_sample - ms(20)
    end = (events[0].end_sample or 0) + ms(20)
    assert np.array_equal(masked[:start], pcm[:start])
    assert np.array_equal(masked[end:], pcm[end:])
    assert end - start <= len(tone) + ms(60)
    assert detect_dtmf(masked) == []
    assert masked.dtype == np.int16 and len(masked) == len(pcm)


def test_mask_without_digits_is_an_unchanged_copy() -> None:
    speech = signals.scale_to_dbfs(signals.voiced_speech(1.0, seed=4), -6.0)
    masked, events = dtmf_mask(speech)
    assert events == [] and np.array_equal(masked, speech) and masked is not speech


@pytest.mark.parametrize("chunk", [1, 37, 160, 1000])
def test_streaming_mask_is_the_batch_mask_delayed(chunk: int) -> None:
    pcm = mixed_programme()
    expected, events = dtmf_mask(pcm, guard_s=0.02)
    masker = DtmfMasker(delay_s=0.1, guard_s=0.02)
    out = [masker.feed(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    out.append(masker.flush())
    delayed = np.concatenate(out)
    delay = ms(100)
    assert len(delayed) == len(pcm) + delay
    assert not delayed[:delay].any()
    assert np.array_equal(delayed[delay:], expected)
    assert masker.presses == events


# ---------------------------------------------------------------- inputs


def test_wrong_audio_is_refused_with_a_reason() -> None:
    detector = DtmfDetector()
    with pytest.raises(DtmfError, match="int16"):
        detector.feed(np.zeros(160, dtype=np.float32))
    with pytest.raises(DtmfError, match="int16"):
        detector.feed(b"\x00" * 320)  # type: ignore[arg-type]
    with pytest.raises(DtmfError, match="one-dimensional"):
        detector.feed(np.zeros((2, 160), dtype=np.int16))
    with pytest.raises(DtmfError, match="8000 Hz"):
        DtmfDetector(sample_rate=16000)
    with pytest.raises(DtmfError, match="int16"):
        dtmf_mask(np.zeros(10, dtype=np.int32))
    # a refused chunk leaves the stream as it was
    pcm = tones.dtmf_tone("1", 0.1)
    assert digits_of([e for e in detector.feed(pcm) + detector.flush() if e.ended]) == "1"


@pytest.mark.parametrize(
    ("settings_", "reason"),
    [
        ({"frequency_tolerance": 0.05}, "frequency_tolerance"),
        ({"max_normal_twist_db": -1.0}, "max_normal_twist_db"),
        ({"min_tone_share_db": 1.0}, "min_tone_share_db"),
        ({"min_phase_coherence": 1.5}, "min_phase_coherence"),
        ({"min_duration_s": 0.01}, "min_duration_s"),
        ({"min_pause_s": 2.0}, "min_pause_s"),
    ],
)
def test_impossible_settings_are_refused(settings_: dict[str, float], reason: str) -> None:
    with pytest.raises(DtmfError, match=reason):
        DtmfConfig(**settings_)


def test_frame_counts_follow_the_durations() -> None:
    config = DtmfConfig()
    assert (config.confirm_frames, config.release_frames) == (4, 5)
    longer = DtmfConfig(min_duration_s=0.06, min_pause_s=0.06)
    assert (longer.confirm_frames, longer.release_frames) == (7, 8)


def test_masker_delay_must_cover_confirmation() -> None:
    with pytest.raises(DtmfError, match="delay"):
        DtmfMasker(delay_s=0.03)
    with pytest.raises(DtmfError, match="guard"):
        DtmfMasker(guard_s=-0.1)


# ---------------------------------------------------------------- many streams at once


def feed_together(programmes: list[np.ndarray], chunk_sizes: list[list[int]]) -> list[list]:
    """Every event each stream's detector emits when all are fed together, round by round,
    stream i in chunks cycling through ``chunk_sizes[i]`` (an empty chunk once it ends)."""
    detectors = [DtmfDetector() for _ in programmes]
    events: list[list] = [[] for _ in programmes]
    positions = [0] * len(programmes)
    cycles = [itertools.cycle(sizes) for sizes in chunk_sizes]
    while any(position < len(pcm) for position, pcm in zip(positions, programmes, strict=True)):
        chunks = []
        for number, pcm in enumerate(programmes):
            size = next(cycles[number])
            chunks.append(pcm[positions[number] : positions[number] + size])
            positions[number] += size
        for number, found in enumerate(feed_many(detectors, chunks)):
            events[number] += found
    for number, detector in enumerate(detectors):
        events[number] += detector.flush()
    return events


def test_streams_fed_together_each_give_their_own_events() -> None:
    """A tone in one stream never leaks into its neighbours in the stacked screen, and
    each stream keeps its own timing, whatever the other streams' chunk sizes."""
    programmes = [
        mixed_programme(),
        joined(quiet(35), tones.dtmf_tone("7", 0.08), quiet(500)),
        signals.scale_to_dbfs(signals.voiced_speech(2.0, seed=4), -6.0),
        joined(tones.dtmf_tone("D", 0.05), quiet(51), tones.dtmf_tone("D", 0.05)),
        quiet(10),  # shorter than a frame: nothing, and no effect on the others
    ]
    sizes = [[160], [51, 1, 700], [1600], [7, 13], [3]]
    together = feed_together(programmes, sizes)
    for pcm, chunk_sizes, events in zip(programmes, sizes, together, strict=True):
        alone = stream(pcm, chunk_sizes)
        assert events == alone
        assert [event for event in events if event.ended] == detect_dtmf(pcm)
    assert digits_of([e for e in together[0] if e.ended]) == "9#15"
    assert digits_of([e for e in together[1] if e.ended]) == "7"
    assert digits_of([e for e in together[3] if e.ended]) == "DD"
    assert together[2] == [] and together[4] == []


@settings(max_examples=30, deadline=None)
@given(
    streams=st.lists(
        st.tuples(
            st.sampled_from(DIGITS),
            st.integers(0, 400),
            st.integers(1, 2000),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_streams_fed_together_match_each_fed_alone(streams: list[tuple[str, int, int]]) -> None:
    programmes = [
        joined(quiet(lead / 8), tones.dtmf_tone(digit, 0.06), quiet(30))
        for digit, lead, _ in streams
    ]
    sizes = [[size] for _, _, size in streams]
    together = feed_together(programmes, sizes)
    for pcm, chunk_sizes, events in zip(programmes, sizes, together, strict=True):
        assert events == stream(pcm, chunk_sizes)


def test_feed_many_refuses_mismatched_inputs() -> None:
    with pytest.raises(DtmfError, match="2 detectors but 1 chunks"):
        feed_many([DtmfDetector(), DtmfDetector()], [quiet(20)])
    strict = DtmfDetector(config=DtmfConfig(max_normal_twist_db=4.0))
    with pytest.raises(DtmfError, match="share one configuration"):
        feed_many([DtmfDetector(), strict], [quiet(20), quiet(20)])
    assert feed_many([], []) == []
