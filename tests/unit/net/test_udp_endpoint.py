"""The SIP UDP socket the gateway reads itself: arrival stamps, runs of late messages,
sends, keep-alives."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from gateway.net.transports import ListenAddress, Transports
from gateway.net.udp_endpoint import PLAUSIBLE_WAIT_S, arrival_s, waited_s

HOLD_S = 0.3
Got = list[tuple[bytes, tuple[str, int], float, float]]


async def _until(got: Got, count: int) -> None:
    for _ in range(200):
        if len(got) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(got)} messages of {count}")


@pytest.mark.asyncio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's")
async def test_each_message_knows_how_long_it_waited_and_a_stall_is_a_short_late_run() -> None:
    got: Got = []
    transports: Transports

    def on_message(data: bytes, source: tuple[str, int], transport: str) -> None:
        assert transport == "udp"
        got.append((data, source, transports.receive_wait_s, transports.late_for_s()))

    transports = Transports(on_message)
    transports.late_after_s = HOLD_S / 2
    await transports.listen([ListenAddress("udp", "127.0.0.1", 0)])
    gateway = ("127.0.0.1", transports.bound[0].port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        # the kernel turns receive stamps on in deferred work: a first message settles it
        peer.sendto(b"OPTIONS sip:warm-up SIP/2.0\r\n\r\n", gateway)
        await _until(got, 1)
        got.clear()
        for index in range(20):
            peer.sendto(f"OPTIONS sip:{index} SIP/2.0\r\n\r\n".encode(), gateway)
        peer.sendto(b"\r\n\r\n", gateway)  # keep-alive: not a message
        time.sleep(HOLD_S)  # the loop stalls: the datagrams wait in the queue
        await _until(got, 20)
        assert all(item[1] == peer.getsockname() for item in got)
        assert min(item[2] for item in got) >= HOLD_S * 0.9, got
        # a stall leaves a run of late messages that is read in far less than the stall
        assert max(item[3] for item in got) < HOLD_S / 3, [item[3] for item in got]
        assert transports.max_receive_wait_s == max(item[2] for item in got)
        peer.sendto(b"BYE sip:a SIP/2.0\r\n\r\n", gateway)
        await _until(got, 21)
        assert got[-1][2] < HOLD_S / 2 and got[-1][3] == 0.0
        assert transports.late_since is None, "an on-time message ends the run"
        assert transports.receive_wait_s == 0.0, "only while a message is being handled"
        transports.send(b"SIP/2.0 200 OK\r\n\r\n", peer.getsockname(), "udp")
        peer.settimeout(2)
        assert peer.recvfrom(100)[0] == b"SIP/2.0 200 OK\r\n\r\n"
    assert transports.send_drops == 0
    await transports.close()


def test_stamps_are_read_and_implausible_waits_are_unknown() -> None:
    assert arrival_s([]) is None
    assert arrival_s([(socket.SOL_SOCKET, 1, b"\0" * 16)]) is None
    assert waited_s(None, 100.0) == 0.0
    assert waited_s(99.5, 100.0) == pytest.approx(0.5)
    assert waited_s(101.0, 100.0) == 0.0, "the clock stepped back"
    assert waited_s(100.0 - PLAUSIBLE_WAIT_S - 1, 100.0) == 0.0, "the clock stepped forward"
