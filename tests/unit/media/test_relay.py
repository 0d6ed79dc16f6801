"""The anchored relay over real UDP sockets on loopback.

Each test is a call: a phone standing for the caller (side A), one for the
callee (side B), and the relay session between them. Negative checks
("nothing arrived") wait until the relay has accounted the packet, which
happens after its send, so the receiving socket's queue is final by then.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gateway.media.ports import PortPoolExhausted
from gateway.media.relay import MediaRelay, MediaSession
from gateway.media.session import MediaSide
from tests.unit.media.udp_phone import (
    Phone,
    free_even_range,
    ipv6_loopback_available,
    rtcp_rr,
    rtp,
    wait_until,
)

PhoneFactory = Callable[..., Phone]


@dataclass
class Call:
    session: MediaSession
    a: Phone
    b: Phone

    @property
    def a_port(self) -> int:
        """The relay's RTP port facing the caller (where the caller sends)."""
        return self.session.local_ports("a")[0][0]

    @property
    def b_port(self) -> int:
        return self.session.local_ports("b")[0][0]

    def stats(self, side: str) -> dict[str, int | float]:
        stats: dict[str, int | float] = self.session.stats()[side]
        return stats


async def make_call(
    relay: MediaRelay, phones: PhoneFactory, name: str = "call", host: str = "127.0.0.1"
) -> Call:
    session = await relay.create_session(name)
    a, b = phones(host), phones(host)
    session.set_remote("a", 0, host, a.port, None, False)
    session.set_remote("b", 0, host, b.port, None, False)
    return Call(session, a, b)


async def test_relays_both_ways_from_the_port_facing_each_party(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    call.a.send(call.a_port, rtp(1, payload=b"from-a"))
    data, source = await call.b.recv()
    assert data == rtp(1, payload=b"from-a")
    assert source[1] == call.b_port  # symmetric RTP: sent from the port B sends to (RFC 4961)

    call.b.send(call.b_port, rtp(7, payload=b"from-b"))
    data, source = await call.a.recv()
    assert data == rtp(7, payload=b"from-b")
    assert source[1] == call.a_port

    assert call.stats("a")["packets_in"] == 1
    assert call.stats("a")["packets_out"] == 1
    assert call.stats("b")["packets_in"] == 1
    assert call.stats("b")["bytes_out"] == len(rtp(1, payload=b"from-a"))


async def test_nat_source_differing_from_sdp_is_latched(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    session = await relay.create_session("nat")
    a_sdp, a_nat = phones(), phones()  # the SDP names one port, packets come from another
    b = phones()
    session.set_remote("a", 0, "127.0.0.1", a_sdp.port, None, False)
    session.set_remote("b", 0, "127.0.0.1", b.port, None, False)
    call = Call(session, a_nat, b)

    # before A latches, B's media goes to the SDP address
    b.send(call.b_port, rtp(1))
    assert (await a_sdp.recv())[0] == rtp(1)

    a_nat.send(call.a_port, rtp(1))
    await b.recv()
    assert session.streams[0].a.latched_rtp == ("127.0.0.1", a_nat.port)

    b.send(call.b_port, rtp(2))
    assert (await a_nat.recv())[0] == rtp(2)
    assert a_sdp.pending() == []


async def test_foreign_source_is_dropped_and_counted(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    intruder = phones()
    call.a.send(call.a_port, rtp(1))
    await call.b.recv()

    intruder.send(call.a_port, rtp(2, payload=b"intruder"))
    await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
    call.a.send(call.a_port, rtp(3))
    assert (await call.b.recv())[0] == rtp(3)
    assert call.b.pending() == []
    assert call.stats("a")["packets_in"] == 2


async def test_new_sdp_address_resets_the_latch(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    call.a.send(call.a_port, rtp(1))
    await call.b.recv()

    moved = phones()  # re-INVITE: the caller now receives (and sends) elsewhere
    call.session.set_remote("a", 0, "127.0.0.1", moved.port, None, False)
    assert call.session.streams[0].a.latched_rtp is None
    moved.send(call.a_port, rtp(2))
    assert (await call.b.recv())[0] == rtp(2)
    call.b.send(call.b_port, rtp(9))
    assert (await moved.recv())[0] == rtp(9)

    call.a.send(call.a_port, rtp(3))  # the old source is foreign now
    await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
    assert call.b.pending() == []


async def test_unchanged_sdp_keeps_the_latch(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    nat = phones()
    nat.send(call.a_port, rtp(1))
    await call.b.recv()
    call.session.set_remote("a", 0, "127.0.0.1", call.a.port, None, False)  # session refresh
    assert call.session.streams[0].a.latched_rtp == ("127.0.0.1", nat.port)


async def test_rtcp_on_its_own_ports(relay: MediaRelay, phones: PhoneFactory) -> None:
    session = await relay.create_session("rtcp")
    a_rtp, a_rtcp, b_rtp, b_rtcp = phones(), phones(), phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a_rtp.port, a_rtcp.port, False)
    session.set_remote("b", 0, "127.0.0.1", b_rtp.port, b_rtcp.port, False)
    ((a_port, a_rtcp_port),) = session.local_ports("a")
    ((b_port, b_rtcp_port),) = session.local_ports("b")
    assert (a_rtcp_port, b_rtcp_port) == (a_port + 1, b_port + 1)

    a_rtcp.send(a_rtcp_port, rtcp_rr(1))
    data, source = await b_rtcp.recv()
    assert data == rtcp_rr(1)
    assert source[1] == b_rtcp_port
    b_rtcp.send(b_rtcp_port, rtcp_rr(2))
    data, source = await a_rtcp.recv()
    assert (data, source[1]) == (rtcp_rr(2), a_rtcp_port)
    assert b_rtp.pending() == [] and a_rtp.pending() == []
    assert session.stats()["a"]["packets_in"] == 0  # RTCP is not counted as RTP


async def test_rtcp_mux_on_one_side(relay: MediaRelay, phones: PhoneFactory) -> None:
    session = await relay.create_session("mux")
    a, b_rtp, b_rtcp = phones(), phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, True)  # a=rtcp-mux (RFC 5761)
    session.set_remote("b", 0, "127.0.0.1", b_rtp.port, b_rtcp.port, False)
    ((a_port, a_rtcp_port),) = session.local_ports("a")
    ((b_port, b_rtcp_port),) = session.local_ports("b")
    assert a_rtcp_port is None
    assert b_rtcp_port == b_port + 1

    a.send(a_port, rtcp_rr(1))  # RTCP on the RTP port
    data, source = await b_rtcp.recv()
    assert (data, source[1]) == (rtcp_rr(1), b_rtcp_port)
    a.send(a_port, rtp(1))
    data, source = await b_rtp.recv()
    assert (data, source[1]) == (rtp(1), b_port)

    b_rtcp.send(b_rtcp_port, rtcp_rr(2))  # reaches A on its one port, from our RTP port
    data, source = await a.recv()
    assert (data, source[1]) == (rtcp_rr(2), a_port)
    assert session.stats()["a"]["packets_in"] == 1


async def test_rtcp_mux_on_both_sides(relay: MediaRelay, phones: PhoneFactory) -> None:
    session = await relay.create_session("mux2")
    a, b = phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, True)
    session.set_remote("b", 0, "127.0.0.1", b.port, None, True)
    a_port = session.local_ports("a")[0][0]
    b_port = session.local_ports("b")[0][0]
    a.send(a_port, rtcp_rr(5))
    assert (await b.recv())[0] == rtcp_rr(5)
    b.send(b_port, rtcp_rr(6))
    assert (await a.recv())[0] == rtcp_rr(6)


async def test_rejected_stream_drops_traffic(relay: MediaRelay, phones: PhoneFactory) -> None:
    session = await relay.create_session("rejected", streams=2)
    a, b, a_video, b_video = phones(), phones(), phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, False)
    session.set_remote("b", 0, "127.0.0.1", b.port, None, False)
    session.set_remote("a", 1, "127.0.0.1", a_video.port, None, False)
    session.set_remote("b", 1, "127.0.0.1", 0, None, False)  # B rejects the second m= line
    (_, _), (a_video_port, _) = session.local_ports("a")
    (_, _), (b_video_port, _) = session.local_ports("b")
    a_port = session.local_ports("a")[0][0]

    a_video.send(a_video_port, rtp(1))
    await wait_until(lambda: session.streams[1].a.stats.packets_in == 1)
    assert b_video.pending() == []
    b_video.send(b_video_port, rtp(1))  # a stray sender on the rejected side
    a.send(a_port, rtp(1))  # stream 0 still works
    assert (await b.recv())[0] == rtp(1)
    await asyncio.sleep(0.05)  # grace for a wrongly relayed packet to show up
    assert a_video.pending() == []
    assert session.streams[1].b.stats.packets_in == 0
    assert session.streams[1].b.latched_rtp is None


async def test_hold_stops_sending_toward_the_held_side(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    call.session.set_remote("b", 0, "0.0.0.0", call.b.port, None, False)  # RFC 3264 8.4 hold
    call.a.send(call.a_port, rtp(1))
    await wait_until(lambda: call.stats("a")["packets_in"] == 1)
    assert call.b.pending() == []
    assert call.stats("b")["packets_out"] == 0

    call.b.send(call.b_port, rtp(1))  # the held side may still send, and latches
    assert (await call.a.recv())[0] == rtp(1)
    assert call.session.streams[0].b.latched_rtp == ("127.0.0.1", call.b.port)

    call.session.set_remote("b", 0, "127.0.0.1", call.b.port, None, False)  # resume
    call.a.send(call.a_port, rtp(2))
    assert (await call.b.recv())[0] == rtp(2)


async def test_two_concurrent_calls_never_exchange_packets(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    first = await make_call(relay, phones, "first")
    second = await make_call(relay, phones, "second")
    for n in range(20):
        first.a.send(first.a_port, rtp(n, payload=b"first-a"))
        second.a.send(second.a_port, rtp(n, payload=b"second-a"))
        first.b.send(first.b_port, rtp(n, payload=b"first-b"))
        second.b.send(second.b_port, rtp(n, payload=b"second-b"))
    await wait_until(lambda: first.stats("a")["packets_in"] == 20)
    await wait_until(lambda: second.stats("b")["packets_in"] == 20)
    await wait_until(lambda: first.stats("b")["packets_in"] == 20)
    await wait_until(lambda: second.stats("a")["packets_in"] == 20)

    received = {
        "first.a": first.a.pending(),
        "first.b": first.b.pending(),
        "second.a": second.a.pending(),
        "second.b": second.b.pending(),
    }
    expected_payload = {
        "first.a": b"first-b",
        "first.b": b"first-a",
        "second.a": b"second-b",
        "second.b": b"second-a",
    }
    for phone, packets in received.items():
        assert len(packets) == 20, phone
        assert {data[12:] for data, _ in packets} == {expected_payload[phone]}, phone

    # a packet aimed at the other call's port is that call's foreign packet, never relayed
    first.a.send(second.a_port, rtp(99, payload=b"first-a"))
    await wait_until(lambda: second.stats("a")["dropped_foreign"] == 1)
    assert second.b.pending() == [] and first.b.pending() == []


async def test_stats_report_loss_from_a_sequence_gap(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    for seq in [100, 101, 102, 106, 107]:
        call.a.send(call.a_port, rtp(seq))
    await wait_until(lambda: call.stats("a")["packets_in"] == 5)
    stats = call.stats("a")
    assert stats["lost"] == 3
    assert stats["bytes_in"] == 5 * 172
    assert set(stats) == {
        "packets_in",
        "bytes_in",
        "packets_out",
        "bytes_out",
        "lost",
        "jitter_ms",
        "dropped_foreign",
    }


async def test_stats_of_a_multi_stream_session(relay: MediaRelay, phones: PhoneFactory) -> None:
    session = await relay.create_session("two", streams=2)
    a, b = phones(), phones()
    session.set_remote("a", 1, "127.0.0.1", a.port, None, False)
    session.set_remote("b", 1, "127.0.0.1", b.port, None, False)
    a.send(session.local_ports("a")[1][0], rtp(1))
    await b.recv()
    stats = session.stats()
    assert stats["a"]["packets_in"] == 0  # "a"/"b" are stream 0
    assert stats["streams"][1]["a"]["packets_in"] == 1
    assert stats["streams"][1]["b"]["packets_out"] == 1


async def test_tap_sees_rtp_from_its_side_only(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)
    tapped: list[bytes] = []
    call.session.set_tap("a", lambda packet, arrival: tapped.append(packet))
    call.a.send(call.a_port, rtp(1, payload=b"caller"))
    call.b.send(call.b_port, rtp(1, payload=b"callee"))
    call.a.send(call.a_port, rtcp_rr())
    await call.b.recv()
    await call.a.recv()
    await wait_until(lambda: call.stats("b")["packets_in"] == 1)
    assert tapped == [rtp(1, payload=b"caller")]

    call.session.set_tap("a", None)
    call.a.send(call.a_port, rtp(2))
    await call.b.recv()
    assert tapped == [rtp(1, payload=b"caller")]


async def test_failing_tap_does_not_stop_the_relay(relay: MediaRelay, phones: PhoneFactory) -> None:
    call = await make_call(relay, phones)

    def broken(packet: bytes, arrival: float) -> None:
        raise RuntimeError("capture sink is gone")

    call.session.set_tap("a", broken)
    for seq in range(3):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    assert call.stats("a")["packets_in"] == 3


async def test_malformed_datagrams_do_not_break_the_socket(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    call.a.send(call.a_port, b"\x80")  # one byte
    call.a.send(call.a_port, b"\x80\x00\x00\x01\x00")  # RTP-looking, shorter than a header
    call.a.send(call.a_port, b"\x00\x01\x00\x00" + bytes(16))  # STUN-looking: relayed as is
    call.a.send(call.a_port, rtp(1))
    packets = [(await call.b.recv())[0] for _ in range(3)]
    assert packets[0] == b"\x80\x00\x00\x01\x00"
    assert packets[1] == b"\x00\x01\x00\x00" + bytes(16)
    assert packets[2] == rtp(1)
    assert call.stats("a")["packets_in"] == 1


async def test_set_remote_refuses_what_it_cannot_send_to(relay: MediaRelay) -> None:
    session = await relay.create_session("bad")
    with pytest.raises(ValueError, match="IP literal"):
        session.set_remote("a", 0, "pbx.example.com", 4000, None, False)
    with pytest.raises(ValueError, match="IPv6"):
        session.set_remote("a", 0, "2001:db8::1", 4000, None, False)
    with pytest.raises(ValueError, match="port"):
        session.set_remote("a", 0, "192.0.2.1", 70000, None, False)
    with pytest.raises(ValueError, match="side"):
        session.set_remote("c", 0, "192.0.2.1", 4000, None, False)
    with pytest.raises(IndexError, match="no stream 1"):
        session.set_remote("a", 1, "192.0.2.1", 4000, None, False)


async def test_duplicate_session_id_is_refused(relay: MediaRelay) -> None:
    await relay.create_session("same")
    with pytest.raises(ValueError, match="already exists"):
        await relay.create_session("same")
    assert relay.sessions == 1


async def test_close_session_releases_ports_and_is_idempotent(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    capacity = relay.pool.available
    call = await make_call(relay, phones)
    ports = [port for side in ("a", "b") for port in call.session.local_ports(side)[0]]
    assert relay.pool.available == capacity - 2
    assert relay.sessions == 1

    await relay.close_session(call.session)
    await relay.close_session(call.session)
    assert relay.sessions == 0
    assert relay.pool.available == capacity
    for port in ports:  # the sockets are really gone
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))


async def test_a_closed_session_is_freed_without_the_cyclic_collector(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Ended calls must not leave reference cycles (sockets, transports, receivers,
    statistics) for the cyclic collector: its passes over them stall the event loop."""
    session_id = f"freed-{uuid.uuid4()}"  # no other test's leftovers share it
    call = await make_call(relay, phones, session_id)
    call.a.send(call.a_port, rtp(1))  # latched, relayed: routes set both ways
    await wait_until(lambda latched=call: latched.stats("a")["packets_in"] == 1)
    session = call.session
    # found among the collector's objects, not by weak references: the compiled build's
    # MediaSide takes none
    assert len(_sides_of(session_id)) == 2
    gc.collect()  # what earlier code left for the collector is not this test's to count
    gc.disable()
    try:
        await relay.close_session(session)
        del call, session
        assert _sides_of(session_id) == []
    finally:
        gc.enable()


def _sides_of(session_id: str) -> list[MediaSide]:
    """The MediaSide objects of a session that are still alive (freed or not yet collected)."""
    return [
        item
        for item in gc.get_objects()
        if isinstance(item, MediaSide) and item.session_id == session_id
    ]


async def test_exhaustion_raises_and_leaks_no_ports(phones: PhoneFactory) -> None:
    base = free_even_range(3)
    relay = MediaRelay("127.0.0.1", base, base + 5)  # three pairs: one stream needs two
    try:
        session = await relay.create_session("one")
        with pytest.raises(PortPoolExhausted):
            await relay.create_session("two")
        assert relay.pool.available == 1
        assert relay.sessions == 1
        await relay.close_session(session)
        assert relay.pool.available == 3
    finally:
        await relay.close()


async def test_relay_close_closes_every_session(relay: MediaRelay, phones: PhoneFactory) -> None:
    capacity = relay.pool.available
    await make_call(relay, phones, "one")
    await make_call(relay, phones, "two")
    await relay.close()
    assert relay.sessions == 0
    assert relay.pool.available == capacity


async def test_ipv6_call(phones: PhoneFactory) -> None:
    if not ipv6_loopback_available():
        pytest.skip("the kernel has no IPv6 loopback")
    relay = MediaRelay("::1", 24400, 24499)
    try:
        call = await make_call(relay, phones, host="::1")
        call.a.send(call.a_port, rtp(1))
        data, source = await call.b.recv()
        assert data == rtp(1)
        assert source[:2] == ("::1", call.b_port)
        call.b.send(call.b_port, rtp(2))
        assert (await call.a.recv())[0] == rtp(2)
        assert call.session.streams[0].a.latched_rtp[:2] == ("::1", call.a.port)
    finally:
        await relay.close()


async def test_concurrent_creates_of_one_session_id_bind_it_once(relay: MediaRelay) -> None:
    capacity = relay.pool.available
    results = await asyncio.gather(
        relay.create_session("twice"), relay.create_session("twice"), return_exceptions=True
    )
    assert sum(isinstance(r, MediaSession) for r in results) == 1
    assert sum(isinstance(r, ValueError) for r in results) == 1
    assert relay.sessions == 1
    assert relay.pool.available == capacity - 2


class _NoReaderLoop(asyncio.SelectorEventLoop):
    """An event loop without readers, as Windows' proactor loop."""

    def add_reader(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError


def test_a_loop_without_readers_relays_through_datagram_transports() -> None:
    async def call_through() -> None:
        relay = MediaRelay("127.0.0.1", 24400, 24499, flow_sockets=False, fastpath=False)
        a, b = Phone(), Phone()
        try:
            session = await relay.create_session("no-readers")
            session.set_remote("a", 0, "127.0.0.1", a.port, None, False)
            session.set_remote("b", 0, "127.0.0.1", b.port, None, False)
            call = Call(session, a, b)
            call.a.send(call.a_port, rtp(1, payload=b"from-a"))
            assert (await call.b.recv())[0] == rtp(1, payload=b"from-a")
            assert all(side.rtp.transport is not None for side in call.session.sides())
            await relay.close_session(call.session)
            assert relay.pool.in_use == 0
        finally:
            a.close()
            b.close()
            await relay.close()

    loop = _NoReaderLoop()
    try:
        loop.run_until_complete(call_through())
    finally:
        loop.close()


async def test_a_datagram_that_ends_the_call_ends_the_reading(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    """A tap that closes the session while its socket is being read: the rest of the
    queue is not read, the sockets close, the ports come back."""
    call = await make_call(relay, phones)
    closing: list[asyncio.Task[None]] = []
    heard: list[bytes] = []

    def hang_up(packet: bytes, _: float) -> None:
        heard.append(packet)
        if not closing:
            closing.append(asyncio.ensure_future(relay.close_session(call.session)))

    call.session.set_tap("a", hang_up)
    for seq in range(5):
        call.a.send(call.a_port, rtp(seq))
    await wait_until(lambda: bool(closing) and closing[0].done())
    closing[0].result()
    assert relay.pool.in_use == 0
    assert all(side.rtp_sock.fileno() == -1 for side in call.session.sides())
    assert all(side.rtp.loop is None for side in call.session.sides())


async def test_a_socket_closed_before_the_teardown_still_lets_the_others_close(
    relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(relay, phones)
    sides = list(call.session.sides())
    sides[0].rtp_sock.close()
    await relay.close_session(call.session)
    assert all(side.rtp_sock.fileno() == -1 for side in sides)
    assert all(side.rtcp_sock.fileno() == -1 for side in sides)
    assert relay.pool.in_use == 0
