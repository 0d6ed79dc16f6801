"""The kernel forwarder (gateway/media/kernel.py, kernel_forward.bpf.c) over real sockets.

The relay-level behaviour it shares with the native forwarder (handovers, RTCP-mux, hold,
isolation of calls, foreign sources, idle checks, totals) is tested on both in
test_fastpath.py and on every relay path in test_relay.py and test_flow_sockets.py; these
tests are about what only the kernel forwarder does: statistics kept in integers,
datagrams queued on a flow socket when a lane starts, lanes it leaves to the native
forwarder, the privileges it needs, and that its program leaves with the process.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.media import kernel
from gateway.media.relay import MediaRelay
from gateway.media.stats import STATE_FIELDS, StreamStats
from tests.unit.media.conftest import TEST_PORT_MAX, TEST_PORT_MIN, require_kernel_forwarder
from tests.unit.media.test_fastpath import recv_blocking, settle
from tests.unit.media.test_relay import Call, PhoneFactory, make_call
from tests.unit.media.udp_phone import rtp, wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forwarder is Linux's")

REPO = Path(__file__).resolve().parents[3]
INTEGER_FIELDS = [
    name for name in STATE_FIELDS if name not in ("last_packet_at", "_transit", "jitter")
]


@pytest.fixture
async def kernel_relay() -> AsyncIterator[MediaRelay]:
    require_kernel_forwarder()
    media_relay = MediaRelay(
        "127.0.0.1", TEST_PORT_MIN, TEST_PORT_MAX, kernel_forwarding="on", kernel_interfaces=("lo",)
    )
    assert media_relay.kernel is not None
    yield media_relay
    await media_relay.close()


def a_lane(call: Call, relay: MediaRelay) -> int:
    lane = call.session.streams[0].sides()[0].rtp.lane
    assert lane is not None and relay.kernel is not None and relay.kernel.in_kernel(lane)
    return lane


async def receive_all(call: Call, count: int) -> list[bytes]:
    return [(await call.b.recv())[0] for _ in range(count)]


async def test_sequence_tracking_and_loss_equal_stream_stats(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Gaps, a duplicate, reordering, a new SSRC and a jump taken as a restart (RFC 3550
    A.1, A.3): every integer the kernel keeps equals what StreamStats keeps for the same
    packets, through the handover back to Python."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    a_lane(call, kernel_relay)
    sequence = [3, 4, 6, 6, 5, 9, 10, 65000, 11, 12, 30000, 30001, 30002]
    packets = [rtp(seq) for seq in sequence] + [rtp(seq, ssrc=0x77) for seq in (500, 501, 503)]
    for packet in packets:
        call.a.send(call.a_port, packet)
    assert await receive_all(call, len(packets)) == packets
    model = StreamStats()
    for seq in (1, 2):  # the two packets of settle()
        model.update(rtp(seq), 0.0)
    for packet in packets:
        model.update(packet, 0.0)
    side = call.session.streams[0].sides()[0]
    side.rtp.take_lane_back()
    for name in INTEGER_FIELDS:
        assert getattr(side.counters, name) == getattr(model, name), name
    assert model.lost > 0  # the gaps show: the comparison covers loss
    assert call.stats("a")["lost"] == model.lost


async def test_jitter_follows_the_interarrival_estimate(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Timestamps that swing 800 units against steady sending: the kernel's integer A.8
    estimate tracks StreamStats fed the send times, within half a timestamp unit (the
    difference is the loopback's own delay variation, microseconds)."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    a_lane(call, kernel_relay)
    model = StreamStats()
    model.update(
        rtp(2), 0.0
    )  # the lane carries on from what Python saw; only its own part is compared
    side = call.session.streams[0].sides()[0]
    side.rtp.sync()
    model.import_state(side.counters.export_state())
    for seq in range(3, 43):
        timestamp = seq * 160 + (800 if seq % 2 else 0)
        packet = rtp(seq, timestamp=timestamp)
        call.a.send(call.a_port, packet)
        model.update(packet, time.monotonic())  # after the send, as the kernel stamps it
        time.sleep(0.005)
    await receive_all(call, 40)
    side.rtp.sync()
    assert model.jitter > 300  # the swing shows: the check below can fail
    # within 2 %: a preemption between a send and its stamp here moves the model, not
    # the kernel (at 8 kHz a unit is 125 µs)
    assert side.counters.jitter == pytest.approx(model.jitter, rel=0.02)
    assert side.counters.packets_in == model.packets_in == 42


@pytest.mark.parametrize("clock_rate", [8000, 48000, 90000])
@pytest.mark.parametrize("uptime_days", [0.01, 30, 400])
def test_a_state_survives_the_kernels_integers(clock_rate: int, uptime_days: float) -> None:
    """Whatever the host's uptime (monotonic time) and the clock rate, a state goes into
    the program's integers and back unchanged, and fits the lane's struct."""
    start = uptime_days * 86400
    stats = StreamStats(clock_rate)
    for seq in range(1, 30):
        stats.update(
            rtp(seq, timestamp=3_000_000_000 + seq * 160 + (seq % 3) * 40), start + seq * 0.02
        )
    fresh = StreamStats(clock_rate)
    for state in (stats.export_state(), fresh.export_state()):
        fields = kernel._state_in(state)
        kernel._LANE.pack(
            0,
            clock_rate,
            *kernel._KEY.unpack(bytes(12)),
            0,
            *kernel._NO_ROUTE,
            *kernel._NO_ROUTE,
            *fields,
            0,
            0,
            0,
        )  # fits the struct
        back = kernel._state_out(fields, clock_rate)
        for name, before, after in zip(STATE_FIELDS, state, back, strict=True):
            if isinstance(before, float) and math.isnan(before):
                assert math.isnan(after), name
            elif isinstance(before, float):  # a nanosecond of a unit, or of a second
                assert math.isclose(before, after, rel_tol=0, abs_tol=1e-3), name
            else:
                assert before == after, name


async def test_a_datagram_queued_when_a_lane_starts_is_relayed_first(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """The kernel never reads the flow socket: what waited there when the lane began is
    relayed by the receiver before the lane takes over, and counted once."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    receiver = call.session.streams[0].sides()[0].rtp
    receiver.take_lane_back()  # the flow is the loop's now; stop the loop reading it
    assert receiver.flow is not None and receiver.flows is not None
    receiver.flows.loop.remove_reader(receiver.flow.fileno())
    receiver.flow_reader = False
    call.a.send(call.a_port, rtp(3, payload=b"queued"))
    select.select([receiver.flow], [], [], 1.0)  # it waits on the flow socket
    receiver.reroute()
    assert receiver.lane is not None and kernel_relay.kernel is not None
    assert kernel_relay.kernel.in_kernel(receiver.lane)
    # relayed by the hand-over itself, before the loop ran again (not by the straggler
    # watch, which needs the loop)
    assert recv_blocking(call.b.sock) == rtp(3, payload=b"queued")
    assert receiver.stragglers == 1
    call.a.send(call.a_port, rtp(4))
    assert (await call.b.recv())[0] == rtp(4)
    stats = call.stats("a")
    assert (stats["packets_in"], stats["lost"]) == (4, 0)
    assert call.stats("b")["packets_out"] == 4


async def test_ipv6_lanes_go_to_the_native_forwarder(phones: PhoneFactory) -> None:
    require_kernel_forwarder()
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    relay = MediaRelay(
        "::1", TEST_PORT_MIN, TEST_PORT_MAX, kernel_forwarding="on", kernel_interfaces=("lo",)
    )
    try:
        call = await make_call(relay, phones, host="::1")
        for seq in (1, 2):  # latch, then the flow's first read: the lanes begin
            call.a.send(call.a_port, rtp(seq))
            await call.b.recv()
            call.b.send(call.b_port, rtp(seq))
            await call.a.recv()
        receivers = [side.rtp for side in call.session.streams[0].sides()]
        await wait_until(lambda: all(receiver.lane is not None for receiver in receivers))
        lane = receivers[0].lane
        assert lane is not None and relay.kernel is not None
        assert not relay.kernel.in_kernel(lane)
        assert relay.kernel_totals()[0] == 0 and relay.native_totals()[0] == 2
        call.a.send(call.a_port, rtp(3))
        assert (await call.b.recv())[0] == rtp(3)
    finally:
        await relay.close()


async def test_on_refuses_to_start_without_the_program(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        kernel.KernelForwarder([socket.if_nametoindex("lo")], None, tmp_path / "missing.bpf.o")


def _run_capped(capabilities: str, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a Python that holds only ``capabilities`` (as root, every other one
    dropped from the bounding set)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to drop capabilities")
    caps = f"-all,{capabilities}" if capabilities else "-all"
    return subprocess.run(
        [
            setpriv,
            f"--inh-caps={caps}",
            f"--ambient-caps={caps}",
            f"--bounding-set={caps}",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_cap_bpf_and_cap_net_admin_are_all_it_needs() -> None:
    """What deploy/kernel-forwarding.conf grants is enough, and CAP_BPF is needed."""
    require_kernel_forwarder()
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities to test them needs root")
    code = "from gateway.media import kernel; print(kernel.unavailable_reason())"
    enough = _run_capped("+bpf,+net_admin", code)
    assert enough.returncode == 0 and enough.stdout.strip() == "None", enough.stderr
    without_bpf = _run_capped("+net_admin", code)
    assert without_bpf.returncode == 0, without_bpf.stderr
    assert "Operation not permitted" in without_bpf.stdout


CRASHING_OWNER = textwrap.dedent(
    """
    import socket, sys, time
    from gateway.media import kernel
    from gateway.media.stats import StreamStats

    local_port, remote_port, out_port, sink_port = map(int, sys.argv[1:5])
    forwarder = kernel.KernelForwarder([socket.if_nametoindex("lo")], None)
    flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flow.bind(("127.0.0.1", local_port))
    flow.connect(("127.0.0.1", remote_port))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.bind(("127.0.0.1", out_port))
    forwarder.attach(flow.fileno(), socket.AF_INET, out.fileno(), ("127.0.0.1", sink_port),
                     -1, None, StreamStats().export_state())
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _free_udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def test_the_program_leaves_with_the_process_that_attached_it() -> None:
    """A gateway killed with SIGKILL leaves no forwarding behind: the tcx link closes with
    its descriptors, so a later owner of the same ports gets its packets (no stale lane
    sends them to another call's party)."""
    require_kernel_forwarder()
    local_port, out_port = _free_udp_ports(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2.0)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHING_OWNER,
            str(local_port),
            str(sender.getsockname()[1]),
            str(out_port),
            str(sink.getsockname()[1]),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        sender.sendto(rtp(1), ("127.0.0.1", local_port))
        data, source = sink.recvfrom(4096)
        assert data == rtp(1) and source == ("127.0.0.1", out_port)  # relayed in the kernel
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    later_owner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    later_owner.bind(("127.0.0.1", local_port))
    later_owner.settimeout(2.0)
    try:
        deadline = time.monotonic() + 5
        while True:  # the link is released when the kernel has closed the descriptors
            sender.sendto(rtp(2), ("127.0.0.1", local_port))
            try:
                assert later_owner.recv(4096) == rtp(2)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the killed process's lane still forwards"
        sink.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sink.recvfrom(4096)
    finally:
        later_owner.close()
        sender.close()
        sink.close()


async def test_lanes_are_gone_from_the_kernel_after_close(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """Closing a call removes its entries from the program's map, not only from the books."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    forwarder = kernel_relay.kernel
    assert forwarder is not None and kernel_relay.kernel_totals()[0] == 2
    keys = [lane.key for lane in forwarder._lanes.values()]
    assert all(forwarder._program.read(key) is not None for key in keys)
    await kernel_relay.close_session(call.session)
    assert kernel_relay.kernel_totals()[0] == 0
    assert all(forwarder._program.read(key) is None for key in keys)
    call.a.send(call.a_port, rtp(9))  # the port is closed: nothing relays it any more
    with pytest.raises(TimeoutError):
        await call.b.recv(timeout=0.3)


IP_NOP_OPTIONS = b"\x01\x01\x01\x00"  # three no-operations and the end of the list (RFC 791)


async def test_a_datagram_that_passes_the_program_by_is_relayed_by_the_gateway(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """A datagram with IP options is the stack's to parse, so the program leaves it to
    the stack and it reaches the flow socket: the gateway takes the lane back, relays it,
    and hands the lane to the kernel again. A flow that keeps doing it goes to the native
    forwarder."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    receiver = call.session.streams[0].sides()[0].rtp
    forwarder = kernel_relay.kernel
    assert forwarder is not None
    call.a.sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, IP_NOP_OPTIONS)
    call.a.send(call.a_port, rtp(3, payload=b"with-options"))
    assert (await call.b.recv())[0] == rtp(3, payload=b"with-options")
    await wait_until(lambda: receiver.lane is not None and forwarder.in_kernel(receiver.lane))
    call.a.sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"")
    relayed = kernel_relay.kernel_totals()[1]
    call.a.send(call.a_port, rtp(4))
    assert (await call.b.recv())[0] == rtp(4)
    assert kernel_relay.kernel_totals()[1] == relayed + 1  # the kernel's again
    call.a.sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, IP_NOP_OPTIONS)
    for seq in range(5, 15):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    await wait_until(lambda: receiver.lane is not None)
    assert receiver.lane is not None and not forwarder.in_kernel(receiver.lane)
    stats = call.stats("a")
    assert (stats["packets_in"], stats["lost"]) == (14, 0)
    assert call.stats("b")["packets_out"] == 14


async def test_a_tapped_flow_is_read_by_the_loop_and_returns_to_the_kernel_untapped(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    receiver = call.session.streams[0].sides()[0].rtp
    forwarder = kernel_relay.kernel
    assert forwarder is not None
    heard: list[bytes] = []
    receiver.set_tap(lambda packet, arrival: heard.append(packet))
    assert receiver.lane is None and not receiver.straggler_watch
    for seq in (3, 4, 5):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    assert heard == [rtp(3), rtp(4), rtp(5)]
    receiver.set_tap(None)
    assert receiver.lane is not None and forwarder.in_kernel(receiver.lane)
    assert receiver.straggler_watch and receiver.stragglers == 0
    call.a.send(call.a_port, rtp(6))
    assert (await call.b.recv())[0] == rtp(6)
    assert heard == [rtp(3), rtp(4), rtp(5)]
    assert (call.stats("a")["packets_in"], call.stats("b")["packets_out"]) == (6, 6)


async def test_refusals_of_what_the_kernel_sent_leave_the_lane_in_the_kernel(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """B's port closes: each packet the kernel sends there brings an ICMP refusal to B's
    flow socket, which wakes the straggler watch with nothing queued; the lane stays."""
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    b_receiver = call.session.streams[0].sides()[1].rtp
    forwarder = kernel_relay.kernel
    assert forwarder is not None and b_receiver.lane is not None
    call.b.sock.close()
    for seq in range(3, 15):
        call.a.send(call.a_port, rtp(seq))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert b_receiver.stragglers == 0
    assert b_receiver.lane is not None and forwarder.in_kernel(b_receiver.lane)
    assert call.stats("a")["packets_in"] == 14


async def test_lanes_between_a_party_here_and_one_elsewhere_go_to_the_native_forwarder(
    kernel_relay: MediaRelay,
) -> None:
    """A local party's packets toward a remote address (192.0.2.0/24, TEST-NET-1, is
    routed away from this host): the kernel forwarder declines the lane and the native
    forwarder takes it."""
    forwarder = kernel_relay.kernel
    assert forwarder is not None
    flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        flow.bind(("127.0.0.1", 0))
        flow.connect(("127.0.0.1", 9))
        out.bind(("127.0.0.1", 0))
        handle = forwarder.attach(
            flow.fileno(), socket.AF_INET, out.fileno(), ("192.0.2.77", 4000), -1, None,
            StreamStats().export_state(),
        )  # fmt: skip
        assert not forwarder.in_kernel(handle)
        forwarder.detach(handle)
    finally:
        flow.close()
        out.close()


async def test_a_route_change_hands_every_kernel_lane_over_again(
    kernel_relay: MediaRelay, phones: PhoneFactory
) -> None:
    """A kernel lane leaves by the interface its route named when it began: after a route
    of this host changes, every kernel lane is attached again, its route looked up anew,
    and the call goes on with its counts whole."""
    if os.geteuid() != 0:
        pytest.skip("changing a route needs root")
    call = await make_call(kernel_relay, phones)
    await settle(call, kernel_relay)
    receivers = [side.rtp for side in call.session.streams[0].sides()]
    before = [receiver.lane for receiver in receivers]
    route = ["203.0.113.77/32", "dev", "lo"]  # TEST-NET-3: no traffic of anyone's
    subprocess.run(["ip", "route", "add", *route], check=True, timeout=30)
    try:
        await wait_until(
            lambda: all(r.lane not in (None, b) for r, b in zip(receivers, before, strict=True))
        )
    finally:
        subprocess.run(["ip", "route", "del", *route], check=False, timeout=30)
    forwarder = kernel_relay.kernel
    assert forwarder is not None
    assert all(r.lane is not None and forwarder.in_kernel(r.lane) for r in receivers)
    for seq in (3, 4):
        call.a.send(call.a_port, rtp(seq))
        assert (await call.b.recv())[0] == rtp(seq)
    assert (call.stats("a")["packets_in"], call.stats("b")["packets_out"]) == (4, 4)
