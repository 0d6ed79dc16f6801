"""Talk-time cues: the definitions on hand-made segments, a brute-force check on a time grid,
and calls of real synthesized speech (espeak-ng, required on CI) placed on two channels."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsp.vad import Segment
from dsp.wav import encode_wav
from gateway.analysis.cues import (
    CueConfig,
    Party,
    TalkCues,
    cues_from_segments,
    cues_from_wav,
    talk_cues,
)
from gateway.analysis.recorder import StereoRecorder
from tests.unit.dsp import signals

RATE = 8000
CALLER, CALLEE = Party.CALLER, Party.CALLEE


def segs(*spans: tuple[float, float]) -> list[Segment]:
    return [Segment(start, end) for start, end in spans]


# ---------------------------------------------------------------------- definitions


def test_talk_overlap_and_silence() -> None:
    cues = cues_from_segments(segs((1, 5), (8, 10)), segs((4, 6), (12, 13)), 20.0)
    assert cues.caller.talk_s == pytest.approx(6.0)
    assert cues.callee.talk_s == pytest.approx(3.0)
    assert cues.overlap_s == pytest.approx(1.0)
    assert cues.silence_s == pytest.approx(20.0 - 8.0)
    assert cues.silence_share == pytest.approx(12.0 / 20.0)
    assert cues.caller.talk_share == pytest.approx(6.0 / 9.0)
    assert cues.callee.talk_share == pytest.approx(3.0 / 9.0)
    assert cues.caller.talk_to_listen == pytest.approx(2.0)
    assert cues.callee.talk_to_listen == pytest.approx(0.5)


def test_a_party_that_never_spoke_leaves_the_ratio_undefined() -> None:
    cues = cues_from_segments(segs((0, 3)), [], 4.0)
    assert cues.caller.talk_to_listen is None
    assert cues.callee.talk_to_listen == 0.0
    assert cues.caller.talk_share == 1.0
    assert cues.interruptions == ()
    empty = cues_from_segments([], [], 0.0)
    assert (empty.silence_share, empty.caller.talk_share, empty.longest_monologue) == (0, 0, None)


def test_interruption_is_a_start_inside_the_other_partys_speech() -> None:
    cues = cues_from_segments(
        segs((0, 10), (20, 25)),
        segs((4, 6), (10, 12), (24.95, 27), (30, 31)),
        40.0,
    )
    # (4, 6) starts inside (0, 10): callee interrupts; (10, 12) starts as the caller stops;
    # (24.95, 27) overlaps 50 ms, under min_overlap_s: a turn change that touched
    assert [(i.by, i.at_s, i.overlap_s) for i in cues.interruptions] == [(CALLEE, 4.0, 2.0)]
    assert (cues.callee.interruptions, cues.caller.interruptions) == (1, 0)


def test_interruptions_by_both_parties_are_counted_by_who_started_second() -> None:
    cues = cues_from_segments(segs((0, 5), (7, 9)), segs((3, 8)), 10.0)
    assert [(i.by, i.at_s) for i in cues.interruptions] == [(CALLEE, 3.0), (CALLER, 7.0)]
    assert cues.interruptions[1].overlap_s == pytest.approx(1.0)
    assert (cues.caller.interruptions, cues.callee.interruptions) == (1, 1)


def test_simultaneous_starts_are_no_interruption() -> None:
    assert cues_from_segments(segs((1, 4)), segs((1, 3)), 5.0).interruptions == ()


def test_min_overlap_is_configurable() -> None:
    caller, callee = segs((0, 5)), segs((4.95, 8))
    assert cues_from_segments(caller, callee, 8.0).interruptions == ()
    strict = cues_from_segments(caller, callee, 8.0, CueConfig(min_overlap_s=0.0))
    assert [i.by for i in strict.interruptions] == [CALLEE]


def test_longest_monologue_joins_short_pauses_and_ignores_backchannels() -> None:
    cues = cues_from_segments(
        segs((0, 4), (5, 9), (9.5, 14), (20, 22)),  # pauses of 1 s and 0.5 s, then 6 s
        segs((6, 6.4), (15, 17)),  # "mm-hm" inside, a reply after
        25.0,
    )
    longest = cues.caller.longest_monologue
    assert longest is not None
    assert (longest.party, longest.start_s, longest.end_s) == (CALLER, 0.0, 14.0)
    assert cues.longest_monologue == longest
    assert cues.callee.longest_monologue is not None
    assert cues.callee.longest_monologue.duration_s == pytest.approx(2.0)


def test_a_monologue_ends_at_a_long_pause() -> None:
    cues = cues_from_segments(segs((0, 4), (6.5, 9)), [], 10.0)
    assert cues.longest_monologue is not None
    assert (cues.longest_monologue.start_s, cues.longest_monologue.end_s) == (0.0, 4.0)
    joined = cues_from_segments(segs((0, 4), (6.5, 9)), [], 10.0, CueConfig(max_pause_s=3.0))
    assert joined.longest_monologue is not None
    assert joined.longest_monologue.end_s == 9.0


def test_the_other_party_taking_the_floor_splits_a_monologue() -> None:
    # the callee talks over the caller for 2 s: the caller's floor is broken there
    cues = cues_from_segments(segs((0, 10)), segs((6, 8)), 10.0)
    longest = cues.caller.longest_monologue
    assert longest is not None
    assert (longest.start_s, longest.end_s) == (0.0, 6.0)
    # a reply within the caller's pause ends the monologue even when the pause is short
    cues = cues_from_segments(segs((0, 3), (4.5, 6)), segs((3.1, 4.4)), 6.0)
    assert cues.caller.longest_monologue is not None
    assert cues.caller.longest_monologue.end_s == 3.0


def test_overlapping_segments_of_one_party_are_merged() -> None:
    cues = cues_from_segments(segs((2, 5), (0, 3), (5, 6)), [], 6.0)
    assert cues.caller.segments == (Segment(0.0, 6.0),)
    assert cues.caller.talk_s == 6.0


def test_to_dict_is_json_with_the_cues() -> None:
    cues = cues_from_segments(segs((0, 10), (11, 12)), segs((4, 6)), 15.0)
    data = json.loads(json.dumps(cues.to_dict(), allow_nan=False))
    assert data["talk_s"] == {"caller": 11.0, "callee": 2.0}
    assert data["talk_to_listen"] == {"caller": 5.5, "callee": pytest.approx(0.182)}
    assert data["interruptions"]["total"] == 1
    assert data["interruptions"]["callee"] == 1
    assert data["interruptions"]["events"] == [{"by": "callee", "at_s": 4.0, "overlap_s": 2.0}]
    # the callee's 2 s take the floor: the caller's longest is (6, 12), across a 1 s pause
    assert data["longest_monologue"] == {
        "party": "caller",
        "start_s": 6.0,
        "end_s": 12.0,
        "duration_s": 6.0,
    }
    assert data["overlap_s"] == 2.0
    assert data["silence_s"] == 15.0 - 11.0
    assert data["segments"]["callee"] == [[4.0, 6.0]]


GRID = 0.01
spans = st.lists(
    st.tuples(st.integers(0, 2000), st.integers(1, 300)).map(
        lambda t: (t[0] * GRID, (t[0] + t[1]) * GRID)
    ),
    max_size=12,
)


@given(spans, spans)
def test_cues_match_a_count_on_a_time_grid(caller: list, callee: list) -> None:
    duration = 25.0
    cues = cues_from_segments(segs(*caller), segs(*callee), duration)
    a, b = grid_mask(caller, duration), grid_mask(callee, duration)
    assert cues.caller.talk_s == pytest.approx(a.sum() * GRID, abs=1e-6)
    assert cues.callee.talk_s == pytest.approx(b.sum() * GRID, abs=1e-6)
    assert cues.overlap_s == pytest.approx((a & b).sum() * GRID, abs=1e-6)
    cells = round(duration / GRID)
    assert cues.silence_s == pytest.approx((~(a | b))[:cells].sum() * GRID, abs=1e-6)
    for party, own, other in ((CALLER, a, b), (CALLEE, b, a)):
        assert cues.party(party).interruptions == grid_interruptions(own, other, 0.2)


def grid_mask(spans: list[tuple[float, float]], duration: float) -> npt.NDArray[np.bool_]:
    mask = np.zeros(round(duration / GRID) + 400, dtype=np.bool_)
    for start, end in spans:
        mask[round(start / GRID) : round(end / GRID)] = True
    return mask


def grid_interruptions(
    own: npt.NDArray[np.bool_], other: npt.NDArray[np.bool_], min_overlap_s: float
) -> int:
    """Starts of ``own`` runs at a cell where ``other`` already ran the cell before, with the
    overlap that follows long enough: the definition read cell by cell."""
    count = 0
    for index in np.flatnonzero(own & ~np.roll(own, 1)):
        if index == 0 or not (other[index - 1] and other[index]):
            continue
        length = 0
        while own[index + length] and other[index + length]:
            length += 1
        count += length * GRID >= min_overlap_s - 1e-9
    return count


# ---------------------------------------------------------------------- real speech

TOLERANCE_S = 0.3  # start and end of one utterance's segment against its voice


@pytest.fixture(scope="module")
def espeak_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not signals.espeak_available():
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is required on CI for the cue tests (apt install espeak-ng)")
        pytest.skip("espeak-ng is not installed")
    return tmp_path_factory.mktemp("espeak")


class Call:
    """Two channels of utterances placed at chosen times over low line noise."""

    def __init__(self, directory: Path, seconds: float) -> None:
        self.directory = directory
        self.channels = np.zeros((round(seconds * RATE), 2), dtype=np.float64)
        self.voiced: dict[Party, list[tuple[float, float]]] = {CALLER: [], CALLEE: []}

    def say(self, party: Party, at_s: float, text: str, voice: str = "en") -> tuple[float, float]:
        """``text`` spoken by ``party`` with its voice starting at ``at_s``; the voice's span."""
        pcm = signals.scale_to_dbfs(signals.espeak_speech(text, voice, self.directory), -9.0)
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 0.01 * np.abs(pcm).max())
        start = round(at_s * RATE) - int(loud[0])
        column = 0 if party is CALLER else 1
        self.channels[start : start + len(pcm), column] += pcm
        span = (at_s, (start + int(loud[-1]) + 1) / RATE)
        self.voiced[party].append(span)
        return span

    def stereo(self) -> npt.NDArray[np.int16]:
        noise = np.stack(
            [signals.white_noise(len(self.channels), 30.0, seed=s) for s in (1, 2)], axis=1
        )
        return np.clip(np.rint(self.channels + noise), -32768, 32767).astype(np.int16)

    def talk_s(self, party: Party) -> float:
        return sum(end - start for start, end in self.voiced[party])


GREETING = "Hello, I am calling about my invoice from last month."
ANSWER = (
    "Of course, let me pull up your account. I can see the invoice here, it was sent "
    "on the third of March and the total was forty two dollars and fifty cents."
)
OBJECTION = "Sorry, but that amount is wrong."
CLOSING = "Thank you, goodbye."


def assert_covers(cues: TalkCues, party: Party, span: tuple[float, float]) -> None:
    """Some segment of ``party`` starts and ends within the tolerance of ``span``'s voice."""
    found = cues.party(party).segments
    assert any(
        abs(s.start_s - span[0]) <= TOLERANCE_S and abs(s.end_s - span[1]) <= TOLERANCE_S
        for s in found
    ), (span, found)


def test_turns_with_gaps_have_no_interruption(espeak_dir: Path) -> None:
    call = Call(espeak_dir, 20.0)
    greeting = call.say(CALLER, 1.0, GREETING)
    answer = call.say(CALLEE, greeting[1] + 0.7, ANSWER, "en-us+f3")
    closing = call.say(CALLER, answer[1] + 0.8, CLOSING)
    cues = talk_cues(call.stereo())
    assert cues.interruptions == ()
    assert cues.overlap_s <= 0.1
    for party, span in ((CALLER, greeting), (CALLEE, answer), (CALLER, closing)):
        assert_covers(cues, party, span)
    for party in (CALLER, CALLEE):
        assert cues.party(party).talk_s == pytest.approx(call.talk_s(party), abs=2 * TOLERANCE_S)
    spoken = call.talk_s(CALLER) + call.talk_s(CALLEE)
    assert cues.silence_s == pytest.approx(20.0 - spoken, abs=3 * TOLERANCE_S)
    assert cues.longest_monologue is not None
    assert cues.longest_monologue.party is CALLEE
    assert cues.longest_monologue.duration_s == pytest.approx(answer[1] - answer[0], abs=0.6)
    assert cues.caller.talk_to_listen is not None
    assert cues.caller.talk_to_listen < 1.0 < cues.callee.talk_to_listen  # type: ignore[operator]


@pytest.mark.parametrize("into_answer_s", [1.5, 3.0, 5.0])
def test_speaking_over_the_other_party_is_an_interruption(
    espeak_dir: Path, into_answer_s: float
) -> None:
    call = Call(espeak_dir, 20.0)
    greeting = call.say(CALLER, 1.0, GREETING)
    answer = call.say(CALLEE, greeting[1] + 0.7, ANSWER, "en-us+f3")
    objection = call.say(CALLER, answer[0] + into_answer_s, OBJECTION, "en+m3")
    cues = talk_cues(call.stereo())
    assert [i.by for i in cues.interruptions] == [CALLER]
    assert (cues.caller.interruptions, cues.callee.interruptions) == (1, 0)
    assert cues.interruptions[0].at_s == pytest.approx(objection[0], abs=TOLERANCE_S)
    overlap = objection[1] - objection[0]
    assert cues.overlap_s == pytest.approx(overlap, abs=2 * TOLERANCE_S)
    assert_covers(cues, CALLER, objection)
    # the callee held the floor alone until the caller spoke over the answer, and again
    # after: the longest monologue is the longer of the two stretches, not both
    stretches = [(answer[0], objection[0]), (objection[1], answer[1])]
    expected = max(stretches, key=lambda span: span[1] - span[0])
    longest = cues.callee.longest_monologue
    assert longest is not None
    assert longest.start_s == pytest.approx(expected[0], abs=TOLERANCE_S)
    assert longest.end_s == pytest.approx(expected[1], abs=TOLERANCE_S)


def test_the_callee_interrupting_is_counted_for_the_callee(espeak_dir: Path) -> None:
    call = Call(espeak_dir, 16.0)
    answer = call.say(CALLER, 1.0, ANSWER, "de")
    call.say(CALLEE, answer[0] + 2.0, OBJECTION)
    call.say(CALLEE, answer[1] + 1.0, CLOSING)  # after the caller, not over them
    cues = talk_cues(call.stereo())
    assert [i.by for i in cues.interruptions] == [CALLEE]


def test_cues_of_a_recorded_call_file(espeak_dir: Path, tmp_path: Path) -> None:
    call = Call(espeak_dir, 18.0)
    greeting = call.say(CALLER, 1.0, GREETING)
    answer = call.say(CALLEE, greeting[1] + 0.5, ANSWER, "en-us+f3")
    stereo = call.stereo()
    recorder = StereoRecorder(tmp_path / "call.wav")
    for start in range(0, len(stereo), 160):  # 20 ms packets, as the media path writes
        recorder.write(0, start, stereo[start : start + 160, 0].copy())
        recorder.write(1, start, stereo[start : start + 160, 1].copy())
    info = recorder.close()
    assert info is not None
    from_file = cues_from_wav(info.path)
    assert from_file == talk_cues(stereo)
    assert from_file.duration_s == pytest.approx(18.0)
    assert_covers(from_file, CALLER, greeting)
    assert_covers(from_file, CALLEE, answer)
    # the same call at 16 kHz reads the same within a frame or two
    doubled = np.repeat(stereo, 2, axis=0)
    wideband = cues_from_wav(encode_wav(doubled, 16000))
    assert wideband.caller.talk_s == pytest.approx(from_file.caller.talk_s, abs=0.1)


def test_talk_cues_refuse_mono() -> None:
    with pytest.raises(ValueError, match="shape"):
        talk_cues(np.zeros(800, dtype=np.int16))
    with pytest.raises(ValueError, match="stereo"):
        cues_from_wav(encode_wav(np.zeros(800, dtype=np.int16), RATE))
