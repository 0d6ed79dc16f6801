"""The SIP UDP socket the gateway reads itself: arrival stamps, sends, keep-alives."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from gateway.net.transports import ListenAddress, Transports
from gateway.net.udp_endpoint import arrival_s

HOLD_S = 0.3


@pytest.mark.asyncio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's")
async def test_each_message_knows_how_long_it_waited_in_the_socket() -> None:
    got: list[tuple[bytes, tuple[str, int], str, float]] = []
    transports: Transports

    def on_message(data: bytes, source: tuple[str, int], transport: str) -> None:
        got.append((data, source, transport, transports.receive_wait_s))

    transports = Transports(on_message)
    await transports.listen([ListenAddress("udp", "127.0.0.1", 0)])
    port = transports.bound[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"OPTIONS sip:a SIP/2.0\r\n\r\n", ("127.0.0.1", port))
        peer.sendto(b"\r\n\r\n", ("127.0.0.1", port))  # keep-alive: not a message
        time.sleep(HOLD_S)  # the loop is blocked: the datagrams wait in the queue
        peer.sendto(b"BYE sip:a SIP/2.0\r\n\r\n", ("127.0.0.1", port))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(got) == 2:
                break
        assert [item[0][:3] for item in got] == [b"OPT", b"BYE"]
        assert got[0][1] == peer.getsockname() and got[0][2] == "udp"
        assert got[0][3] >= HOLD_S * 0.9, got[0][3]
        assert got[1][3] < HOLD_S * 0.5, got[1][3]
        assert transports.max_receive_wait_s == got[0][3]
        assert transports.receive_wait_s == 0.0, "only while a message is being handled"
        transports.send(b"SIP/2.0 200 OK\r\n\r\n", peer.getsockname(), "udp")
        peer.settimeout(2)
        assert peer.recvfrom(100)[0] == b"SIP/2.0 200 OK\r\n\r\n"
    await transports.close()


def test_an_ancillary_list_without_a_stamp_gives_none() -> None:
    assert arrival_s([]) is None
    assert arrival_s([(socket.SOL_SOCKET, 1, b"\0" * 16)]) is None
