"""A minimal RTP endpoint for relay tests: a UDP socket on loopback and packet builders."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

RTP_HEADER = struct.Struct("!BBHII")


def rtp(seq: int, timestamp: int | None = None, ssrc: int = 0x1234, payload: bytes = b"") -> bytes:
    """A version-2 PCMU RTP packet (RFC 3550 5.1) with 160 bytes of payload by default."""
    ts = seq * 160 if timestamp is None else timestamp
    body = payload or bytes([0xFF]) * 160
    return RTP_HEADER.pack(0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    """An RTCP receiver report without report blocks (RFC 3550 6.4.2; PT 201)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


class Phone:
    """One UDP socket standing for a party's media endpoint."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def send(self, port: int, data: bytes) -> None:
        self.sock.sendto(data, (self.host, port))

    def pending(self) -> list[tuple[bytes, Any]]:
        """Everything queued on the socket right now."""
        packets = []
        while True:
            try:
                packets.append(self.sock.recvfrom(4096))
            except BlockingIOError:
                return packets

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, Any]:
        """The next datagram and its source; TimeoutError when none comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                return self.sock.recvfrom(4096)
            except BlockingIOError:
                if loop.time() > deadline:
                    raise TimeoutError(f"nothing received on port {self.port}") from None
                await asyncio.sleep(0.002)

    def close(self) -> None:
        self.sock.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Yield to the loop until ``predicate()`` holds; TimeoutError otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)


def ipv6_loopback_available() -> bool:
    """Whether this kernel can bind a UDP socket on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_even_range(pairs: int, host: str = "127.0.0.1", start: int = 25000) -> int:
    """First even port from ``start`` with ``2 * pairs`` consecutive bindable ports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    base = start
    while base < 30000:
        held = []
        try:
            for port in range(base, base + 2 * pairs):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            base += 2 * pairs
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free port range for the test")
