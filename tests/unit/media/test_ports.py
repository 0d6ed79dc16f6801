"""The RTP/RTCP port pool: even/odd pairs, exhaustion, release, ports held elsewhere."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from gateway.media.ports import PortPool, PortPoolExhausted
from tests.unit.media.udp_phone import free_even_range, ipv6_loopback_available


def test_pairs_are_even_rtp_and_next_odd_rtcp() -> None:
    base = free_even_range(3)
    pool = PortPool("127.0.0.1", base, base + 5)
    pairs = [pool.allocate() for _ in range(3)]
    assert pairs == [(base, base + 1), (base + 2, base + 3), (base + 4, base + 5)]


def test_odd_port_min_starts_at_next_even_port() -> None:
    base = free_even_range(2)
    pool = PortPool("127.0.0.1", base - 1, base + 3)
    assert pool.capacity == 2
    assert pool.allocate()[0] == base


def test_exhaustion_then_release_makes_a_pair_available() -> None:
    base = free_even_range(2)
    pool = PortPool("127.0.0.1", base, base + 3)
    first = pool.allocate()
    second = pool.allocate()
    assert pool.available == 0
    with pytest.raises(PortPoolExhausted, match="no free RTP/RTCP port pair"):
        pool.allocate()
    pool.release(first[0])
    assert pool.available == 1
    assert pool.allocate() == first
    assert second != first


def test_released_pairs_are_reused_last() -> None:
    base = free_even_range(3)
    pool = PortPool("127.0.0.1", base, base + 5)
    first = pool.allocate()
    pool.release(first[0])
    assert pool.allocate()[0] == base + 2
    assert pool.allocate()[0] == base + 4
    assert pool.allocate()[0] == base


def test_pair_held_by_another_socket_is_skipped() -> None:
    base = free_even_range(2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", base + 1))  # the RTCP port of the first pair
    try:
        pool = PortPool("127.0.0.1", base, base + 3)
        assert pool.allocate() == (base + 2, base + 3)
        with pytest.raises(PortPoolExhausted):
            pool.allocate()
    finally:
        squatter.close()
    assert pool.allocate() == (base, base + 1)


def test_out_of_open_files_is_refused_at_once_with_the_reason() -> None:
    """Not a port held elsewhere: the pool says why, without trying every pair (in a
    process whose open-files limit is already used up)."""
    base = free_even_range(4)
    script = textwrap.dedent(
        f"""
        import resource, socket
        from gateway.media.ports import PortPool, PortPoolExhausted
        pool = PortPool("127.0.0.1", {base}, {base + 7})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held = []
        try:
            while True:
                held.append(socket.socket())
        except OSError:
            pass
        try:
            pool.bind_pair()
        except PortPoolExhausted as error:
            print(pool.available, error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    available, reason = done.stdout.strip().split(" ", 1)
    assert available == "4"  # every pair still free
    assert reason.startswith("cannot open a media socket on 127.0.0.1: [Errno 24]"), reason


def test_bind_pair_returns_bound_sockets() -> None:
    base = free_even_range(1)
    pool = PortPool("127.0.0.1", base, base + 1)
    rtp_sock, rtcp_sock = pool.bind_pair()
    try:
        assert rtp_sock.getsockname() == ("127.0.0.1", base)
        assert rtcp_sock.getsockname() == ("127.0.0.1", base + 1)
        assert pool.in_use == 1
    finally:
        rtp_sock.close()
        rtcp_sock.close()


def test_release_of_a_port_not_allocated_is_refused() -> None:
    base = free_even_range(1)
    pool = PortPool("127.0.0.1", base, base + 1)
    with pytest.raises(ValueError, match="not allocated"):
        pool.release(base)
    rtp_port, _ = pool.allocate()
    pool.release(rtp_port)
    with pytest.raises(ValueError, match="not allocated"):
        pool.release(rtp_port)


@pytest.mark.parametrize(
    ("port_min", "port_max"), [(0, 10), (5000, 4000), (5000, 5000), (5001, 5002), (65535, 70000)]
)
def test_bad_ranges_are_refused(port_min: int, port_max: int) -> None:
    with pytest.raises(ValueError, match="port"):
        PortPool("127.0.0.1", port_min, port_max)


def test_host_must_be_an_ip_literal() -> None:
    with pytest.raises(ValueError, match="IP address literal"):
        PortPool("media.example.com", 20000, 20010)


def test_ipv6_host() -> None:
    if not ipv6_loopback_available():
        pytest.skip("the kernel has no IPv6 loopback")
    base = free_even_range(1, host="::1")
    pool = PortPool("::1", base, base + 1)
    rtp_sock, rtcp_sock = pool.bind_pair()
    try:
        assert rtp_sock.family == socket.AF_INET6
        assert rtp_sock.getsockname()[:2] == ("::1", base)
    finally:
        rtp_sock.close()
        rtcp_sock.close()
