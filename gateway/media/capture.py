"""The capture gate: the one path from the relay to every capture sink.

The relay hands each RTP packet a party sends to that party's
:class:`PartyTap` after relaying it (:meth:`MediaSession.set_tap`), so the
conversation between the parties never waits on anything here. The tap:

- reads RFC 4733 telephone-events (never recorded) into key presses;
- admits or refuses each G.711 audio packet at the instant it arrives, by
  reading :attr:`CaptureGate.capture_open` (the call's consent state,
  ``capture_allowed``, and whether the gate is closed), the single decision
  point. A refused packet is never kept for capture: it is not buffered
  "in case" consent comes later;
- decodes audio in batches (:data:`BATCH_SAMPLES`, 400 ms) for the in-band
  DTMF receiver (:mod:`dsp.dtmf`, consent signalling). That receiver keeps
  no more than one analysis frame; the batch is dropped once analysed, and
  only admitted packets go on. A full batch waits in a :class:`TapQueue`
  shared by the gateway's calls, and the queue analyses the batches of many
  taps together (one G.711 decode, one DTMF screen:
  :func:`dsp.dtmf.feed_many`) once :data:`QUEUE_TAPS` taps wait or at the
  next tick, whichever is first;
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
import struct
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dsp import g711
from dsp.dtmf import DtmfDetector, DtmfEvent, feed_many
from gateway.media.telephone_event import TelephoneEventReceiver

log = logging.getLogger(__name__)

PCMU = 0
PCMA = 8  # and PCMU | PCMA == PCMA: one test admits both
MIXED_LAWS = -1
"""A batch's ``batch_type`` when its packets do not all carry one G.711 law."""
SAMPLE_RATE = 8000
BATCH_SAMPLES = 3200
"""Audio decoded and analysed together: 400 ms at 8 kHz (twenty 20 ms packets). Each batch
has a fixed cost in Python and NumPy calls, so fewer, larger batches leave the relay more of
its core; an in-band key press is still heard within half a second (RFC 4733 events and
SIP INFO at once)."""
MASK_HOLD_SAMPLES = 800
"""How far admitted audio trails the DTMF receiver, so a press is confirmed before it is kept."""
MASK_GUARD_SAMPLES = 160
"""Silence added on each side of a press (20 ms): the tone's edges the frames do not count."""
BATCH_MAX_AGE_S = 0.5
"""A batch older than this is analysed on the next tick even when not full: a stream that
stopped or slowed. Longer than a full batch takes to arrive, so a steady stream's batches
are always analysed when full, never by a tick that came late."""
QUEUE_TAPS = 64
"""Taps whose batches are analysed together as soon as this many wait (else at the tick):
enough to share the fixed cost of each NumPy call, few enough to run between two packets."""

CAPTURE_DELAY_S = BATCH_MAX_AGE_S + MASK_HOLD_SAMPLES / SAMPLE_RATE + 0.1
"""The longest admitted audio waits between its arrival and the sink: the rest of its batch,
the hold behind the receiver, and up to 100 ms in the queue (two ticks). A sink that keeps a
window open for late packets adds this to it (:class:`~gateway.calls.consent_flow.CallConsent`
does for the recorder), or audio this gate delays would count as late."""

_RTP_HEADER = struct.Struct("!BBHII")
"""Version/flags, marker/payload type, sequence number, timestamp, SSRC (RFC 3550 5.1)."""

INBAND = "inband"
RFC4733 = "rfc4733"

Batch = list[tuple[bytes, int, int]]
"""Packets waiting for analysis: payload, RTP payload type, recording position (-1: refused)."""

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
        "batch_type",
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
        "queued",
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
        self.batch: Batch = []
        self.batch_samples = 0
        self.batch_type = PCMU
        self.batch_at = 0.0
        self.stream_pos = 0
        self.held: deque[tuple[int, int, npt.NDArray[np.int16]]] = deque()
        self.presses: list[list[int | None]] = []
        self.admitted_samples = 0
        self.malformed = 0
        self.queued = False

    def __call__(self, data: bytes, arrival: float) -> None:
        """One RTP packet from the party, already relayed (RFC 3550 5.1 header), that reached
        the relay at ``arrival`` (:func:`time.monotonic` seconds)."""
        if not self.listening:
            return
        try:
            first, second, _, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        except struct.error:
            self.malformed += 1
            return
        payload: bytes | None
        if first == 0x80:  # version 2 with no padding, extension or CSRC: the usual header
            payload = data[12:]
        else:
            payload = self._payload(data, first)
            if payload is None:
                return
        payload_type = second & 0x7F
        if payload_type in self.event_types:
            digit = self.events.feed(ssrc, timestamp, bool(second & 0x80), payload)
            if digit is not None:
                self.gate.heard(self, digit, RFC4733, arrival)
            return
        samples = len(payload)
        if payload_type | PCMA != PCMA or not samples:  # neither PCMU (0) nor PCMA (8)
            return
        gate = self.gate
        position = -1
        if gate.capture_open:
            gate.admitted += 1
            if gate.started_at is None:
                gate.started_at = arrival
            position = self.timeline.position(ssrc, timestamp, arrival - gate.started_at, samples)
        else:
            gate.refused += 1
        batch = self.batch
        if not batch:
            self.batch_at = arrival
            self.batch_type = payload_type
        elif payload_type != self.batch_type:
            self.batch_type = MIXED_LAWS
        batch.append((payload, payload_type, position))
        self.batch_samples += samples
        if self.batch_samples >= BATCH_SAMPLES and not self.queued:
            gate.queue.submit(self)

    def _payload(self, data: bytes, first: int) -> bytes | None:
        """The payload after CSRCs and a header extension, before padding (RFC 3550 5.1,
        5.3.1); None, counted, when the header claims more than the packet holds."""
        offset = 12 + 4 * (first & 0x0F)
        try:
            if first & 0x10:
                offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
            end = len(data) - (data[-1] if first & 0x20 else 0)
        except IndexError:
            end = -1
        if end < offset:
            self.malformed += 1
            return None
        return data[offset:end]

    def take_batch(self) -> Batch:
        """The packets waiting for analysis, handed over (the tap starts a new batch)."""
        batch = self.batch
        self.batch = []
        self.batch_samples = 0
        self.queued = False
        return batch

    def analysed(self, batch: Batch, pcm: npt.NDArray[np.int16]) -> None:
        """Hold the admitted audio of ``batch`` (decoded: ``pcm``) for the sink.

        Admitted packets that follow each other on the recording's clock are
        held as one run (with what the last batch left held, when they continue
        it), so the sink takes a batch in one write, not one per packet.
        """
        base = self.stream_pos
        self.stream_pos += len(pcm)
        runs: list[list[int]] = []  # [offset in the batch, position, samples]
        offset = 0
        for payload, _, position in batch:
            count = len(payload)
            if position >= 0:
                last = runs[-1] if runs else None
                if last and last[0] + last[2] == offset and last[1] + last[2] == position:
                    last[2] += count
                else:
                    runs.append([offset, position, count])
            offset += count
        held = self.held
        for run_offset, position, count in runs:
            self.admitted_samples += count
            run = pcm[run_offset : run_offset + count]
            stream_start = base + run_offset
            if held:
                last_start, last_position, last_pcm = held[-1]
                size = len(last_pcm)
                if last_start + size == stream_start and last_position + size == position:
                    # continues what the last batch left held: one run, one write to the sink
                    held[-1] = (last_start, last_position, np.concatenate([last_pcm, run]))
                    continue
            held.append((stream_start, position, run))

    def heard_presses(self, events: list[DtmfEvent]) -> None:
        """The in-band key presses the receiver found in the batch; then release what is due."""
        for event in events:
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
        if not self.gate.capture_open:
            # paused or withdrawn by this very press: nothing from its start on is kept
            cut = start - MASK_GUARD_SAMPLES
            while self.held and self.held[-1][0] + len(self.held[-1][2]) > cut:
                stream_start, position, pcm = self.held.pop()
                keep = max(0, cut - stream_start)
                if keep:
                    self.held.append((stream_start, position, pcm[:keep]))
                    break

    def release(self, limit: int) -> None:
        """Hand the sink every held sample before stream index ``limit``; a run that
        straddles ``limit`` goes in part, its rest stays held."""
        held = self.held
        sink = self.gate.sink
        while held:
            stream_start, position, pcm = held[0]
            length = len(pcm)
            if stream_start + length <= limit:
                held.popleft()
                sink.write(self.channel, position, self._masked(stream_start, pcm))
                continue
            if stream_start < limit:
                cut = limit - stream_start
                sink.write(self.channel, position, self._masked(stream_start, pcm[:cut]))
                held[0] = (limit, position + cut, pcm[cut:])
            break
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
        """End of the stream (its last batch analysed): release every held packet."""
        for event in self.detector.flush():
            self._press(event.digit, event.start_sample, event.end_sample)
        self.release(self.stream_pos + MASK_GUARD_SAMPLES)
        self.held.clear()
        self.listening = False


class TapQueue:
    """Taps whose batches wait to be analysed, and the analysis of all of them at once.

    One gateway shares one queue between its calls' gates, so the fixed
    cost of each NumPy call (which is most of the cost of analysing one
    200 ms batch) is paid once for up to :data:`QUEUE_TAPS` taps. A gate made
    without a queue gets one of its own, run at its ticks.
    """

    def __init__(self, size: int = QUEUE_TAPS) -> None:
        if size < 1:
            raise ValueError(f"queue size must be at least 1, got {size}")
        self.size = size
        self.waiting: list[PartyTap] = []
        self.runs = 0

    def submit(self, tap: PartyTap) -> None:
        """``tap`` has a batch to analyse; once ``size`` taps wait, they are analysed now."""
        if not tap.queued:
            tap.queued = True
            self.waiting.append(tap)
            if len(self.waiting) >= self.size:
                self.run()

    def run(self) -> None:
        """Analyse every waiting batch: decode, listen for in-band DTMF, hold admitted audio."""
        waiting = self.waiting
        if not waiting:
            return
        self.waiting = []
        self.runs += 1
        taps: list[PartyTap] = []
        batches: list[tuple[Batch, int, int]] = []  # the packets, their law, their samples
        for tap in waiting:
            law, samples = tap.batch_type, tap.batch_samples
            batch = tap.take_batch()
            if batch:  # empty when the tap stopped listening while it waited
                taps.append(tap)
                batches.append((batch, law, samples))
        if not taps:
            return
        pcms = _decode_batches(batches)
        for tap, (batch, _, _), pcm in zip(taps, batches, pcms, strict=True):
            tap.analysed(batch, pcm)
        found = feed_many([tap.detector for tap in taps], pcms)
        for tap, events in zip(taps, found, strict=True):
            tap.heard_presses(events)


def _decode_batches(batches: list[tuple[Batch, int, int]]) -> list[npt.NDArray[np.int16]]:
    """Each batch's payloads decoded into one array: a single table lookup for all of them
    when they share one G.711 law (the common case), else one per packet."""
    law = batches[0][1]
    if law != MIXED_LAWS and all(batch_law == law for _, batch_law, _ in batches):
        payloads = [entry[0] for batch, _, _ in batches for entry in batch]
        pcm = g711.decode(b"".join(payloads), law)
        return np.split(pcm, np.cumsum([samples for _, _, samples in batches[:-1]]).tolist())
    return [
        np.concatenate([g711.decode(payload, payload_type) for payload, payload_type, _ in batch])
        for batch, _, _ in batches
    ]


class CaptureGate:
    """The single gate between a call's relay and its capture sink.

    ``state.capture_allowed`` (the consent state machine) is read once per
    audio packet, at its arrival, as :attr:`capture_open`: the only decision
    point (``admitted`` and ``refused`` count the packets it let through and
    kept out).
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
        queue: TapQueue | None = None,
    ) -> None:
        self.state = state
        self.owns_queue = queue is None
        self.queue = TapQueue() if queue is None else queue
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

    @property
    def capture_open(self) -> bool:
        """Whether audio arriving now may be captured: the consent state, read now."""
        return not self.closed and self.state.capture_allowed

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
                tap.take_batch()  # dropped; a queue that held the tap skips it
            tap.listening = listening

    def tick(self, now: float) -> None:
        """Periodic: queue batches that waited too long (a gate with its own queue runs it),
        let the sink write what is due. A shared queue is run by its owner after every
        gate's tick."""
        for tap in self.taps.values():
            if tap.batch and now - tap.batch_at >= BATCH_MAX_AGE_S:
                self.queue.submit(tap)
        if self.owns_queue:
            self.queue.run()
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
            if tap.batch:
                self.queue.submit(tap)
        self.queue.run()  # the other calls' waiting batches go now too
        for tap in self.taps.values():
            tap.finish()
        self.closed = True
