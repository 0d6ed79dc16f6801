"""Demo phones calling each other on loopback, with no gateway between them.

The caller (UAC) and the callee (UAS) are two :class:`~gateway.demo.Phone`
objects on 127.0.0.1 (SIP ports 47000-47999, media ports chosen by the
kernel or 48000-48999). Each test places one real call: SIP over UDP through
the gateway's own stack, RTP both ways. Audio checks read a window of each
side's received timeline and compare the energy at the expected frequency
with the energy at the other one (a Goertzel ratio), so they hold under
loopback jitter but fail when the wrong tone, or none, is in the window.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from dsp import g711
from gateway.demo import (
    AnswerMode,
    AudioScript,
    CallNotAnswered,
    Digit,
    Hangup,
    Phone,
    PhoneCall,
    Tone,
)
from gateway.demo.rtp_endpoint import EVENT_PAYLOAD_TYPE, answer_sdp, offer_sdp, remote_media
from gateway.demo.script import FRAME_SAMPLES
from gateway.media.telephone_event import parse_event
from gateway.sip.sdp import SessionDescription

HOST = "127.0.0.1"
SIP_PORTS = (47000, 47999)
MEDIA_PORTS = (48000, 48999)
RATE = 8000
LOW_HZ = 1000.0
HIGH_HZ = 2000.0
DOMINANCE = 20.0
"""How many times more energy the expected tone must have than the other one."""
CALL_TIMEOUT_S = 5.0


def _free_udp_port(low: int, high: int, taken: set[int]) -> int:
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(low, high)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free UDP port in {low}-{high}")


def goertzel_power(samples: npt.NDArray[np.int16], frequency_hz: float) -> float:
    """Power at ``frequency_hz``: the Goertzel bin, computed as one Hann-windowed DFT term."""
    n = np.arange(len(samples))
    weighted = samples.astype(np.float64) * np.hanning(len(samples))
    bin_value = np.dot(weighted, np.exp(-2j * np.pi * frequency_hz * n / RATE))
    return float(abs(bin_value) ** 2) / max(len(samples), 1)


def window(audio: npt.NDArray[np.int16], start_s: float, end_s: float) -> npt.NDArray[np.int16]:
    segment = audio[round(start_s * RATE) : round(end_s * RATE)]
    assert len(segment) == round((end_s - start_s) * RATE), "received audio ends too early"
    return segment


def audio_by_timestamp(received: list[tuple[float, Any]]) -> npt.NDArray[np.int16]:
    """The G.711 audio received, each packet at its RTP timestamp from the first one's."""
    packets = [packet for _, packet in received if packet.payload_type in (0, 8)]
    if not packets:
        return np.zeros(0, dtype=np.int16)
    base = packets[0].timestamp
    offsets = [(packet.timestamp - base) % 2**32 for packet in packets]
    audio = np.zeros(
        max(o + len(p.payload) for o, p in zip(offsets, packets, strict=True)), dtype=np.int16
    )
    for offset, packet in zip(offsets, packets, strict=True):
        audio[offset : offset + len(packet.payload)] = g711.decode(
            packet.payload, packet.payload_type
        )
    return audio


def assert_tone(audio: npt.NDArray[np.int16], start_s: float, end_s: float, hz: float) -> None:
    """The window holds ``hz`` and not the other test tone."""
    segment = window(audio, start_s, end_s)
    other = HIGH_HZ if hz == LOW_HZ else LOW_HZ
    wanted, unwanted = goertzel_power(segment, hz), goertzel_power(segment, other)
    assert wanted > DOMINANCE * unwanted, f"{hz} Hz {wanted:.3g} vs {other} Hz {unwanted:.3g}"
    rms = float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))
    assert rms > 2000, f"window {start_s}-{end_s} s is nearly silent (rms {rms:.0f})"


def assert_quiet(audio: npt.NDArray[np.int16], start_s: float, end_s: float) -> None:
    segment = window(audio, start_s, end_s)
    assert int(np.max(np.abs(segment))) < 200, f"window {start_s}-{end_s} s is not silent"


@pytest.fixture
async def phones() -> AsyncIterator[tuple[Phone, Phone]]:
    taken: set[int] = set()
    caller = Phone(HOST, _free_udp_port(*SIP_PORTS, taken), name="alice")
    callee = Phone(HOST, _free_udp_port(*SIP_PORTS, taken), name="bob")
    await caller.start()
    await callee.start()
    try:
        yield caller, callee
    finally:
        await caller.close()
        await callee.close()


async def place(caller: Phone, callee: Phone, script: AudioScript) -> PhoneCall:
    return await caller.call(callee.address, to_user="bob", from_user="alice", script=script)


async def ended(call: PhoneCall) -> str:
    return await asyncio.wait_for(asyncio.shield(call.ended), CALL_TIMEOUT_S)


# ------------------------------------------------------------------ calls


async def test_answered_call_carries_each_sides_tones_at_their_times(
    phones: tuple[Phone, Phone],
) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(
        ring_s=0.1,
        script=AudioScript([Tone(HIGH_HZ, start=0.0, duration=0.6), Tone(LOW_HZ, 0.8, 0.6)]),
    )
    script = AudioScript(
        [Tone(LOW_HZ, start=0.0, duration=0.6), Tone(HIGH_HZ, 0.8, 0.6), Hangup(at=1.8)]
    )
    call = await place(caller, callee, script)
    await asyncio.wait_for(call.answered, CALL_TIMEOUT_S)
    answered = await callee.next_incoming(1.0)

    assert await ended(call) == "bye-sent"
    assert await ended(answered) == "bye-received"
    assert call.final_status == 200 and call.state == answered.state == "ended"
    assert 180 in call.progress and answered.progress == [180]
    assert call.media_t0 is not None and call.answered_at is not None
    assert abs(call.media_t0 - call.answered_at) < 0.01

    heard_by_caller = call.received_audio()
    heard_by_callee = answered.received_audio()
    assert_tone(heard_by_caller, 0.1, 0.5, HIGH_HZ)
    assert_tone(heard_by_caller, 0.9, 1.3, LOW_HZ)
    assert_tone(heard_by_callee, 0.1, 0.5, LOW_HZ)
    assert_tone(heard_by_callee, 0.9, 1.3, HIGH_HZ)
    assert_quiet(heard_by_callee, 0.65, 0.75)
    assert_quiet(heard_by_callee, 1.5, 1.7)
    assert len(call.ssrcs) == 1 and len(answered.ssrcs) == 1
    assert call.ssrcs != answered.ssrcs
    assert [what for _, what in call.sent_log] == [
        f"tone {LOW_HZ:g} Hz for 0.6 s",
        f"tone {HIGH_HZ:g} Hz for 0.6 s",
        "hangup",
    ]
    hangup_at = call.sent_log[-1][0] - call.media_t0
    assert 1.78 <= hangup_at <= 1.9


async def test_audio_packets_are_paced_every_20_ms_with_timestamps_160_apart(
    phones: tuple[Phone, Phone],
) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=0.0)
    call = await place(caller, callee, AudioScript([Tone(LOW_HZ, 0.0, 1.0), Hangup(1.0)]))
    answered = await callee.next_incoming(CALL_TIMEOUT_S)
    await ended(answered)
    packets = [packet for _, packet in answered.received_packets]
    arrivals = np.array([arrival for arrival, _ in answered.received_packets])
    assert 45 <= len(packets) <= 52
    assert packets[0].marker and not any(packet.marker for packet in packets[1:])
    sequence = np.array([packet.sequence_number for packet in packets])
    assert np.all(np.diff(sequence) % 65536 == 1)
    stamps = np.array([packet.timestamp for packet in packets], dtype=np.int64)
    assert np.all(np.diff(stamps) % (1 << 32) == FRAME_SAMPLES)
    assert {packet.payload_type for packet in packets} == {0}
    assert all(len(packet.payload) == FRAME_SAMPLES for packet in packets)
    span = arrivals[-1] - arrivals[0]
    assert abs(span - 0.02 * (len(packets) - 1)) < 0.03, "the sender drifted"
    assert call.received_packets, "the callee sends silence packets with no script"


async def test_digits_by_rfc4733_inband_and_info(phones: tuple[Phone, Phone]) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=0.0)
    script = AudioScript(
        [
            Tone(LOW_HZ, start=0.0, duration=1.4),
            Digit("1", at=0.3, method="rfc4733"),
            Digit("9", at=0.7, method="inband"),
            Digit("5", at=0.9, method="info"),
            Hangup(at=1.4),
        ]
    )
    call = await place(caller, callee, script)
    answered = await callee.next_incoming(CALL_TIMEOUT_S)
    await ended(answered)

    assert answered.received_digits == ["1"]
    events = [
        (arrival, packet)
        for arrival, packet in answered.received_packets
        if packet.payload_type == EVENT_PAYLOAD_TYPE
    ]
    assert len(events) == 7
    assert len({packet.timestamp for _, packet in events}) == 1
    assert [packet.marker for _, packet in events] == [True] + [False] * 6
    reports = [parse_event(packet.payload) for _, packet in events]
    assert [report.end for report in reports] == [False] * 4 + [True] * 3
    assert [report.duration for report in reports] == [160, 320, 480, 640, 800, 800, 800]
    assert {report.event for report in reports} == {1}
    first_event = min(packet.sequence_number for _, packet in events)
    last_event = max(packet.sequence_number for _, packet in events)
    audio_during = [
        packet
        for _, packet in answered.received_packets
        if packet.payload_type != EVENT_PAYLOAD_TYPE
        and first_event <= packet.sequence_number <= last_event
    ]
    assert audio_during == [], "audio packets were sent during the telephone-event"
    assert call.media_t0 is not None
    assert 0.25 <= events[0][0] - call.media_t0 <= 0.4

    assert answered.info_digits == ["5"]
    info = answered.received_infos[0]
    assert info.content_type == "application/dtmf-relay"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"

    # placed by RTP timestamp (RFC 3550 5.1), the sender's own timeline: arrival times
    # jitter with the event loop, and a packet placed a few ms off leaves a seam whose
    # broadband energy reads as a third tone
    heard = audio_by_timestamp(answered.received_packets)
    dtmf = window(heard, 0.71, 0.79)
    assert goertzel_power(dtmf, 852.0) > DOMINANCE * goertzel_power(dtmf, 697.0)
    assert goertzel_power(dtmf, 1477.0) > DOMINANCE * goertzel_power(dtmf, 1209.0)
    plain = window(heard, 0.5, 0.6)
    assert goertzel_power(plain, 852.0) * DOMINANCE < goertzel_power(plain, LOW_HZ)

    logged = {what: at - call.media_t0 for at, what in call.sent_log}
    assert 0.28 <= logged["digit 1 rfc4733"] <= 0.36
    assert 0.66 <= logged["digit 9 inband"] <= 0.74
    assert 0.88 <= logged["digit 5 info"] <= 0.98


async def test_send_info_returns_the_status_and_the_callee_sees_it(
    phones: tuple[Phone, Phone],
) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=0.0)
    call = await place(caller, callee, AudioScript())
    await asyncio.wait_for(call.answered, CALL_TIMEOUT_S)
    answered = await callee.next_incoming(1.0)
    status = await call.send_info({"X-Demo": "yes"}, b"hello", "text/plain")
    assert status == 200
    assert await call.send_digit_info("#") == 200
    assert [info.headers.get("X-Demo") for info in answered.received_infos] == ["yes", None]
    assert answered.received_infos[0].body == b"hello"
    assert answered.info_digits == ["#"]
    await answered.hangup()
    assert await ended(call) == "bye-received"
    assert answered.ended.result() == "bye-sent"


async def test_busy_callee_ends_the_call_with_486(phones: tuple[Phone, Phone]) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(reject_status=486)
    call = await place(caller, callee, AudioScript([Tone(LOW_HZ, 0.0, 1.0)]))
    assert await ended(call) == "failed 486"
    assert call.final_status == 486
    with pytest.raises(CallNotAnswered):
        await call.answered
    rejected = await callee.next_incoming(1.0)
    assert await ended(rejected) == "failed 486"
    assert call.received_packets == [] and call.media_t0 is None


async def test_cancel_before_the_answer(phones: tuple[Phone, Phone]) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=10.0)
    call = await place(caller, callee, AudioScript([Tone(LOW_HZ, 0.0, 1.0)]))
    ringing = await callee.next_incoming(CALL_TIMEOUT_S)
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while 180 not in call.progress:
        assert time.monotonic() < deadline, "no 180 Ringing"
        await asyncio.sleep(0.01)
    assert call.state == "early"
    await asyncio.wait_for(call.hangup(), CALL_TIMEOUT_S)
    assert call.ended.result() == "cancelled"
    assert call.final_status == 487
    assert await ended(ringing) == "cancelled"
    assert ringing.final_status == 487 and ringing.answered_at is None


async def test_callee_auto_hangup_sends_bye(phones: tuple[Phone, Phone]) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=0.0, auto_hangup_s=0.3)
    call = await place(caller, callee, AudioScript())
    answered = await callee.next_incoming(CALL_TIMEOUT_S)
    assert await ended(call) == "bye-received"
    assert await ended(answered) == "bye-sent"
    assert call.answered_at is not None and answered.answered_at is not None
    assert answered.ended.done()


async def test_early_media_from_a_183_starts_the_callers_media(
    phones: tuple[Phone, Phone],
) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(
        ring_s=0.8, early_media=True, script=AudioScript([Tone(HIGH_HZ, 0.0, 1.5)])
    )
    call = await place(caller, callee, AudioScript([Hangup(1.2)]))
    await asyncio.wait_for(call.answered, CALL_TIMEOUT_S)
    await ended(call)
    assert 183 in call.progress and call.early_sdp is not None
    assert call.media_t0 is not None and call.answered_at is not None
    assert 0.7 <= call.answered_at - call.media_t0 <= 1.0
    assert_tone(call.received_audio(), 0.1, 0.6, HIGH_HZ)
    assert call.sent_log[-1][1] == "hangup"
    assert 1.15 <= call.sent_log[-1][0] - call.media_t0 <= 1.3


async def test_pcma_offer_gets_pcma_audio_on_a_chosen_media_port(
    phones: tuple[Phone, Phone],
) -> None:
    caller, _ = phones
    taken: set[int] = set()
    media_port = _free_udp_port(*MEDIA_PORTS, taken)
    callee = Phone(HOST, _free_udp_port(*SIP_PORTS, taken), name="carol", media_port=media_port)
    callee.answer_mode = AnswerMode(ring_s=0.0, script=AudioScript([Tone(HIGH_HZ, 0.0, 0.8)]))
    async with callee:
        call = await caller.call(
            callee.address,
            to_user="carol",
            from_user="alice",
            script=AudioScript([Tone(LOW_HZ, 0.0, 0.8), Hangup(0.8)]),
            codecs=(8,),
        )
        answered = await callee.next_incoming(CALL_TIMEOUT_S)
        await ended(answered)
    assert call.remote_sdp is not None and call.remote_sdp.media[0].port == media_port
    assert call.remote_sdp.media[0].formats == ["8", str(EVENT_PAYLOAD_TYPE)]
    assert {packet.payload_type for _, packet in call.received_packets} == {8}
    assert {packet.payload_type for _, packet in answered.received_packets} == {8}
    assert_tone(call.received_audio(), 0.1, 0.6, HIGH_HZ)
    assert_tone(answered.received_audio(), 0.1, 0.6, LOW_HZ)


async def test_request_in_an_unknown_dialog_gets_481(phones: tuple[Phone, Phone]) -> None:
    caller, callee = phones
    callee.answer_mode = AnswerMode(ring_s=0.0)
    call = await place(caller, callee, AudioScript())
    await asyncio.wait_for(call.answered, CALL_TIMEOUT_S)
    answered = await callee.next_incoming(1.0)
    assert call.dialog is not None
    call.dialog.remote_tag = "not-the-callees-tag"
    assert await call.send_info({}, b"x", "text/plain") == 481
    assert answered.received_infos == []


# ------------------------------------------------------------ script and SDP


def test_rfc4733_digit_takes_whole_slots_and_repeats_its_end() -> None:
    plan = AudioScript([Tone(LOW_HZ, 0.0, 1.0), Digit("#", at=0.105)]).render()
    assert sorted(plan.events) == list(range(6, 13))  # starts at the next 20 ms boundary
    assert {frame.start_slot for frame in plan.events.values()} == {6}
    assert [frame.marker for frame in plan.events.values()] == [True] + [False] * 6
    reports = [parse_event(frame.payload) for frame in plan.events.values()]
    assert {report.event for report in reports} == {11}
    assert [report.end for report in reports] == [False] * 4 + [True] * 3
    assert plan.marks[6] == ["digit # rfc4733"]


def test_script_audio_places_tones_on_the_timeline() -> None:
    plan = AudioScript([Tone(LOW_HZ, start=0.5, duration=0.25)]).render()
    assert len(plan.audio) == 6080  # 0.75 s padded to whole 20 ms slots
    assert not plan.audio[:4000].any() and not plan.audio[6000:].any()
    peak = int(np.max(np.abs(plan.audio[4000:6000])))
    assert abs(20 * np.log10(peak / 32767) + 12) < 0.2
    assert plan.frame(100, 0) == b"\xff" * FRAME_SAMPLES  # past the timeline: mu-law silence
    assert plan.marks[25] == [f"tone {LOW_HZ:g} Hz for 0.25 s"]


def test_overlapping_rfc4733_digits_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        AudioScript([Digit("1", at=0.0), Digit("2", at=0.1)])
    with pytest.raises(ValueError, match="DTMF digit"):
        Digit("x", at=0.0)
    with pytest.raises(ValueError, match="method"):
        Digit("1", at=0.0, method="sms")  # type: ignore[arg-type]


def test_answer_keeps_the_offer_order_and_rejects_other_streams() -> None:
    offer = SessionDescription.parse(
        b"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        b"m=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
        b"a=sendonly\r\n"
    )
    answer = answer_sdp(offer, HOST, 48500, (0, 8), "bob")
    assert answer is not None
    assert answer.media[0].port == 0
    audio = answer.media[1]
    assert audio.port == 48500 and audio.formats == ["8", "0", "96"]
    assert audio.direction == "recvonly"
    assert audio.fmtp == {"96": "0-15"}
    remote = remote_media(offer, (0, 8))
    assert remote is not None
    assert (remote.address, remote.port, remote.audio_pt, remote.event_pt) == (
        "10.0.0.1",
        4000,
        8,
        96,
    )
    assert remote.may_send is False  # the offerer only sends
    assert answer_sdp(offer, HOST, 48500, (0,), "bob") is not None
    g729_only = SessionDescription.parse(
        b"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 18\r\n"
    )
    assert answer_sdp(g729_only, HOST, 48500, (0, 8), "bob") is None


def test_offer_lists_g711_telephone_event_ptime_and_direction() -> None:
    offer = offer_sdp(HOST, 48123, (0, 8), "alice")
    text = bytes(offer).decode()
    assert "m=audio 48123 RTP/AVP 0 8 101\r\n" in text
    for line in (
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
        f"c=IN IP4 {HOST}",
    ):
        assert line + "\r\n" in text
