"""The capture gate: the one path from the relay to every capture sink.

The relay hands each RTP packet a party sends to that party's
:class:`PartyTap` after relaying it (:meth:`MediaSession.set_tap`), so the
conversation between the parties never waits on anything here. The tap:

- reads RFC 4733 telephone-events (never recorded) into key presses;
- admits or refuses each G.711 audio packet at the instant it arrives, by
  asking :meth:`CaptureGate.admit`, the single decision point, which reads
  the call's consent state (``capture_allowed``). A refused packet is never
  kept for capture: it is not buffered "in case" consent comes later;
- decodes audio in short batches (:data:`BATCH_SAMPLES`, 100 ms) for the
  in-band DTMF receiver (:mod:`dsp.dtmf`, consent signalling). That
  receiver keeps no more than one analysis frame; the batch is dropped
  once analysed, and only admitted packets go on;
- holds admitted audio :data:`MASK_HOLD_SAMPLES` (100 ms) behind the
  receiver, long enough for a key press to be confirmed, and silences every
  press (with a 20 ms guard) before the audio reaches the sink: captured
  audio never holds DTMF (PCI DSS).

A key press that pauses capture or withdraws consent takes effect at the
press: admitted audio from the press's start on is dropped before it reaches
the sink, even when the press was confirmed a few packets later.

Timeline: the first admitted packet of the call starts the recording's
clock; each party's packets are placed on it by their RTP timestamps
(:class:`Timeline`), so a pause leaves silence of its true length and the
two channels stay aligned.

Only PCMU and PCMA (RFC 3551 payload types 0 and 8) are decoded; other
codecs are relayed and not captured.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dsp import g711
from dsp.dtmf import DtmfDetector
from gateway.media.telephone_event import TelephoneEventReceiver

log = logging.getLogger(__name__)

PCMU = 0
PCMA = 8
SAMPLE_RATE = 8000
BATCH_SAMPLES = 1600
"""Audio decoded and analysed together: 200 ms at 8 kHz (ten 20 ms packets). Each analysis
has a fixed cost in NumPy calls, so fewer, larger batches leave the relay more of its core;
a key press is still heard within a quarter of a second."""
MASK_HOLD_SAMPLES = 800
"""How far admitted audio trails the DTMF receiver, so a press is confirmed before it is kept."""
MASK_GUARD_SAMPLES = 160
"""Silence added on each side of a press (20 ms): the tone's edges the frames do not count."""
BATCH_MAX_AGE_S = 0.2
"""A batch older than this is analysed on the next tick even when not full."""

INBAND = "inband"
RFC4733 = "rfc4733"

DigitHandler = Callable[[str, str, str, float], None]
"""``(party, digit, method, monotonic time)`` for each key press heard on a party's stream."""


class ConsentState(Protocol):
    """What the gate reads: the call's consent decision at this instant."""

    @property
    def capture_allowed(self) -> bool: ...


class Timeline(Protocol):
    """Places a party's RTP packets on the recording's sample clock."""

    def position(self, ssrc: int, timestamp: int, arrival_s: float, samples: int) -> int: ...


class CaptureSink(Protocol):
    """Where admitted, DTMF-free audio goes (a recording, a live transcriber)."""

    def write(self, channel: int, start: int, pcm: npt.NDArray[np.int16]) -> None: ...

    def flush_due(self, now_s: float) -> None: ...


class PartyTap:
    """The relay tap for one party's stream: DTMF in, admitted audio out."""

    __slots__ = (
        "admitted_samples",
        "batch",
        "batch_at",
        "batch_samples",
        "channel",
        "detector",
        "event_types",
        "events",
        "gate",
        "held",
        "listening",
        "malformed",
        "party",
        "presses",
        "stream_pos",
        "timeline",
    )

    def __init__(
        self,
        gate: CaptureGate,
        party: str,
        channel: int,
        timeline: Timeline,
        event_types: frozenset[int],
    ) -> None:
        self.gate = gate
        self.party = party
        self.channel = channel
        self.timeline = timeline
        self.event_types = event_types
        self.events = TelephoneEventReceiver()
        self.detector = DtmfDetector()
        self.listening = True
        self.batch: list[tuple[bytes, int, int]] = []
        self.batch_samples = 0
        self.batch_at = 0.0
        self.stream_pos = 0
        self.held: deque[tuple[int, int, npt.NDArray[np.int16]]] = deque()
        self.presses: list[list[int | None]] = []
        self.admitted_samples = 0
        self.malformed = 0

    def __call__(self, data: bytes) -> None:
        """One RTP packet from the party, already relayed (RFC 3550 5.1 header)."""
        if not self.listening:
            return
        try:
            first = data[0]
            payload_type = data[1] & 0x7F
            offset = 12 + 4 * (first & 0x0F)
            if first & 0x10:  # header extension (RFC 3550 5.3.1)
                offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
            end = len(data) - (data[-1] if first & 0x20 else 0)  # padding (5.1)
            if end < offset:
                raise ValueError("RTP header longer than the packet")
            timestamp = int.from_bytes(data[4:8], "big")
            ssrc = int.from_bytes(data[8:12], "big")
        except (IndexError, ValueError):
            self.malformed += 1
            return
        if payload_type in self.event_types:
            digit = self.events.feed(ssrc, timestamp, bool(data[1] & 0x80), data[offset:end])
            if digit is not None:
                self.gate.heard(self, digit, RFC4733, monotonic())
            return
        if payload_type != PCMU and payload_type != PCMA:
            return
        payload = data[offset:end]
        if not payload:
            return
        now = monotonic()
        position = -1
        if self.gate.admit():
            position = self.gate.place(self, ssrc, timestamp, now, len(payload))
        if not self.batch:
            self.batch_at = now
        self.batch.append((payload, payload_type, position))
        self.batch_samples += len(payload)
        if self.batch_samples >= BATCH_SAMPLES:
            self.analyse()

    def analyse(self) -> None:
        """Decode the batch, listen for in-band DTMF, move admitted audio toward the sink."""
        batch = self.batch
        if not batch:
            return
        self.batch = []
        self.batch_samples = 0
        first_type = batch[0][1]
        if all(entry[1] == first_type for entry in batch):
            pcm = g711.decode(b"".join(entry[0] for entry in batch), first_type)
        else:
            pcm = np.concatenate([g711.decode(entry[0], entry[1]) for entry in batch])
        base = self.stream_pos
        self.stream_pos += len(pcm)
        offset = 0
        for payload, _, position in batch:
            count = len(payload)
            if position >= 0:
                self.held.append((base + offset, position, pcm[offset : offset + count]))
                self.admitted_samples += count
            offset += count
        for event in self.detector.feed(pcm):
            self._press(event.digit, event.start_sample, event.end_sample)
        self.release(self.stream_pos - MASK_HOLD_SAMPLES)

    def _press(self, digit: str, start: int, end: int | None) -> None:
        if end is not None:
            for press in reversed(self.presses):
                if press[0] == start:
                    press[1] = end
                    return
            self.presses.append([start, end])
            return
        self.presses.append([start, None])
        self.gate.heard(self, digit, INBAND, monotonic())
        if not self.gate.admit():
            # paused or withdrawn by this very press: nothing from its start on is kept
            cut = start - MASK_GUARD_SAMPLES
            while self.held and self.held[-1][0] + len(self.held[-1][2]) > cut:
                stream_start, position, pcm = self.held.pop()
                keep = max(0, cut - stream_start)
                if keep:
                    self.held.append((stream_start, position, pcm[:keep]))
                    break

    def release(self, limit: int) -> None:
        """Hand the sink every held packet that ends before stream index ``limit``."""
        held = self.held
        sink = self.gate.sink
        while held and held[0][0] + len(held[0][2]) <= limit:
            stream_start, position, pcm = held.popleft()
            sink.write(self.channel, position, self._masked(stream_start, pcm))
        if self.presses:
            horizon = held[0][0] if held else limit
            self.presses = [
                press
                for press in self.presses
                if press[1] is None or press[1] + MASK_GUARD_SAMPLES > horizon
            ]

    def _masked(self, stream_start: int, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        stop = stream_start + len(pcm)
        masked = pcm
        for begin, end in self.presses:
            low = begin - MASK_GUARD_SAMPLES  # type: ignore[operator]
            high = stop if end is None else end + MASK_GUARD_SAMPLES
            if low < stop and high > stream_start:
                if masked is pcm:
                    masked = pcm.copy()
                masked[max(low - stream_start, 0) : min(high - stream_start, len(pcm))] = 0
        return masked

    def finish(self) -> None:
        """End of the stream: analyse what is left, release every held packet."""
        self.analyse()
        for event in self.detector.flush():
            self._press(event.digit, event.start_sample, event.end_sample)
        self.release(self.stream_pos + MASK_GUARD_SAMPLES)
        self.held.clear()
        self.listening = False


class CaptureGate:
    """The single gate between a call's relay and its capture sink.

    ``state.capture_allowed`` (the consent state machine) is read once per
    audio packet, at its arrival, in :meth:`admit`: the only decision point.
    ``channels`` maps each party to its channel in the sink (0 caller,
    1 callee). ``on_digit`` hears every key press, with its method.
    """

    def __init__(
        self,
        state: ConsentState,
        sink: CaptureSink,
        timelines: dict[str, Timeline],
        channels: dict[str, int],
        on_digit: DigitHandler,
        event_types: frozenset[int] = frozenset(),
    ) -> None:
        self.state = state
        self.sink = sink
        self.on_digit = on_digit
        self.started_at: float | None = None
        self.closed = False
        self.admitted = 0
        self.refused = 0
        self.taps: dict[str, PartyTap] = {
            party: PartyTap(self, party, channel, timelines[party], event_types)
            for party, channel in channels.items()
        }

    def admit(self) -> bool:
        """Whether audio arriving now may be captured: the consent state, read now."""
        if not self.closed and self.state.capture_allowed:
            self.admitted += 1
            return True
        self.refused += 1
        return False

    def place(self, tap: PartyTap, ssrc: int, timestamp: int, now: float, samples: int) -> int:
        """The recording position of an admitted packet; the first one starts the clock."""
        if self.started_at is None:
            self.started_at = now
        return tap.timeline.position(ssrc, timestamp, now - self.started_at, samples)

    def heard(self, tap: PartyTap, digit: str, method: str, at: float) -> None:
        try:
            self.on_digit(tap.party, digit, method, at)
        except Exception:
            log.exception("digit handler failed for %s %r", tap.party, digit)

    def set_event_types(self, event_types: frozenset[int]) -> None:
        """The RFC 4733 payload types the parties negotiated (a=rtpmap telephone-event)."""
        for tap in self.taps.values():
            tap.event_types = event_types

    def set_listening(self, listening: bool) -> None:
        """Stop (or restart) listening: once consent is final nothing here is needed."""
        for tap in self.taps.values():
            if tap.listening and not listening:
                tap.batch.clear()
                tap.batch_samples = 0
            tap.listening = listening

    def tick(self, now: float) -> None:
        """Periodic: analyse batches that waited too long, let the sink write what is due."""
        for tap in self.taps.values():
            if tap.batch and now - tap.batch_at >= BATCH_MAX_AGE_S:
                tap.analyse()
        if self.started_at is not None:
            self.sink.flush_due(now - self.started_at)

    @property
    def captured_s(self) -> float:
        """Seconds of audio admitted, the longer of the parties' channels."""
        most = max((tap.admitted_samples for tap in self.taps.values()), default=0)
        return most / SAMPLE_RATE

    def finish(self) -> None:
        """The call ended: everything admitted reaches the sink; nothing more is admitted."""
        for tap in self.taps.values():
            tap.finish()
        self.closed = True
