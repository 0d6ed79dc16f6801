"""What a demo phone sends during a call: tones, digits and a hang-up, on a timeline.

An :class:`AudioScript` is a list of steps whose times count, in seconds,
from the moment the phone's media starts. :meth:`AudioScript.render` turns
it into a :class:`RenderedScript`: the RTP sender's plan, one 20 ms packet
slot after another (RFC 3551 4.5.14: G.711 at 8,000 samples/s, 160 samples
per 20 ms packet).

- :class:`Tone` and in-band :class:`Digit` steps are mixed into one int16
  audio timeline (the DTMF dual tone from :func:`dsp.tones.dtmf_tone`,
  frequencies of ITU-T Q.23). Slots past the timeline carry silence.
- A :class:`Digit` with method ``rfc4733`` takes over whole slots: RFC 4733
  telephone-event packets replace the audio there, as phones do. Every
  packet of one event carries the timestamp of its first slot (RFC 4733
  2.5.1.1) and the duration so far; the first is marked (2.5.1.1); the last
  has the E bit and is sent three times in consecutive slots (2.5.1.4).
- ``info`` digits (SIP INFO, application/dtmf-relay) and :class:`Hangup`
  are signalling steps: the phone, not the RTP sender, carries them out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dsp import g711
from dsp.tones import DTMF_FREQUENCIES, dtmf_tone, tone
from gateway.media.telephone_event import DIGIT_EVENTS

__all__ = [
    "FRAME_S",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "AudioScript",
    "Digit",
    "EventFrame",
    "Hangup",
    "RenderedScript",
    "Step",
    "Tone",
]

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160
FRAME_S: Final = FRAME_SAMPLES / SAMPLE_RATE
DEFAULT_LEVEL_DBFS: Final = -12.0
EVENT_VOLUME: Final = 10
"""Telephone-event volume field, in -dBm0 (RFC 4733 2.3.4)."""
END_REPEATS: Final = 3
"""How many times the final packet of an event is sent (RFC 4733 2.5.1.4)."""

DigitMethod: TypeAlias = Literal["rfc4733", "inband", "info"]
_METHODS: Final = ("rfc4733", "inband", "info")
_EVENT_PAYLOAD: Final = struct.Struct("!BBH")
_END_BIT: Final = 0x80


def _sample_index(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def _check_time(value: float, what: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class Tone:
    """A sine of ``frequency_hz`` from ``start`` for ``duration`` s, peak at ``level_dbfs``."""

    frequency_hz: float
    start: float
    duration: float
    level_dbfs: float = DEFAULT_LEVEL_DBFS

    def __post_init__(self) -> None:
        _check_time(self.start, "tone start")
        _check_time(self.duration, "tone duration")

    def describe(self) -> str:
        return f"tone {self.frequency_hz:g} Hz for {self.duration:g} s"


@dataclass(frozen=True, slots=True)
class Digit:
    """A DTMF key press at ``at`` seconds, lasting ``duration``, sent by ``method``.

    ``rfc4733``: telephone-events; ``inband``: the dual tone in the audio, each
    component at ``level_dbfs``; ``info``: SIP INFO (application/dtmf-relay).
    """

    digit: str
    at: float
    method: DigitMethod = "rfc4733"
    duration: float = 0.1
    level_dbfs: float = DEFAULT_LEVEL_DBFS

    def __post_init__(self) -> None:
        if self.digit.upper() not in DTMF_FREQUENCIES or len(self.digit) != 1:
            raise ValueError(f"{self.digit!r} is not a DTMF digit (one of {DIGIT_EVENTS})")
        if self.method not in _METHODS:
            raise ValueError(f"digit method must be one of {_METHODS}, got {self.method!r}")
        _check_time(self.at, "digit time")
        _check_time(self.duration, "digit duration")
        if self.duration == 0:
            raise ValueError("a digit must last longer than 0 s")

    @property
    def event_code(self) -> int:
        """The RFC 4733 event code of the digit (3.2, table 7)."""
        return DIGIT_EVENTS.index(self.digit.upper())

    def describe(self) -> str:
        return f"digit {self.digit} {self.method}"


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call at ``at`` seconds (BYE, RFC 3261 15; CANCEL before the answer, 9)."""

    at: float

    def __post_init__(self) -> None:
        _check_time(self.at, "hang-up time")

    def describe(self) -> str:
        return "hangup"


Step: TypeAlias = Tone | Digit | Hangup


@dataclass(frozen=True, slots=True)
class EventFrame:
    """One telephone-event packet of the plan: its payload, marker and event start slot."""

    start_slot: int
    payload: bytes
    marker: bool


@dataclass
class RenderedScript:
    """The sender's plan: audio per slot, event packets by slot, step starts by slot.

    ``marks[slot]`` names the media steps (tones, in-band and RFC 4733 digits)
    that start in that slot, for the phone's sent log. ``signalling`` holds
    the steps the phone carries out itself (INFO digits, hang-up), by time.
    """

    audio: npt.NDArray[np.int16]
    events: dict[int, EventFrame]
    marks: dict[int, list[str]]
    signalling: list[Digit | Hangup]
    _encoded: dict[int, bytes] = field(default_factory=dict)

    def frame(self, slot: int, payload_type: int) -> bytes:
        """The G.711 payload of slot ``slot`` (PCMU or PCMA, RFC 3551 4.5.14)."""
        encoded = self._encoded.get(payload_type)
        if encoded is None:
            encoded = self._encoded[payload_type] = g711.encode(self.audio, payload_type)
        start = slot * FRAME_SAMPLES
        if start >= len(encoded):
            return g711.silence_payload(payload_type, FRAME_SAMPLES)
        return encoded[start : start + FRAME_SAMPLES]


class AudioScript:
    """The steps a phone plays during a call, times in seconds from its media start."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        for step in self.steps:
            if not isinstance(step, Tone | Digit | Hangup):
                raise TypeError(f"not a script step: {step!r}")
        self._check_event_overlap()

    def __repr__(self) -> str:
        return f"AudioScript({list(self.steps)!r})"

    def _event_digits(self) -> list[Digit]:
        return [s for s in self.steps if isinstance(s, Digit) and s.method == "rfc4733"]

    def _check_event_overlap(self) -> None:
        spans = sorted(_event_span(digit) for digit in self._event_digits())
        for (_, first_end), (second_start, _) in pairwise(spans):
            if second_start < first_end:
                raise ValueError("RFC 4733 digits overlap: space them further apart")

    def render(self) -> RenderedScript:
        """The per-slot plan of this script (see the module notes)."""
        audio = self._mix_audio()
        events: dict[int, EventFrame] = {}
        marks: dict[int, list[str]] = {}
        for step in self.steps:
            if isinstance(step, Tone) or (isinstance(step, Digit) and step.method == "inband"):
                start = step.start if isinstance(step, Tone) else step.at
                marks.setdefault(_sample_index(start) // FRAME_SAMPLES, []).append(step.describe())
        for digit in self._event_digits():
            first_slot, _ = _event_span(digit)
            events.update(_event_frames(digit, first_slot))
            marks.setdefault(first_slot, []).append(digit.describe())
        signalling = sorted(
            (
                step
                for step in self.steps
                if isinstance(step, Hangup) or (isinstance(step, Digit) and step.method == "info")
            ),
            key=lambda step: step.at,
        )
        return RenderedScript(audio, events, marks, signalling)

    def _mix_audio(self) -> npt.NDArray[np.int16]:
        """Tones and in-band digits summed on one timeline, padded to whole slots."""
        pieces: list[tuple[int, npt.NDArray[np.int16]]] = []
        for step in self.steps:
            if isinstance(step, Tone):
                samples = tone(step.frequency_hz, step.duration, amplitude_dbfs=step.level_dbfs)
                pieces.append((_sample_index(step.start), samples))
            elif isinstance(step, Digit) and step.method == "inband":
                samples = dtmf_tone(step.digit, step.duration, amplitude_dbfs=step.level_dbfs)
                pieces.append((_sample_index(step.at), samples))
        end = max((start + len(samples) for start, samples in pieces), default=0)
        length = -(-end // FRAME_SAMPLES) * FRAME_SAMPLES
        mixed = np.zeros(length, dtype=np.int32)
        for start, samples in pieces:
            mixed[start : start + len(samples)] += samples
        return np.clip(mixed, -32768, 32767).astype(np.int16)


def _event_span(digit: Digit) -> tuple[int, int]:
    """The slots an RFC 4733 digit occupies: [first, end), final-packet repeats included.

    The event starts at the first slot boundary at or after ``digit.at``.
    """
    first = -(-_sample_index(digit.at) // FRAME_SAMPLES)
    updates = max(1, round(digit.duration * SAMPLE_RATE / FRAME_SAMPLES))
    return first, first + updates + END_REPEATS - 1


def _event_frames(digit: Digit, first_slot: int) -> dict[int, EventFrame]:
    """Every packet of one event (RFC 4733 2.5.1): updates, then the end packet thrice."""
    updates = max(1, round(digit.duration * SAMPLE_RATE / FRAME_SAMPLES))
    code = digit.event_code
    frames: dict[int, EventFrame] = {}
    for index in range(updates + END_REPEATS - 1):
        ended = index >= updates - 1
        duration = FRAME_SAMPLES * min(index + 1, updates)
        flags = EVENT_VOLUME | (_END_BIT if ended else 0)
        payload = _EVENT_PAYLOAD.pack(code, flags, duration)
        frames[first_slot + index] = EventFrame(first_slot, payload, marker=index == 0)
    return frames
