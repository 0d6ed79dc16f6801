"""The kernel forwarder between two hosts: parties in network namespaces, across veth links.

Loopback tests cover the local path (a local sender's packet to a local address); this
one covers what a deployment does: each party on a host of its own, the gateway
relaying between two interfaces, packets leaving by ``bpf_redirect_neigh`` to the
next hop's link address. Checksum offload is switched off where the packets are made
and where they are taken in, so the receiving stack checks every UDP checksum the
program rewrote: a wrong one drops the packet and the counts below fall short.

Needs root (namespaces, veth, the BPF program) and ethtool; in CI a missing piece is a
failure, elsewhere a skip that says what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from gateway.media import kernel
from gateway.media.relay import MediaRelay
from tests.unit.media.conftest import (
    TEST_PORT_MAX,
    TEST_PORT_MIN,
    missing_in_ci_fails,
    require_kernel_forwarder,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux's")

GATEWAY_ADDRESS = "10.77.1.1"
PACKETS = 60


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    gateway_side: str  # the veth end in the gateway's namespace
    host_side: str  # the veth end in the party's namespace


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Party A on 10.77.1.2 and party B on 10.77.2.2, each in a namespace of its own,
    linked to this namespace by veth (10.77.1.1 and 10.77.2.1 here)."""
    require_kernel_forwarder()
    if os.geteuid() != 0:
        missing_in_ci_fails("network namespaces need root (run the suite as root, as CI does)")
    ip, ethtool = shutil.which("ip"), shutil.which("ethtool")
    if ip is None or ethtool is None:
        missing_in_ci_fails("needs ip (iproute2) and ethtool: `make deps` installs ethtool")
    tag = os.getpid() % 100000
    hosts = (
        Host(f"cg{tag}a", "10.77.1.2", f"cg{tag}a0", f"cg{tag}a1"),
        Host(f"cg{tag}b", "10.77.2.2", f"cg{tag}b0", f"cg{tag}b1"),
    )
    try:
        for number, host in enumerate(hosts, start=1):
            _run("ip", "netns", "add", host.namespace)
            _run(
                "ip",
                "link",
                "add",
                host.gateway_side,
                "type",
                "veth",
                "peer",
                "name",
                host.host_side,
            )
            _run("ip", "link", "set", host.host_side, "netns", host.namespace)
            _run("ip", "addr", "add", f"10.77.{number}.1/24", "dev", host.gateway_side)
            _run("ip", "link", "set", host.gateway_side, "up")
            inside = ("ip", "netns", "exec", host.namespace)
            _run(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", host.host_side)
            _run(*inside, "ip", "link", "set", host.host_side, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            _run(*inside, "ip", "route", "add", "default", "via", f"10.77.{number}.1")
            # checksums made in software by the sender and checked by the receiver, on
            # both ends of the link
            for where, device in ((inside, host.host_side), ((), host.gateway_side)):
                _run(*where, "ethtool", "-K", device, "tx", "off", "rx", "off")
        yield hosts
    finally:
        for host in hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)
            subprocess.run(
                ["ip", "link", "del", host.gateway_side], capture_output=True, timeout=30
            )


PARTY = textwrap.dedent(
    """
    import json, socket, struct, sys, time
    address, gateway = sys.argv[1], sys.argv[2]
    gateway_port, count, ssrc = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 40000))
    received, sources = [], set()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    deadline = start + count * 0.02 + 3.0
    sent = 0
    while time.monotonic() < deadline and (sent < count or len(received) < count):
        due = start + sent * 0.02  # an RTP sender's pace: a packet every 20 ms
        if sent < count and time.monotonic() >= due:
            sent += 1
            header = struct.pack("!BBHII", 0x80, 0, sent, sent * 160, ssrc)
            sock.sendto(header + bytes([sent % 256]) * 160, (gateway, gateway_port))
            continue
        sock.settimeout(max(0.001, min(0.02, due - time.monotonic())) if sent < count else 0.05)
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            continue
        received.append(struct.unpack_from("!H", data, 2)[0])
        sources.add(f"{source[0]}:{source[1]}")
    print(json.dumps({"received": received, "sources": sorted(sources)}), flush=True)
    """
)


async def _party(host: Host, port: int, ssrc: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", host.namespace, sys.executable, "-c", PARTY,
        host.address, GATEWAY_ADDRESS, str(port), str(PACKETS), str(ssrc),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
    return process


@pytest.fixture
async def gateway_relay(two_hosts: tuple[Host, Host]) -> AsyncIterator[MediaRelay]:
    """A relay on 10.77.1.1, its program attached to every interface (the veths too)."""
    relay = MediaRelay(GATEWAY_ADDRESS, TEST_PORT_MIN, TEST_PORT_MAX, kernel_forwarding="on")
    yield relay
    await relay.close()


async def test_relays_between_hosts_in_the_kernel_with_valid_checksums(
    two_hosts: tuple[Host, Host], gateway_relay: MediaRelay
) -> None:
    a, b = two_hosts
    session = await gateway_relay.create_session("netns")
    session.set_remote("a", 0, a.address, 40000, None, False)
    session.set_remote("b", 0, b.address, 40000, None, False)
    a_side, b_side = session.streams[0].sides()
    parties = [await _party(a, a_side.rtp_port, 0xA), await _party(b, b_side.rtp_port, 0xB)]
    for process in parties:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    results = []
    for process in parties:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    for result, port in zip(results, (a_side.rtp_port, b_side.rtp_port), strict=True):
        # every packet of the other party, from the port this party sends to (RFC 4961)
        assert sorted(result["received"]) == list(range(1, PACKETS + 1))
        assert result["sources"] == [f"{GATEWAY_ADDRESS}:{port}"]
    kernel_lanes, kernel_relayed = gateway_relay.kernel_totals()
    assert kernel_lanes == 2
    assert kernel_relayed >= PACKETS  # most of both streams crossed in the kernel
    a_stats, b_stats = session.streams[0].sides()[0].stats, session.streams[0].sides()[1].stats
    assert (a_stats.packets_in, b_stats.packets_in) == (PACKETS, PACKETS)
    assert (a_stats.packets_out, b_stats.packets_out) == (PACKETS, PACKETS)
    assert a_stats.lost == 0 and b_stats.lost == 0
    assert kernel.unavailable_reason() is None
