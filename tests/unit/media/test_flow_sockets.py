"""Flow sockets: a latched party's packets on a socket connected to it (Linux).

The relay tests in ``test_relay.py`` run with and without flow sockets; these
look at what only flow sockets do: that they are opened, closed and replaced
with the latch, that the kernel still hands other sources to the first socket,
that a refused send does not stop the relay, and that the first read after
connecting checks sources.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from gateway.media import relay as relay_module
from gateway.media.forward import FlowSockets
from gateway.media.relay import MediaRelay
from gateway.media.reuseport import connected_sockets_preferred
from tests.unit.media.conftest import TEST_PORT_MAX, TEST_PORT_MIN
from tests.unit.media.test_relay import Call, PhoneFactory, make_call
from tests.unit.media.udp_phone import ipv6_loopback_available, rtp, wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="flow sockets are Linux's")


def _bound_exclusively(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


async def _latched_both_ways(call: Call) -> None:
    call.a.send(call.a_port, rtp(1))
    await call.b.recv()
    call.b.send(call.b_port, rtp(1))
    await call.a.recv()


async def test_latched_parties_get_flow_sockets_that_carry_their_packets(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(flow_relay, phones)
    a_side, b_side = call.session.streams[0].sides()
    assert a_side.rtp.flow is None
    await _latched_both_ways(call)
    flow = a_side.rtp.flow
    assert flow is not None and b_side.rtp.flow is not None
    assert flow.getpeername() == ("127.0.0.1", call.a.port)
    assert flow.getsockname() == ("127.0.0.1", call.a_port)
    # packets toward A leave by A's flow socket
    assert b_side.rtp.flow_send == flow.send

    for seq in range(2, 12):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
        call.b.send(call.b_port, rtp(seq))
        data, source = await call.a.recv()
        assert data == rtp(seq) and source[1] == call.a_port
    assert call.stats("a")["packets_in"] == 11
    assert call.stats("a")["packets_out"] == 11
    assert call.stats("a")["lost"] == 0


async def test_the_kernel_still_hands_other_sources_to_the_first_socket(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    intruders = [phones() for _ in range(5)]  # sources hash differently
    for index, intruder in enumerate(intruders):
        intruder.send(call.a_port, rtp(100 + index, payload=b"intruder"))
    await wait_until(lambda: call.stats("a")["dropped_foreign"] == len(intruders))
    call.a.send(call.a_port, rtp(2))
    assert (await call.b.recv())[0] == rtp(2)
    assert call.b.pending() == []


async def test_a_new_sdp_address_closes_the_flow_and_the_new_source_gets_one(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    a_side = call.session.streams[0].a
    old_flow = a_side.rtp.flow
    assert old_flow is not None

    moved = phones()
    call.session.set_remote("a", 0, "127.0.0.1", moved.port, None, False)
    assert a_side.rtp.flow is None and old_flow.fileno() == -1  # closed
    moved.send(call.a_port, rtp(50))
    assert (await call.b.recv())[0] == rtp(50)
    assert a_side.rtp.flow is not None
    assert a_side.rtp.flow.getpeername() == ("127.0.0.1", moved.port)
    call.b.send(call.b_port, rtp(51))
    assert (await moved.recv())[0] == rtp(51)


async def test_closing_a_session_closes_its_flows_and_frees_the_ports(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    flows = [side.rtp.flow for side in call.session.sides()]
    await flow_relay.close_session(call.session)
    assert all(flow is not None and flow.fileno() == -1 for flow in flows)
    for port in (call.a_port, call.b_port):
        assert _bound_exclusively("127.0.0.1", port)


async def test_another_relay_cannot_take_a_port_a_flow_shares(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """A second relay with flow sockets, over the same ports, skips those a latched call
    holds: the ports' first bind stays exclusive, so two relays never share a port (had
    the pool set SO_REUSEPORT before binding, the second relay would bind the same ports)."""
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    assert call.session.streams[0].a.rtp.flow is not None
    held = {port for side in ("a", "b") for port in call.session.local_ports(side)[0]}
    second = MediaRelay("127.0.0.1", min(held), max(held) + 2)  # the call's pairs and one more
    try:
        rtp_sock, rtcp_sock = second.pool.bind_pair()
        try:
            assert rtp_sock.getsockname()[1] not in held
        finally:
            rtp_sock.close()
            rtcp_sock.close()
        assert not _bound_exclusively("127.0.0.1", call.a_port)
    finally:
        await second.close()


async def test_a_refused_send_toward_a_party_does_not_stop_the_relay(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    b_port = call.b.port
    call.b.close()  # the callee's port now answers with ICMP port unreachable
    for seq in range(2, 8):
        call.a.send(call.a_port, rtp(seq))
    side_a = call.session.streams[0].a
    await wait_until(lambda: side_a.stats.packets_in == 7)
    # each send's refusal was reported on the next send, which went out all the same
    assert call.stats("b")["packets_out"] == 7
    assert call.session.streams[0].a.rtp.send_errors == 0

    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the callee comes back
    back.bind(("127.0.0.1", b_port))
    back.setblocking(False)
    try:
        # a refusal still pending on the flow socket is reported on the next send,
        # which is made again: no packet is lost to it
        for seq in (9, 10):
            call.a.send(call.a_port, rtp(seq))
        await wait_until(lambda: side_a.stats.packets_in == 9)
        arrived = [back.recvfrom(4096) for _ in range(2)]
        assert [data for data, _ in arrived] == [rtp(9), rtp(10)]
        assert {source[1] for _, source in arrived} == {call.b_port}
    finally:
        back.close()


async def test_the_first_read_of_a_flow_checks_each_queued_source(
    flow_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Between bind and connect a flow socket may take anyone's datagram; the first
    read relays only the latched source's and counts the rest as foreign."""
    call = await make_call(flow_relay, phones)
    await _latched_both_ways(call)
    receiver = call.session.streams[0].a.rtp
    receiver.close_flow()
    intruder = phones()
    # a socket standing for the flow before its connect: unconnected, with a
    # datagram from the intruder and one from the latched caller queued
    stand_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stand_in.bind(("127.0.0.1", 0))
    stand_in.setblocking(False)
    intruder.sock.sendto(rtp(20, payload=b"intruder"), stand_in.getsockname())
    call.a.sock.sendto(rtp(21), stand_in.getsockname())  # loopback: queued at once
    # and a refusal pending, which the kernel reports ahead of the queued datagrams
    shut = phones()
    shut_address = shut.sock.getsockname()
    shut.close()
    stand_in.connect(shut_address)
    stand_in.send(b"x")
    stand_in.connect(("127.0.0.1", call.a.port))  # connected to the latched source now
    receiver.flows = FlowSockets(asyncio.get_running_loop(), lambda sock: None)
    receiver.flow = stand_in
    receiver._first_flow_read()
    assert (await call.b.recv())[0] == rtp(21)
    assert call.b.pending() == []
    assert call.stats("a")["dropped_foreign"] == 1
    receiver.close_flow()
    assert stand_in.fileno() == -1


async def test_a_relay_on_the_wildcard_address_gets_flows(phones: PhoneFactory) -> None:
    relay = MediaRelay("0.0.0.0", TEST_PORT_MIN, TEST_PORT_MAX)
    try:
        call = await make_call(relay, phones)
        await _latched_both_ways(call)
        a_side = call.session.streams[0].a
        assert a_side.rtp.flow is not None
        intruder = phones()
        intruder.send(call.a_port, rtp(40))
        await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
        call.a.send(call.a_port, rtp(41))
        assert (await call.b.recv())[0] == rtp(41)
        call.b.send(call.b_port, rtp(42))
        data, source = await call.a.recv()
        assert data == rtp(42) and source == ("127.0.0.1", call.a_port)
        assert call.b.pending() == [] and call.a.pending() == []
    finally:
        await relay.close()


async def test_a_dual_stack_relay_gets_flows_for_ipv4_parties(phones: PhoneFactory) -> None:
    """Bound to ``::``, the relay sees IPv4 parties as IPv4-mapped addresses; their flows
    connect to those."""
    if not ipv6_loopback_available():
        pytest.skip("the kernel has no IPv6 loopback")
    if Path("/proc/sys/net/ipv6/bindv6only").read_text().strip() != "0":
        pytest.skip("net.ipv6.bindv6only is set: a relay on :: takes no IPv4 here")
    relay = MediaRelay("::", TEST_PORT_MIN, TEST_PORT_MAX)
    try:
        call = await make_call(relay, phones)  # the parties on 127.0.0.1
        await _latched_both_ways(call)
        a_side = call.session.streams[0].a
        assert a_side.rtp.flow is not None
        assert a_side.rtp.flow.getpeername()[:2] == ("::ffff:127.0.0.1", call.a.port)
        intruder = phones()
        intruder.send(call.a_port, rtp(60))
        await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
        call.b.send(call.b_port, rtp(61))
        data, source = await call.a.recv()
        assert data == rtp(61) and source == ("127.0.0.1", call.a_port)
    finally:
        await relay.close()


def test_this_kernel_prefers_connected_sockets() -> None:
    """CI's and the gateway's kernels are Linux 5.4 or later: the probe must say so."""
    assert connected_sockets_preferred(socket.AF_INET)


async def test_a_kernel_without_the_preference_gets_no_flows(
    monkeypatch: pytest.MonkeyPatch, phones: PhoneFactory, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(relay_module, "connected_sockets_preferred", lambda family: False)
    relay = MediaRelay("127.0.0.1", TEST_PORT_MIN, TEST_PORT_MAX)
    try:
        assert not relay.flow_sockets
        assert "no flow sockets" in caplog.text
        call = await make_call(relay, phones)
        await _latched_both_ways(call)
        assert all(side.rtp.flow is None for side in call.session.sides())
    finally:
        await relay.close()


async def test_ipv6_flows(phones: PhoneFactory) -> None:
    if not ipv6_loopback_available():
        pytest.skip("the kernel has no IPv6 loopback")
    relay = MediaRelay("::1", TEST_PORT_MIN, TEST_PORT_MAX)
    try:
        call = await make_call(relay, phones, host="::1")
        await _latched_both_ways(call)
        a_side = call.session.streams[0].a
        assert a_side.rtp.flow is not None
        assert a_side.rtp.flow.getpeername()[:2] == ("::1", call.a.port)
        intruder = phones("::1")
        intruder.send(call.a_port, rtp(30))
        await wait_until(lambda: call.stats("a")["dropped_foreign"] == 1)
        call.b.send(call.b_port, rtp(31))
        assert (await call.a.recv())[0] == rtp(31)
    finally:
        await relay.close()
