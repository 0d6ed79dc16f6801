"""The native forwarder (gateway/media/_fastpath.c): lanes over real UDP sockets on loopback.

The relay tests in ``test_relay.py`` and ``test_flow_sockets.py`` also run
with the forwarder on (their ``fast-path`` parameter), though a lane takes
over only after a party's flow socket has had its first read (a second
packet), so those exchanging a packet or two stay in Python. These look at
what only the forwarder does: that latched flows become lanes, that lanes relay
while the event loop is stopped (so they really run outside it), that a tap,
hold, a clock change or a close takes a lane back with its counts exact, and
that its statistics kernel computes what :meth:`StreamStats.update` computes,
bit for bit. Where both paths must behave the same, a test runs on both
(``fast-path`` and ``python``) with the same expectations.
"""

from __future__ import annotations

import asyncio
import math
import select
import socket
import struct
import sys
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.media import fastpath
from gateway.media.relay import MediaRelay
from gateway.media.stats import STATE_FIELDS, StreamStats
from tests.unit.media.conftest import (
    TEST_PORT_MAX,
    TEST_PORT_MIN,
    require_native_forwarder,
    require_path,
)
from tests.unit.media.test_relay import Call, PhoneFactory, make_call
from tests.unit.media.udp_phone import rtcp_rr, rtp, wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forwarder is Linux's")


@pytest.fixture(params=["kernel", "native"])
async def native_relay(request: pytest.FixtureRequest) -> AsyncIterator[MediaRelay]:
    """A relay whose latched flows become lanes: of the kernel forwarder, or of the
    native forwarder."""
    require_path("kernel" if request.param == "kernel" else "fast-path")
    media_relay = MediaRelay(
        "127.0.0.1",
        TEST_PORT_MIN,
        TEST_PORT_MAX,
        kernel_forwarding="on" if request.param == "kernel" else "off",
        kernel_interfaces=("lo",),
    )
    assert media_relay.fastpath is not None
    yield media_relay
    await media_relay.close()


def lane_totals(relay: MediaRelay) -> tuple[int, int]:
    """(lanes now, RTP packets the lanes sent) of the forwarder that serves the relay."""
    return relay.kernel_totals() if relay.kernel is not None else relay.native_totals()


def lanes(relay: MediaRelay) -> int:
    return relay.fastpath.lanes if relay.fastpath is not None else 0


async def settle(call: Call, relay: MediaRelay) -> None:
    """Two packets each way: the first latches and opens the flow socket, the second is
    the flow's first read, after which the forwarder (when there is one) takes it."""
    for seq in (1, 2):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
        call.b.send(call.b_port, rtp(seq))
        assert (await call.a.recv())[0] == rtp(seq)
    if relay.fastpath is not None:
        receivers = [side.rtp for side in call.session.streams[0].sides()]
        await wait_until(lambda: all(receiver.lane is not None for receiver in receivers))
        if relay.kernel is not None:  # the kernel took them, not the native forwarder behind
            assert all(relay.kernel.in_kernel(receiver.lane) for receiver in receivers)  # type: ignore[arg-type]


async def settled_calls(relay: MediaRelay, phones: PhoneFactory, count: int) -> list[Call]:
    """``count`` calls, each settled (see :func:`settle`)."""
    calls = [await make_call(relay, phones, name=f"call-{n}") for n in range(count)]
    for call in calls:
        await settle(call, relay)
    return calls


def assert_counted_once(call: Call, packets: int) -> None:
    """Every packet A sent counted once as received and once as sent to B, none lost."""
    stats = call.stats("a")
    assert (stats["packets_in"], stats["lost"]) == (packets, 0)
    assert call.stats("b")["packets_out"] == packets


def recv_blocking(sock: socket.socket, timeout: float = 2.0) -> bytes:
    """Wait for a datagram without yielding to the event loop."""
    readable, _, _ = select.select([sock], [], [], timeout)
    if not readable:
        raise TimeoutError("nothing arrived while the loop was stopped")
    data: bytes = sock.recv(4096)
    return data


# ------------------------------------------------------------------ lanes over real sockets


async def test_latched_flows_become_lanes_that_relay_and_count_both_ways(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    a_side, b_side = call.session.streams[0].sides()
    assert a_side.rtp.lane is not None and b_side.rtp.lane is not None
    for seq in range(3, 53):
        call.a.send(call.a_port, rtp(seq))
        data, source = await call.b.recv()
        assert data == rtp(seq) and source[1] == call.b_port  # symmetric RTP
        call.b.send(call.b_port, rtp(seq, ssrc=0x99))
        data, source = await call.a.recv()
        assert data == rtp(seq, ssrc=0x99) and source[1] == call.a_port
    a, b = call.stats("a"), call.stats("b")
    assert (a["packets_in"], a["packets_out"], b["packets_in"], b["packets_out"]) == (52,) * 4
    assert a["bytes_in"] == b["bytes_out"] == 52 * len(rtp(1))
    assert a["lost"] == 0 and b["lost"] == 0
    totals = native_relay.packet_totals()
    assert (totals["packets_in"], totals["packets_out"]) == (104, 104)
    lanes_now, relayed = lane_totals(native_relay)
    assert lanes_now == 2
    assert relayed == 100  # packets 3-52 both ways; 1 and 2 went through Python


async def test_lanes_relay_while_the_event_loop_is_stopped(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """The forwarder's thread relays without the loop: with the loop held in a blocking
    wait, a packet still crosses. On the Python path the same wait times out, which is
    what shows that the check can fail."""
    call = await make_call(flow_relay, phones)
    await settle(call, flow_relay)
    call.a.send(call.a_port, rtp(3, payload=b"while-stopped"))
    if flow_relay.fastpath is not None:
        assert recv_blocking(call.b.sock) == rtp(3, payload=b"while-stopped")
    else:
        with pytest.raises(TimeoutError):
            recv_blocking(call.b.sock, timeout=0.3)
        assert (await call.b.recv())[0] == rtp(3, payload=b"while-stopped")


async def test_a_tap_takes_the_lane_back_and_its_removal_hands_it_over_again(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    a_side = call.session.streams[0].a
    heard: list[bytes] = []
    call.session.set_tap("a", lambda packet, arrival: heard.append(packet))
    assert a_side.rtp.lane is None and lanes(native_relay) == 1  # B's lane stays
    for seq in range(3, 8):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    assert heard == [rtp(seq) for seq in range(3, 8)]
    call.session.set_tap("a", None)
    assert a_side.rtp.lane is not None and lanes(native_relay) == 2
    for seq in range(8, 12):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    assert len(heard) == 5  # the lane relays untapped
    assert_counted_once(call, 11)  # across three handovers


async def test_rtcp_mux_other_protocols_and_short_packets_as_the_python_path_does(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """RTCP on A's RTP port (A multiplexes, RFC 5761 4) goes by B's RTCP route, to the
    port B's a=rtcp names, uncounted; a packet that is not RTP (RFC 7983: STUN here) is
    relayed uncounted; an RTP packet shorter than its fixed header is relayed and counted
    as sent, not as received."""
    session = await flow_relay.create_session("mux")
    a, b, b_rtcp = phones(), phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, True)
    session.set_remote("b", 0, "127.0.0.1", b.port, b_rtcp.port, False)
    call = Call(session, a, b)
    await settle(call, flow_relay)
    a.send(call.a_port, rtcp_rr())
    data, source = await b_rtcp.recv()
    assert data == rtcp_rr() and source[1] == session.local_ports("b")[0][1]
    stun = bytes([0x00, 0x01, 0x00, 0x00]) + bytes(16)
    short = bytes([0x80, 0x00, 0x00, 0x09])
    for packet in (stun, short, rtp(3)):
        a.send(call.a_port, packet)
        data, source = await b.recv()
        assert data == packet and source[1] == call.b_port
    assert b.pending() == [] and b_rtcp.pending() == []
    stats_a, stats_b = call.stats("a"), call.stats("b")
    assert stats_a["packets_in"] == 3  # 1, 2 and 3: not the RTCP, STUN or short one
    assert stats_b["packets_out"] == 4  # 1, 2, the short one and 3
    assert stats_b["bytes_out"] == 3 * len(rtp(1)) + len(short)


async def test_hold_stops_what_goes_to_the_held_party_and_counts_what_it_sends(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Hold by a 0.0.0.0 address (RFC 3264 8.4): B's new address also un-latches B and
    closes its flow, so A's lane is re-routed (to no route) before that socket closes."""
    call = await make_call(flow_relay, phones)
    await settle(call, flow_relay)
    call.session.set_remote("b", 0, "0.0.0.0", call.b.port, None, False)  # B holds
    call.a.send(call.a_port, rtp(3))
    call.b.send(call.b_port, rtp(3))
    assert (await call.a.recv())[0] == rtp(3)  # B still sends to A
    await wait_until(lambda: call.stats("a")["packets_in"] == 3)
    assert call.b.pending() == []
    assert call.stats("b")["packets_out"] == 2  # nothing sent to B on hold
    assert call.session.streams[0].a.rtp.send_errors == 0


async def test_a_clock_change_carries_the_jitter_over_rescaled(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    for seq in range(3, 10):
        call.a.send(call.a_port, rtp(seq, timestamp=seq * 200))  # jittery timestamps
        await call.b.recv()
    side_a = call.session.streams[0].a
    before = side_a.stats.jitter
    assert before > 0
    call.session.set_clock_rate(0, 16000)
    assert side_a.rtp.lane is not None  # handed over again after the change
    assert side_a.stats.jitter == pytest.approx(before * 2)


async def test_closing_takes_every_lane_back_and_the_totals_stay_exact(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    calls = await settled_calls(native_relay, phones, 6)
    await wait_until(lambda: lanes(native_relay) == 12)
    for call in calls:
        for seq in range(3, 8):
            call.a.send(call.a_port, rtp(seq))
            await call.b.recv()
    totals = native_relay.packet_totals()
    assert (totals["packets_in"], totals["packets_out"]) == (6 * 9, 6 * 9)
    for call in calls[:3]:
        await native_relay.close_session(call.session)
    assert lanes(native_relay) == 6
    assert native_relay.packet_totals() == totals
    for call in calls[3:]:
        call.a.send(call.a_port, rtp(8))
        await call.b.recv()
    after = native_relay.packet_totals()
    assert after["packets_in"] == totals["packets_in"] + 3
    await native_relay.close()
    assert native_relay.fastpath is not None and native_relay.fastpath.closed


async def test_no_packet_of_one_call_reaches_another(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    calls = await settled_calls(native_relay, phones, 20)
    for index, call in enumerate(calls):
        for seq in range(3, 6):
            call.a.send(call.a_port, rtp(seq, payload=f"a{index}".encode()))
            call.b.send(call.b_port, rtp(seq, payload=f"b{index}".encode()))
    for index, call in enumerate(calls):
        got_b = [(await call.b.recv())[0] for _ in range(3)]
        got_a = [(await call.a.recv())[0] for _ in range(3)]
        assert got_b == [rtp(seq, payload=f"a{index}".encode()) for seq in range(3, 6)]
        assert got_a == [rtp(seq, payload=f"b{index}".encode()) for seq in range(3, 6)]
    await wait_until(lambda: all(c.stats("a")["packets_in"] == 5 for c in calls))
    assert all(call.a.pending() == [] and call.b.pending() == [] for call in calls)


async def test_a_foreign_source_is_still_dropped_and_counted_beside_a_lane(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    intruder = phones()
    intruder.send(call.a_port, rtp(40, payload=b"intruder"))
    await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
    call.a.send(call.a_port, rtp(3))
    assert (await call.b.recv())[0] == rtp(3)
    assert call.b.pending() == []


async def test_the_idle_check_sees_the_lanes_arrivals(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    before = call.session.last_activity
    call.a.send(call.a_port, rtp(3))
    await call.b.recv()
    after = call.session.last_activity
    assert after > before
    assert after == call.session.streams[0].a.stats.last_packet_at


async def test_a_packet_the_loop_reads_beside_a_lane_is_counted_once(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """A datagram of the latched party that reached the first socket (queued there before
    the flow took over) is relayed in Python between a take-back and a new hand-over."""
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    receiver = call.session.streams[0].a.rtp
    assert receiver.lane is not None and receiver.source is not None
    receiver.datagram_received(rtp(3), receiver.source)
    assert (await call.b.recv())[0] == rtp(3)
    assert receiver.lane is not None  # handed over again
    call.a.send(call.a_port, rtp(4))
    assert (await call.b.recv())[0] == rtp(4)
    assert_counted_once(call, 4)


async def test_a_lane_after_its_engine_closed_is_let_go_quietly(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(native_relay, phones)
    await settle(call, native_relay)
    assert native_relay.fastpath is not None
    native_relay.fastpath.close()
    receiver = call.session.streams[0].a.rtp
    receiver.sync()  # the engine let go of the lane: nothing to take
    receiver.take_lane_back()
    assert receiver.lane is None
    assert call.stats("a")["packets_in"] == 2  # what was taken before stays


def _connected_pair() -> tuple[socket.socket, socket.socket]:
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (first, second):
        sock.bind(("127.0.0.1", 0))
    first.connect(second.getsockname())
    second.connect(first.getsockname())
    return first, second


def test_a_socket_closed_under_a_lane_never_lets_it_touch_what_reuses_the_number() -> None:
    """The lane works on its own duplicates of the descriptors: a descriptor number
    Python closes and the kernel hands to a new socket is not the lane's. A lane that
    kept the bare numbers sent this RTP into the TCP connection that took its route's
    number, and its detach removed another lane's registration."""
    require_native_forwarder()
    engine = fastpath.new_engine()
    state = StreamStats().export_state()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    opened = [sink, server]
    try:
        # a send route closed, its number reused by a TCP connection
        lane_in, party = _connected_pair()
        route = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened += [lane_in, party]
        engine.attach(
            lane_in.fileno(), socket.AF_INET, route.fileno(), sink.getsockname(), -1, None, state
        )
        number = route.fileno()
        route.close()
        client = socket.socket()
        opened.append(client)
        assert client.fileno() == number
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        opened.append(accepted)
        party.send(rtp(1, payload=b"RTP-IN-TCP"))
        assert recv_blocking(sink) == rtp(1, payload=b"RTP-IN-TCP")  # by the lane's copy
        accepted.settimeout(0.2)
        with pytest.raises(TimeoutError):
            accepted.recv(100)

        # an input closed, its number reused by the next lane's input
        stale_in, _stale_party = _connected_pair()
        opened.append(_stale_party)
        stale = engine.attach(stale_in.fileno(), socket.AF_INET, -1, None, -1, None, state)
        number = stale_in.fileno()
        stale_in.close()
        next_in, next_party = _connected_pair()
        opened += [next_in, next_party]
        assert number in (next_in.fileno(), next_party.fileno())
        if next_in.fileno() != number:  # the pair's other end took it: swap roles
            next_in, next_party = next_party, next_in
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(out)
        live = engine.attach(
            next_in.fileno(), socket.AF_INET, out.fileno(), sink.getsockname(), -1, None, state
        )
        engine.detach(stale)
        next_party.send(rtp(2))
        assert recv_blocking(sink) == rtp(2)  # the live lane still relays
        assert engine.poll(live)[1] == 1
    finally:
        engine.close()
        for sock in opened:
            sock.close()


# ------------------------------------------------------------------ the statistics kernel


def _packet(seq: int, timestamp: int, ssrc: int, payload: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + bytes(
        payload
    )


_steps = st.lists(
    st.tuples(
        st.one_of(  # sequence steps: in order, lost, reordered, restarts and wraps
            st.just(1),
            st.integers(-200, 200),
            st.integers(2900, 3100),
            st.integers(60000, 65535),
        ),
        st.integers(-20000, 20000),  # timestamp step around 160
        st.sampled_from([0x1234, 0x1234, 0x1234, 0x5678, 0xFFFFFFFF]),
        st.floats(0.0, 0.2, allow_nan=False),  # arrival step, seconds
        st.integers(0, 200),  # payload octets
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=_steps,
    start=st.floats(0.0, 1e6, allow_nan=False),
    clock_rate=st.sampled_from([8000, 16000, 48000, 90000]),
)
def test_the_lanes_statistics_equal_stream_stats_bit_for_bit(
    steps: list[tuple[int, int, int, float, int]], start: float, clock_rate: int
) -> None:
    require_native_forwarder()
    from gateway.media import _fastpath

    stats = StreamStats(clock_rate)
    state = stats.export_state()
    seq, timestamp, arrival = 1000, 5000, start
    for seq_step, ts_step, ssrc, arrival_step, payload in steps:
        seq, timestamp, arrival = seq + seq_step, timestamp + ts_step, arrival + arrival_step
        packet = _packet(seq, timestamp, ssrc, payload)
        stats.update(packet, arrival)
        state = _fastpath.update_state(state, packet, arrival)
        assert state == stats.export_state()
    mirrored = StreamStats(clock_rate)
    mirrored.import_state(state)
    assert (mirrored.expected, mirrored.received, mirrored.lost) == (
        stats.expected,
        stats.received,
        stats.lost,
    )
    assert mirrored.jitter == stats.jitter


def test_a_state_round_trips_and_no_packet_yet_is_nan_there() -> None:
    stats = StreamStats()
    state = stats.export_state()
    assert len(state) == len(STATE_FIELDS)
    assert math.isnan(state[STATE_FIELDS.index("last_packet_at")])
    copy = StreamStats()
    copy.import_state(state)
    assert copy.last_packet_at is None
    with pytest.raises(ValueError, match="fields"):
        copy.import_state(state[:-1])


def test_the_kernel_refuses_a_packet_shorter_than_the_fixed_header() -> None:
    require_native_forwarder()
    from gateway.media import _fastpath

    with pytest.raises(ValueError, match="12 octets"):
        _fastpath.update_state(StreamStats().export_state(), b"\x80\x00\x00", 1.0)


def test_the_forwarders_clock_is_time_monotonic() -> None:
    require_native_forwarder()
    import time

    from gateway.media import _fastpath

    before = time.monotonic()
    stamp = _fastpath.monotonic()
    assert before <= stamp <= time.monotonic()


def test_a_closed_engine_takes_no_lane() -> None:
    require_native_forwarder()
    engine = fastpath.new_engine()
    engine.close()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(RuntimeError, match="closed"),
    ):
        engine.attach(
            sock.fileno(), socket.AF_INET, -1, None, -1, None, StreamStats().export_state()
        )
    with pytest.raises(KeyError):
        engine.poll(1)


async def test_handovers_under_traffic_lose_and_double_count_nothing(
    native_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Taps switched on and off on every call while packets flow both ways: each switch
    takes a lane back from the running thread or hands it over to it. Every packet
    arrives once and is counted once, whichever path carried it."""
    calls = await settled_calls(native_relay, phones, 8)
    rounds, sent = 60, 2
    for round_index in range(rounds):
        for index, call in enumerate(calls):
            seq = 3 + round_index
            call.a.send(call.a_port, rtp(seq, payload=f"a{index}".encode()))
            call.b.send(call.b_port, rtp(seq, payload=f"b{index}".encode()))
            side = "a" if (round_index + index) % 2 else "b"
            tap = None if (round_index + index) % 3 else (lambda packet, arrival: None)
            call.session.set_tap(side, tap)
        sent += 1
        if round_index % 5 == 0:
            await asyncio.sleep(0)
    for call in calls:
        await wait_until(lambda call=call: call.stats("a")["packets_in"] == sent, timeout=5)
        await wait_until(lambda call=call: call.stats("b")["packets_in"] == sent, timeout=5)
    for index, call in enumerate(calls):
        to_b = [data for data, _ in call.b.pending()]
        to_a = [data for data, _ in call.a.pending()]
        # the settle packets were read; the rest arrived once each, in order per direction
        assert to_b == [rtp(3 + n, payload=f"a{index}".encode()) for n in range(rounds)]
        assert to_a == [rtp(3 + n, payload=f"b{index}".encode()) for n in range(rounds)]
        a, b = call.stats("a"), call.stats("b")
        assert (a["packets_in"], a["packets_out"], a["lost"]) == (sent, sent, 0)
        assert (b["packets_in"], b["packets_out"], b["lost"]) == (sent, sent, 0)
