"""The capture gate: admission at arrival, DTMF heard and masked, nothing before consent."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dsp import g711
from dsp.tones import dtmf_tone, tone
from dsp.wav import read_wav
from gateway.analysis.recorder import StereoRecorder
from gateway.calls.consent_service import TICK_S
from gateway.media.capture import (
    BATCH_SAMPLES,
    CAPTURE_DELAY_S,
    MASK_GUARD_SAMPLES,
    CaptureGate,
    TapQueue,
)

PT_EVENT = 101


@dataclass
class State:
    capture_allowed: bool = False


@dataclass
class Sink:
    """A capture sink that keeps what reaches it, by channel and position."""

    writes: list[tuple[int, int, npt.NDArray[np.int16]]] = field(default_factory=list)
    flushed: list[float] = field(default_factory=list)

    def write(self, channel: int, start: int, pcm: npt.NDArray[np.int16]) -> None:
        self.writes.append((channel, start, pcm.copy()))

    def flush_due(self, now_s: float) -> None:
        self.flushed.append(now_s)

    def channel(self, channel: int) -> npt.NDArray[np.int16]:
        pieces = [(start, pcm) for ch, start, pcm in self.writes if ch == channel]
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        end = max(start + len(pcm) for start, pcm in pieces)
        out = np.zeros(end, dtype=np.int16)
        for start, pcm in pieces:
            out[start : start + len(pcm)] = pcm
        return out


class TimestampTimeline:
    """Positions by RTP timestamp from the first packet (the real one adds arrival anchoring)."""

    def __init__(self) -> None:
        self.first: int | None = None

    def position(self, ssrc: int, timestamp: int, arrival_s: float, samples: int) -> int:
        if self.first is None:
            self.first = timestamp
        return timestamp - self.first


def rtp(seq: int, ts: int, payload: bytes, pt: int = 0, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq, ts, 0x1234) + payload


def packets(pcm: npt.NDArray[np.int16], first_seq: int = 0, first_ts: int = 0) -> list[bytes]:
    codes = g711.encode(pcm, 0)
    return [
        rtp(first_seq + i, first_ts + 160 * i, codes[160 * i : 160 * (i + 1)])
        for i in range(len(codes) // 160)
    ]


def energy_at(pcm: npt.NDArray[np.int16], frequency: float) -> float:
    """Share of the signal's energy at ``frequency`` (0 for silence)."""
    x = pcm.astype(np.float64)
    total = float(np.dot(x, x))
    if total == 0:
        return 0.0
    n = np.arange(len(x))
    c = np.dot(x, np.cos(2 * np.pi * frequency * n / 8000))
    s = np.dot(x, np.sin(2 * np.pi * frequency * n / 8000))
    return float((c * c + s * s) * 2 / len(x) / total)


def make_gate(state: State, heard: list[tuple[str, str, str]], sink: Sink) -> CaptureGate:
    return CaptureGate(
        state,
        sink,
        {"caller": TimestampTimeline(), "callee": TimestampTimeline()},
        {"caller": 0, "callee": 1},
        lambda party, digit, method, at: heard.append((party, digit, method)),
        event_types=frozenset({PT_EVENT}),
    )


def test_audio_before_consent_never_reaches_the_sink() -> None:
    state, sink, heard = State(), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    before = packets(tone(1000, 1.0, amplitude_dbfs=-12))
    after = packets(tone(2000, 1.0, amplitude_dbfs=-12), first_seq=50, first_ts=8000)
    for packet in before:
        tap(packet, 0.0)
    state.capture_allowed = True
    for packet in after:
        tap(packet, 0.0)
    gate.finish()
    recorded = sink.channel(0)
    assert gate.refused == len(before) and gate.admitted == len(after)
    assert len(recorded) == 8000
    assert energy_at(recorded, 1000) < 1e-4
    assert energy_at(recorded, 2000) > 0.9
    assert sink.channel(1).size == 0


def test_inband_dtmf_is_heard_once_and_silenced_in_capture() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["callee"]
    audio = np.concatenate(
        [
            tone(2000, 0.5, amplitude_dbfs=-12),
            dtmf_tone("5", 0.1),
            tone(2000, 0.5, amplitude_dbfs=-12),
        ]
    )
    for packet in packets(audio):
        tap(packet, 0.0)
    gate.finish()
    assert heard == [("callee", "5", "inband")]
    recorded = sink.channel(1)
    press = recorded[4000 - MASK_GUARD_SAMPLES // 2 : 4800 + MASK_GUARD_SAMPLES // 2]
    assert not press.any()  # the key press and its guard are silence
    kept = np.concatenate(
        [recorded[: 4000 - MASK_GUARD_SAMPLES], recorded[4800 + MASK_GUARD_SAMPLES :]]
    )
    assert energy_at(kept, 2000) > 0.9
    assert len(recorded) == len(audio)


def test_telephone_events_are_digits_and_never_captured() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    for index in range(8):
        end = index >= 5
        payload = struct.pack("!BBH", 1, (0x80 if end else 0) | 10, 160 * (index + 1))
        tap(rtp(index, 4000, payload, pt=PT_EVENT, marker=index == 0), 0.0)
    gate.finish()
    assert heard == [("caller", "1", "rfc4733")]
    assert sink.writes == []


def test_a_pause_press_cuts_capture_from_its_start() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []

    def on_digit(party: str, digit: str, method: str, at: float) -> None:
        heard.append((party, digit, method))
        if digit == "*":
            state.capture_allowed = False

    gate = CaptureGate(
        state, sink, {"callee": TimestampTimeline()}, {"callee": 1}, on_digit, frozenset()
    )
    tap = gate.taps["callee"]
    speech = tone(2000, 0.6, amplitude_dbfs=-12)
    card = tone(1000, 1.0, amplitude_dbfs=-12)  # what must not be captured: after the press
    for packet in packets(np.concatenate([speech, dtmf_tone("*", 0.1), card])):
        tap(packet, 0.0)
    gate.finish()
    assert heard == [("callee", "*", "inband")]
    recorded = sink.channel(1)
    assert len(recorded) <= len(speech)  # nothing from the press on
    assert energy_at(recorded[: len(speech) - MASK_GUARD_SAMPLES], 2000) > 0.9
    assert energy_at(recorded, 1000) < 1e-4


def test_other_codecs_and_malformed_packets_are_ignored() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    tap(rtp(1, 160, b"\x00" * 160, pt=9), 0.0)  # G.722: relayed, not captured
    tap(b"\x80", 0.0)  # too short
    tap(bytes([0x8F, 0]) + b"\x00" * 20, 0.0)  # claims 15 CSRCs it does not have
    gate.finish()
    assert sink.writes == []
    assert tap.malformed == 2


def test_not_listening_takes_nothing() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    gate.set_listening(False)
    for packet in packets(np.concatenate([tone(2000, 0.2), dtmf_tone("9", 0.1)])):
        gate.taps["caller"](packet, 0.0)
    gate.finish()
    assert sink.writes == [] and heard == []


def test_admission_is_decided_per_packet_at_arrival() -> None:
    """Packets queued for analysis keep the decision made when they arrived."""
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    stream = packets(tone(2000, 0.2, amplitude_dbfs=-12))
    tap(stream[0], 0.0)
    tap(stream[1], 0.0)
    state.capture_allowed = False  # consent withdrawn before the batch is analysed
    for packet in stream[2:]:
        tap(packet, 0.0)
    gate.finish()
    recorded = sink.channel(0)
    assert len(recorded) == 320  # the first two packets, nothing after
    assert energy_at(recorded, 2000) > 0.9


def test_contiguous_packets_reach_the_sink_in_runs_split_at_the_hold() -> None:
    """A batch of admitted packets is written in runs, not per packet, and audio after a
    lost packet keeps its place on the recording's clock."""
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    stream = packets(tone(2000, 1.0, amplitude_dbfs=-12))
    for index, packet in enumerate(stream):
        if index != 30:  # lost on the way
            tap(packet, 0.0)
    gate.finish()
    assert len(sink.writes) < len(stream) // 3
    recorded = sink.channel(0)
    assert len(recorded) == 8000
    assert not recorded[30 * 160 : 31 * 160].any()
    sent = tone(2000, 1.0, amplitude_dbfs=-12)
    expected = g711.decode(g711.encode(sent, 0), 0)
    expected[30 * 160 : 31 * 160] = 0
    assert np.array_equal(recorded, expected)


def test_a_codec_change_inside_a_batch_decodes_each_packet_by_its_law() -> None:
    state, sink, heard = State(capture_allowed=True), Sink(), []
    gate = make_gate(state, heard, sink)
    tap = gate.taps["caller"]
    sent = tone(2000, 0.2, amplitude_dbfs=-12)
    for index in range(10):
        law = 0 if index < 5 else 8  # PCMU, then PCMA (a re-INVITE changed the codec)
        payload = g711.encode(sent[160 * index : 160 * (index + 1)], law)
        tap(rtp(index, 160 * index, payload, pt=law), 0.0)
    gate.finish()
    expected = np.concatenate(
        [
            g711.decode(g711.encode(sent[: 5 * 160], 0), 0),
            g711.decode(g711.encode(sent[5 * 160 :], 8), 8),
        ]
    )
    assert np.array_equal(sink.channel(0), expected)


def test_gates_sharing_a_queue_are_analysed_together_and_keep_their_own_presses() -> None:
    queue = TapQueue(size=2)
    state, heard = State(capture_allowed=True), []
    sinks = [Sink(), Sink()]
    gates = [
        CaptureGate(
            state,
            sink,
            {"caller": TimestampTimeline()},
            {"caller": 0},
            lambda party, digit, method, at, number=number: heard.append((number, digit)),
            queue=queue,
        )
        for number, sink in enumerate(sinks)
    ]
    batches_s = 2 * BATCH_SAMPLES / 8000  # two full batches of each stream
    first = packets(
        np.concatenate([dtmf_tone("4", 0.1), tone(2000, batches_s - 0.1, amplitude_dbfs=-12)])
    )
    second = packets(
        np.concatenate([tone(1000, batches_s - 0.2, amplitude_dbfs=-12), dtmf_tone("8", 0.2)])
    )
    for one, two in zip(first, second, strict=True):
        gates[0].taps["caller"](one, 0.0)
        gates[1].taps["caller"](two, 0.0)
    assert queue.runs == 2  # each time both taps had a full batch, not once per tap
    for gate in gates:
        gate.finish()
    assert sorted(heard) == [(0, "4"), (1, "8")]
    assert energy_at(sinks[0].channel(0)[1200:], 2000) > 0.9
    press_start = 2 * BATCH_SAMPLES - 1600
    assert not sinks[1].channel(0)[press_start - MASK_GUARD_SAMPLES // 2 :].any()  # silenced


def test_the_gates_delay_fits_the_recorders_window(tmp_path: Path) -> None:
    """Audio reaches the recorder at most CAPTURE_DELAY_S after it arrives (a batch, the
    hold behind the DTMF receiver, a queue wait of two ticks), so a recorder that keeps
    that window open loses nothing even with no allowance for the network (packets here
    arrive on time); one with a shorter window loses audio."""
    state, heard = State(capture_allowed=True), []
    sent = tone(1000, 3.0, amplitude_dbfs=-12)
    with_delay = StereoRecorder(tmp_path / "fits.wav", latency_s=CAPTURE_DELAY_S)
    without = StereoRecorder(tmp_path / "late.wav", latency_s=0.3)
    for recorder in (with_delay, without):
        gate = CaptureGate(
            state,
            recorder,
            {"caller": ArrivalTimeline()},
            {"caller": 0},
            lambda party, digit, method, at: heard.append(digit),
        )
        tap = gate.taps["caller"]
        next_tick = TICK_S
        for index, packet in enumerate(packets(sent)):
            arrival = index * 0.02  # packets arrive on time; ticks come every TICK_S
            while next_tick <= arrival:
                gate.tick(next_tick)
                next_tick += TICK_S
            tap(packet, arrival)
        gate.finish()
        recorder.close()
    assert with_delay.late_samples == 0
    assert without.late_samples > 0  # the same audio, a window short of the gate's delay
    recorded, _ = read_wav((tmp_path / "fits.wav").read_bytes())
    assert np.array_equal(recorded[:, 0], g711.decode(g711.encode(sent, 0), 0))
    assert heard == []


class ArrivalTimeline:
    """Positions by arrival, as the real timeline anchors a stream: sample = arrival x 8000."""

    def position(self, ssrc: int, timestamp: int, arrival_s: float, samples: int) -> int:
        return round(arrival_s * 8000)
