"""The announcement player over real UDP sockets on loopback.

Each test is a call through the relay: a phone for the caller (side A), one
for the callee (side B). The player plays toward B from the B-side socket
while A's RTP toward B is held back. Timing is asserted with loose bounds only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest

from dsp import g711
from dsp.tones import tone
from gateway.media.player import MAX_LATE_PACKETS, Playback, play
from gateway.media.relay import MediaRelay, MediaSession, MediaSide
from gateway.media.rtp import RtpPacket
from tests.unit.media.udp_phone import Phone, rtp, wait_until

PhoneFactory = Callable[..., Phone]

PORT_MIN = 40000
PORT_MAX = 40999
A_SSRC = 0xA0A0A0A0


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    media_relay = MediaRelay("127.0.0.1", PORT_MIN, PORT_MAX)
    yield media_relay
    await media_relay.close()


@dataclass
class Call:
    session: MediaSession
    a: Phone
    b: Phone

    @property
    def a_port(self) -> int:
        return self.session.local_ports("a")[0][0]

    @property
    def b_port(self) -> int:
        return self.session.local_ports("b")[0][0]

    @property
    def b_side(self) -> MediaSide:
        return self.session.streams[0].b


async def make_call(relay: MediaRelay, phones: PhoneFactory, name: str = "call") -> Call:
    session = await relay.create_session(name)
    a, b = phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, False)
    session.set_remote("b", 0, "127.0.0.1", b.port, None, False)
    return Call(session, a, b)


def received(phone: Phone) -> list[RtpPacket]:
    return [RtpPacket.parse(data) for data, _ in phone.pending()]


def assert_one_stream(packets: list[RtpPacket], payload_type: int) -> None:
    """One SSRC, consecutive sequence numbers, timestamps 160 apart, marker on the first only."""
    assert len({p.ssrc for p in packets}) == 1
    assert all(p.payload_type == payload_type for p in packets)
    for before, after in pairwise(packets):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
        assert after.timestamp == (before.timestamp + 160) & 0xFFFFFFFF
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)


@pytest.mark.parametrize("payload_type", [g711.PAYLOAD_TYPE_PCMU, g711.PAYLOAD_TYPE_PCMA])
async def test_plays_a_tone_as_one_rtp_stream(
    relay: MediaRelay, phones: PhoneFactory, payload_type: int
) -> None:
    call = await make_call(relay, phones)
    pcm = tone(1000.0, 0.5, amplitude_dbfs=-6.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    playback = play(call.b_side, pcm, payload_type)
    assert call.b_side.announcing
    assert await asyncio.wait_for(playback.done, 3.0) is True
    elapsed = loop.time() - began

    datagrams = call.b.pending()
    packets = [RtpPacket.parse(data) for data, _ in datagrams]
    assert len(packets) == 25
    assert {source[1] for _, source in datagrams} == {call.b_port}  # symmetric RTP (RFC 4961)
    assert_one_stream(packets, payload_type)
    assert all(len(p.payload) == 160 for p in packets)
    payload = b"".join(p.payload for p in packets)
    assert payload == g711.encode(pcm, payload_type)
    assert np.array_equal(
        g711.decode(payload, payload_type),
        g711.decode(g711.encode(pcm, payload_type), payload_type),
    )

    assert 0.4 < elapsed < 0.8
    assert playback.finished_at is not None
    assert 0.4 < playback.finished_at - playback.started_at < 0.8
    assert playback.packets_sent == 25
    assert playback.position_s == pytest.approx(0.5)
    assert playback.ssrc == packets[0].ssrc
    assert call.session.stats()["b"]["packets_out"] == 25
    assert not call.b_side.announcing


async def test_last_packet_is_filled_with_silence(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    pcm = tone(1000.0, 0.05)  # 400 samples: two packets and a half
    playback = play(call.b_side, pcm, g711.PAYLOAD_TYPE_PCMU, ssrc=0x1234ABCD)
    assert await asyncio.wait_for(playback.done, 2.0) is True
    packets = received(call.b)
    assert [p.ssrc for p in packets] == [0x1234ABCD] * 3
    assert packets[2].payload[:80] == g711.encode(pcm[320:], g711.PAYLOAD_TYPE_PCMU)
    assert packets[2].payload[80:] == bytes([g711.ULAW_SILENCE_BYTE]) * 80


async def test_other_party_is_held_back_during_the_notice_and_relayed_after(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    playback = play(call.b_side, tone(1000.0, 0.4), g711.PAYLOAD_TYPE_PCMU)

    call.a.send(call.a_port, rtp(1, ssrc=A_SSRC, payload=b"during-the-notice"))
    await wait_until(lambda: call.session.stats()["a"]["packets_in"] == 1)
    call.b.send(call.b_port, rtp(1, ssrc=0xB0B0B0B0, payload=b"b-to-a"))  # the other way runs
    assert (await call.a.recv())[0] == rtp(1, ssrc=0xB0B0B0B0, payload=b"b-to-a")

    assert await asyncio.wait_for(playback.done, 3.0) is True
    during = received(call.b)
    assert {p.ssrc for p in during} == {playback.ssrc}
    assert len(during) == 20

    call.a.send(call.a_port, rtp(2, ssrc=A_SSRC, payload=b"after-the-notice"))
    data, _ = await call.b.recv()
    assert data == rtp(2, ssrc=A_SSRC, payload=b"after-the-notice")


async def test_stop_ends_at_once_and_relaying_resumes(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    playback = play(call.b_side, tone(1000.0, 2.0), g711.PAYLOAD_TYPE_PCMU)
    await wait_until(lambda: playback.packets_sent >= 5)
    playback.stop()
    assert playback.done.done()
    assert playback.done.result() is False
    assert not call.b_side.announcing
    sent = playback.packets_sent
    assert 5 <= sent < 100
    assert playback.position_s == pytest.approx(sent * 0.02)

    call.a.send(call.a_port, rtp(1, ssrc=A_SSRC, payload=b"after-stop"))
    while True:
        data, _ = await call.b.recv()
        if RtpPacket.parse(data).ssrc == A_SSRC:
            break
    assert data == rtp(1, ssrc=A_SSRC, payload=b"after-stop")
    await asyncio.sleep(0.1)
    assert playback.packets_sent == sent  # nothing more after stop
    assert call.b.pending() == []


async def test_closed_session_ends_the_playback(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    playback = play(call.b_side, tone(1000.0, 2.0), g711.PAYLOAD_TYPE_PCMA)
    await wait_until(lambda: playback.packets_sent >= 2)
    await relay.close_session(call.session)
    assert await asyncio.wait_for(playback.done, 1.0) is False
    assert playback.packets_sent < 100


async def test_no_destination_keeps_the_clock_and_sends_nothing(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    session = await relay.create_session("no-remote")
    side = session.streams[0].b  # no SDP from B and no latch: nowhere to send
    loop = asyncio.get_running_loop()
    began = loop.time()
    playback = play(side, tone(1000.0, 0.2), g711.PAYLOAD_TYPE_PCMU)
    assert await asyncio.wait_for(playback.done, 2.0) is True
    assert loop.time() - began > 0.15
    assert playback.packets_sent == 0
    assert playback.position_s == pytest.approx(0.2)


async def test_destination_is_read_per_packet(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    moved = phones()
    playback = play(call.b_side, tone(1000.0, 0.6), g711.PAYLOAD_TYPE_PCMU)
    await wait_until(lambda: playback.packets_sent >= 3)
    call.session.set_remote("b", 0, "127.0.0.1", moved.port, None, False)  # re-INVITE moves B
    assert await asyncio.wait_for(playback.done, 3.0) is True
    before, after = received(call.b), received(moved)
    assert before and after
    assert len(before) + len(after) == 30
    assert_one_stream(before + after, g711.PAYLOAD_TYPE_PCMU)


async def test_late_loop_skips_ahead_instead_of_bursting(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    loop = asyncio.get_running_loop()
    pcm = tone(1000.0, 0.6)
    playback = play(call.b_side, pcm, g711.PAYLOAD_TYPE_PCMU)
    loop.call_later(0.1, time.sleep, 0.2)  # the loop stalls for ten packets
    assert await asyncio.wait_for(playback.done, 3.0) is True
    packets = received(call.b)
    assert playback.skips >= 1  # the stall; a loaded machine may add more
    assert len(packets) == 30  # no audio lost
    assert b"".join(p.payload for p in packets) == g711.encode(pcm, g711.PAYLOAD_TYPE_PCMU)
    steps = [
        (after.timestamp - before.timestamp) & 0xFFFFFFFF for before, after in pairwise(packets)
    ]
    jumps = [i for i, step in enumerate(steps) if step != 160]
    assert len(jumps) == playback.skips
    assert all(steps[i] > (MAX_LATE_PACKETS + 1) * 160 for i in jumps)
    assert max(steps) >= 8 * 160  # the 0.2 s stall shows in the timestamps
    markers = [i for i, p in enumerate(packets) if p.marker]
    assert markers == [0] + [i + 1 for i in jumps]  # each a new talkspurt (RFC 3551 4.1)
    for before, after in pairwise(packets):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF


async def test_new_playback_replaces_the_running_one(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    first = play(call.b_side, tone(1000.0, 2.0), g711.PAYLOAD_TYPE_PCMU)
    await wait_until(lambda: first.packets_sent >= 2)
    second = play(call.b_side, tone(1400.0, 0.2), g711.PAYLOAD_TYPE_PCMU)
    assert first.done.result() is False
    assert call.b_side.announcing  # the second one holds the stream now
    assert await asyncio.wait_for(second.done, 2.0) is True
    assert not call.b_side.announcing
    packets = received(call.b)
    assert {p.ssrc for p in packets} == {first.ssrc, second.ssrc}
    assert sum(p.ssrc == second.ssrc for p in packets) == 10


async def test_cancelling_done_stops_the_playback(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    playback: Playback = play(call.b_side, tone(1000.0, 2.0), g711.PAYLOAD_TYPE_PCMU)
    playback.done.cancel()
    await asyncio.sleep(0.05)
    assert not call.b_side.announcing
    assert playback.finished_at is not None
    assert playback.packets_sent == 1


@pytest.mark.parametrize(
    ("pcm", "payload_type", "ptime_ms", "message"),
    [
        (np.zeros(160, dtype=np.int16), 18, 20, "not G.711"),
        (np.zeros(160, dtype=np.float64), 0, 20, "int16"),
        (np.zeros((160, 2), dtype=np.int16), 0, 20, "1-D"),
        (np.zeros(0, dtype=np.int16), 0, 20, "at least one sample"),
        (np.zeros(160, dtype=np.int16), 0, 0, "ptime"),
    ],
)
async def test_refuses_what_it_cannot_play(
    relay: MediaRelay,
    phones: PhoneFactory,
    pcm: np.ndarray,
    payload_type: int,
    ptime_ms: int,
    message: str,
) -> None:
    call = await make_call(relay, phones)
    with pytest.raises(ValueError, match=message):
        play(call.b_side, pcm, payload_type, ptime_ms=ptime_ms)
    assert not call.b_side.announcing


async def test_other_ptime(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    playback = play(call.b_side, tone(1000.0, 0.3), g711.PAYLOAD_TYPE_PCMA, ptime_ms=30)
    assert await asyncio.wait_for(playback.done, 2.0) is True
    packets = received(call.b)
    assert len(packets) == 10
    assert all(len(p.payload) == 240 for p in packets)
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in pairwise(packets)}
    assert steps == {240}
