"""Talk-time cues of a call: who spoke how long, who interrupted whom, how long the silences were.

Input is a call's stereo recording as :mod:`gateway.analysis.recorder`
writes it (channel 0 the caller, channel 1 the callee). Each channel's
speech segments come from :func:`dsp.vad.speech_segments` (the WebRTC
detector's frame decisions with hangover and a minimum segment length);
everything else is arithmetic on the two parties' segments, so
:func:`cues_from_segments` gives the same cues for segments from any other
source.

Definitions (the vocabulary is Heldner and Edlund, "Pauses, gaps and
overlaps in conversations", Journal of Phonetics 38(4), 2010: a *pause* is
silence between two stretches of one speaker, a *gap* silence between
speakers, an *overlap* time when both speak):

- talk time of a party: the total length of its speech segments, in seconds;
- talk share of a party: its talk time over both parties' talk time (0.0
  when nobody spoke), the "talk:listen" split of conversation analytics;
- talk-to-listen ratio of a party: its talk time over the other party's
  talk time (None when the other party never spoke);
- overlap time: time in which both parties' segments run;
- silence time and share: time in which neither party's segments run, and
  its fraction of the whole recording;
- interruption: a segment of one party that starts while a segment of the
  other party is running (strictly after that one started), where the two
  then overlap for at least ``min_overlap_s``. The party whose segment
  starts second interrupted. The threshold keeps out the turn changes where
  one party answers as the other's last syllable fades: the detector's
  own release and the hangover can run a segment a little past the end of
  the voice, so such a change shows as a few tens of milliseconds of
  overlap. Two segments starting at the same instant are no interruption;
- monologue: a stretch in which one party holds the floor alone: its
  speech while the other party is silent, joined across its own pauses of
  at most ``max_pause_s``; it ends where the pause is longer, or where the
  other party speaks. Utterances of the other party shorter than
  ``backchannel_s`` ("mm-hm", "yes", "right": backchannels, Yngve 1970)
  neither end a monologue nor interrupt its time; longer ones do, and a
  monologue's time runs only while the other party is silent. The longest
  monologue of a party is the longest such stretch, pauses included.

Figures are seconds on the detector's frame grid (30 ms by default).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dsp.resample import resample
from dsp.vad import SAMPLE_RATES, Segment, VadConfig, speech_segments
from dsp.wav import read_wav

__all__ = [
    "CueConfig",
    "Interruption",
    "Monologue",
    "Party",
    "PartyCues",
    "TalkCues",
    "cues_from_segments",
    "cues_from_wav",
    "talk_cues",
]

ANALYSIS_RATE: Final = 8000
"""Rate audio is brought to when the detector does not take the recording's own."""

_DECIMALS: Final = 3
"""Seconds in :meth:`TalkCues.to_dict` are rounded to milliseconds."""


class Party(enum.StrEnum):
    """A side of the call, named as the recording's channels are (0 caller, 1 callee)."""

    CALLER = "caller"
    CALLEE = "callee"

    @property
    def other(self) -> Party:
        return Party.CALLEE if self is Party.CALLER else Party.CALLER


@dataclass(frozen=True, slots=True)
class CueConfig:
    """Thresholds of the cue definitions (module docstring)."""

    min_overlap_s: float = 0.2
    """Overlap an interruption needs; below it, a turn change that touched."""
    backchannel_s: float = 1.0
    """Utterances shorter than this do not take the floor from a monologue."""
    max_pause_s: float = 2.0
    """Longest silence inside a monologue; a longer one leaves the floor open."""

    def __post_init__(self) -> None:
        if min(self.min_overlap_s, self.backchannel_s, self.max_pause_s) < 0:
            raise ValueError("cue thresholds must not be negative")


@dataclass(frozen=True, slots=True)
class Interruption:
    """``by`` started speaking at ``at_s`` while the other party was speaking."""

    by: Party
    at_s: float
    overlap_s: float


@dataclass(frozen=True, slots=True)
class Monologue:
    """``party`` held the floor alone from ``start_s`` to ``end_s``."""

    party: Party
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class PartyCues:
    """The cues of one party."""

    party: Party
    segments: tuple[Segment, ...]
    talk_s: float
    talk_share: float
    talk_to_listen: float | None
    longest_monologue: Monologue | None
    interruptions: int
    """Interruptions this party made."""


@dataclass(frozen=True, slots=True)
class TalkCues:
    """The talk-time cues of one call (definitions in the module docstring)."""

    duration_s: float
    caller: PartyCues
    callee: PartyCues
    overlap_s: float
    silence_s: float
    silence_share: float
    interruptions: tuple[Interruption, ...]
    longest_monologue: Monologue | None

    def party(self, party: Party) -> PartyCues:
        return self.caller if party is Party.CALLER else self.callee

    def to_dict(self) -> dict[str, Any]:
        """The cues as JSON-ready values: seconds rounded to ms, parties by name."""
        return {
            "duration_s": _round(self.duration_s),
            "talk_s": {p.party.value: _round(p.talk_s) for p in (self.caller, self.callee)},
            "talk_share": {p.party.value: _round(p.talk_share) for p in (self.caller, self.callee)},
            "talk_to_listen": {
                p.party.value: None if p.talk_to_listen is None else _round(p.talk_to_listen)
                for p in (self.caller, self.callee)
            },
            "overlap_s": _round(self.overlap_s),
            "silence_s": _round(self.silence_s),
            "silence_share": _round(self.silence_share),
            "interruptions": {
                "total": len(self.interruptions),
                **{p.party.value: p.interruptions for p in (self.caller, self.callee)},
                "events": [
                    {"by": i.by.value, "at_s": _round(i.at_s), "overlap_s": _round(i.overlap_s)}
                    for i in self.interruptions
                ],
            },
            "longest_monologue": _monologue_dict(self.longest_monologue),
            "longest_monologue_by_party": {
                p.party.value: _monologue_dict(p.longest_monologue)
                for p in (self.caller, self.callee)
            },
            "segments": {
                p.party.value: [[_round(s.start_s), _round(s.end_s)] for s in p.segments]
                for p in (self.caller, self.callee)
            },
        }


def _round(value: float) -> float:
    return round(float(value), _DECIMALS)


def _monologue_dict(monologue: Monologue | None) -> dict[str, Any] | None:
    if monologue is None:
        return None
    return {
        "party": monologue.party.value,
        "start_s": _round(monologue.start_s),
        "end_s": _round(monologue.end_s),
        "duration_s": _round(monologue.duration_s),
    }


Intervals = npt.NDArray[np.float64]
"""Sorted, disjoint ``[start, end)`` intervals, shape (n, 2)."""


def _intervals(segments: Sequence[Segment]) -> Intervals:
    """``segments`` sorted, with touching or overlapping ones merged."""
    if not segments:
        return np.zeros((0, 2), dtype=np.float64)
    spans = np.array(sorted((s.start_s, s.end_s) for s in segments), dtype=np.float64)
    if np.any(spans[:, 1] < spans[:, 0]):
        raise ValueError("a segment ends before it starts")
    reach = np.maximum.accumulate(spans[:, 1])
    opens = np.concatenate(([True], spans[1:, 0] > reach[:-1]))
    first = np.flatnonzero(opens)
    last = np.concatenate((first[1:], [len(spans)])) - 1
    return np.stack((spans[first, 0], reach[last]), axis=1)


def _total(spans: Intervals) -> float:
    return float(np.sum(spans[:, 1] - spans[:, 0]))


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    """The intersection of two interval sets (sorted, disjoint)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    # every pair that can meet: for each interval of a, the intervals of b from the first
    # ending after its start to the last starting before its end
    lo = np.searchsorted(b[:, 1], a[:, 0], side="right")
    hi = np.searchsorted(b[:, 0], a[:, 1], side="left")
    counts = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(a)), counts)
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = np.repeat(lo, counts) + offsets
    starts = np.maximum(a[rows, 0], b[cols, 0])
    ends = np.minimum(a[rows, 1], b[cols, 1])
    keep = ends > starts
    return np.stack((starts[keep], ends[keep]), axis=1)


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    """``a`` less ``b`` (both sorted, disjoint)."""
    if len(a) == 0 or len(b) == 0:
        return a
    # a minus b is a intersected with the complement of b
    edges = b.ravel()
    complement = np.concatenate(([-np.inf], edges, [np.inf])).reshape(-1, 2)
    complement = complement[complement[:, 1] > complement[:, 0]]
    return _intersect(a, complement)


def _interruptions(
    by: Party, own: Intervals, other: Intervals, min_overlap_s: float
) -> list[Interruption]:
    """Segments of ``own`` that start while one of ``other`` runs (module docstring)."""
    if len(own) == 0 or len(other) == 0:
        return []
    index = np.searchsorted(other[:, 0], own[:, 0], side="left") - 1  # last started strictly before
    valid = index >= 0
    running = np.zeros(len(own), dtype=np.bool_)
    running[valid] = other[index[valid], 1] > own[valid, 0]
    overlap = np.zeros(len(own))
    overlap[running] = np.minimum(other[index[running], 1], own[running, 1]) - own[running, 0]
    hits = np.flatnonzero(running & (overlap >= min_overlap_s - 1e-9))
    return [Interruption(by, float(own[i, 0]), float(overlap[i])) for i in hits]


def _longest_monologue(
    party: Party, own: Intervals, other: Intervals, config: CueConfig
) -> Monologue | None:
    """The longest stretch in which ``party`` holds the floor (module docstring)."""
    floor_takers = other[other[:, 1] - other[:, 0] >= config.backchannel_s]
    solo = _subtract(own, floor_takers)
    if len(solo) == 0:
        return None
    gap_starts, gap_ends = solo[:-1, 1], solo[1:, 0]
    # a floor-taking utterance of the other party inside the gap ends the monologue
    first = np.searchsorted(floor_takers[:, 1], gap_starts, side="right")
    spoken = np.zeros(len(gap_starts), dtype=np.bool_)
    inside = first < len(floor_takers)
    spoken[inside] = floor_takers[first[inside], 0] < gap_ends[inside]
    breaks = spoken | (gap_ends - gap_starts > config.max_pause_s + 1e-9)
    opens = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    closes = np.concatenate((np.flatnonzero(breaks), [len(solo) - 1]))
    lengths = solo[closes, 1] - solo[opens, 0]
    best = int(np.argmax(lengths))
    return Monologue(party, float(solo[opens[best], 0]), float(solo[closes[best], 1]))


def cues_from_segments(
    caller: Sequence[Segment],
    callee: Sequence[Segment],
    duration_s: float,
    config: CueConfig | None = None,
) -> TalkCues:
    """The cues of a call of ``duration_s`` seconds whose parties spoke in these segments."""
    config = config or CueConfig()
    if duration_s < 0:
        raise ValueError(f"duration must not be negative, got {duration_s}")
    spans = {Party.CALLER: _intervals(caller), Party.CALLEE: _intervals(callee)}
    talk = {party: _total(spans[party]) for party in Party}
    both = talk[Party.CALLER] + talk[Party.CALLEE]
    overlap = _total(_intersect(spans[Party.CALLER], spans[Party.CALLEE]))
    # segments past the end of the recording (a rounding of the frame grid) count no silence
    silence = max(0.0, duration_s - (both - overlap))
    interruptions = sorted(
        [
            *_interruptions(
                Party.CALLER, spans[Party.CALLER], spans[Party.CALLEE], config.min_overlap_s
            ),
            *_interruptions(
                Party.CALLEE, spans[Party.CALLEE], spans[Party.CALLER], config.min_overlap_s
            ),
        ],
        key=lambda event: event.at_s,
    )
    parties: dict[Party, PartyCues] = {}
    for party in Party:
        other_talk = talk[party.other]
        parties[party] = PartyCues(
            party=party,
            segments=tuple(Segment(float(s), float(e)) for s, e in spans[party]),
            talk_s=talk[party],
            talk_share=talk[party] / both if both > 0 else 0.0,
            talk_to_listen=talk[party] / other_talk if other_talk > 0 else None,
            longest_monologue=_longest_monologue(party, spans[party], spans[party.other], config),
            interruptions=sum(1 for event in interruptions if event.by is party),
        )
    monologues = [p.longest_monologue for p in parties.values() if p.longest_monologue]
    return TalkCues(
        duration_s=float(duration_s),
        caller=parties[Party.CALLER],
        callee=parties[Party.CALLEE],
        overlap_s=overlap,
        silence_s=silence,
        silence_share=silence / duration_s if duration_s > 0 else 0.0,
        interruptions=tuple(interruptions),
        longest_monologue=max(monologues, key=lambda m: m.duration_s, default=None),
    )


def talk_cues(
    stereo: npt.NDArray[np.int16],
    sample_rate: int = 8000,
    *,
    vad: VadConfig | None = None,
    config: CueConfig | None = None,
) -> TalkCues:
    """The cues of a stereo int16 recording of shape ``(frames, 2)``: caller left, callee right."""
    if stereo.dtype != np.int16 or stereo.ndim != 2 or stereo.shape[1] != 2:
        raise ValueError(f"talk cues take int16 audio of shape (frames, 2), got {stereo.shape}")
    caller = speech_segments(np.ascontiguousarray(stereo[:, 0]), sample_rate, vad)
    callee = speech_segments(np.ascontiguousarray(stereo[:, 1]), sample_rate, vad)
    return cues_from_segments(caller, callee, stereo.shape[0] / sample_rate, config)


def cues_from_wav(
    source: str | os.PathLike[str] | bytes,
    *,
    vad: VadConfig | None = None,
    config: CueConfig | None = None,
) -> TalkCues:
    """The cues of a stereo WAV recording, from its path or its bytes.

    16-bit PCM at a rate the detector takes (8 kHz, as the recorder writes)
    is used as it is; other encodings and rates are brought to 16-bit 8 kHz.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    samples, rate = read_wav(data)
    if samples.shape[1] != 2:
        raise ValueError(f"talk cues need a stereo recording, this one has {samples.shape[1]}")
    if samples.dtype != np.int16 or rate not in SAMPLE_RATES:
        scale = 1.0 if samples.dtype == np.int16 else 32768.0
        channels = [
            resample(np.asarray(samples[:, c], dtype=np.float64) * scale, rate, ANALYSIS_RATE)
            for c in range(2)
        ]
        samples = np.clip(np.rint(np.stack(channels, axis=1)), -32768, 32767).astype(np.int16)
        rate = ANALYSIS_RATE
    return talk_cues(samples, rate, vad=vad, config=config)
