"""A SIP UDP socket read by the gateway itself, so each datagram's wait is known.

The kernel stamps every datagram with its arrival time (``SO_TIMESTAMPNS``,
Linux socket(7)); reading the socket with ``recvmsg`` gives that stamp with
the data, and the difference to the time it is read is how long the message
waited in the socket's queue. That wait is what a peer sees as the
gateway's slowness: past T1 (RFC 3261 17.1.1.2) it retransmits, and an
overloaded gateway then drowns in retransmissions. The event loop's own
lag does not show it: the loop reads a bounded batch from each socket per
turn, so its turns stay short while a queue of messages waits behind them.
Overload control (:mod:`gateway.calls.overload`) refuses new calls while
messages keep waiting too long.

Where the stamp is unavailable (not Linux on an architecture whose socket
option numbers are known here, or an event loop without ``add_reader``,
such as Windows' proactor, where the loop's datagram transport is used
instead) every wait reads 0. The stamp and the time of reading are both
wall-clock time, so a clock step can make a wait look absurd: waits beyond
:data:`PLAUSIBLE_WAIT_S` are taken as unknown (0).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Address = tuple[str, int]
Received = Callable[[bytes, Address, float], None]
"""Called with (datagram, source address, seconds it waited in the socket's queue)."""

SO_TIMESTAMPNS = 35
"""Linux ``SO_TIMESTAMPNS`` (and ``SCM_TIMESTAMPNS``) in the kernel's generic socket ABI;
Python's socket module does not name it."""
GENERIC_ABI_MACHINES = frozenset({"x86_64", "amd64", "aarch64", "arm64", "i386", "i686", "riscv64"})
"""Machines whose socket option numbers are the generic ones (sparc, parisc, alpha and
mips number them differently)."""
_TIMESPEC = struct.Struct("@ll")
"""The kernel's (old) struct timespec: seconds and nanoseconds as C longs."""
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)
MAX_DATAGRAM = 65535
READS_PER_WAKEUP = 64
"""Datagrams read before the loop gets its turn back (its other sockets and timers)."""
BUFFER_BYTES = 4 * 1024 * 1024
"""Receive and send buffer of a SIP UDP socket: room for bursts of a loaded gateway."""
PLAUSIBLE_WAIT_S = 32.0
"""Longest wait taken at face value (64 x T1, RFC 3261 17.1.1.2); longer means a clock step."""


def stamp_arrivals(sock: socket.socket) -> bool:
    """Ask the kernel to stamp ``sock``'s datagrams with their arrival; False if it cannot."""
    if not sys.platform.startswith("linux") or platform.machine() not in GENERIC_ABI_MACHINES:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def arrival_s(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's arrival stamp (CLOCK_REALTIME seconds) in a ``recvmsg`` ancillary list."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds * 1e-9
    return None


def waited_s(arrived: float | None, now: float) -> float:
    """Seconds between the arrival stamp and ``now``; 0 when unknown or implausible."""
    if arrived is None:
        return 0.0
    wait = now - arrived
    return wait if 0.0 < wait <= PLAUSIBLE_WAIT_S else 0.0


class _Fallback(asyncio.DatagramProtocol):
    """The loop's own datagram transport, for loops that cannot watch a socket (no stamps)."""

    def __init__(self, received: Received) -> None:
        self._received = received

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._received(data, (addr[0], addr[1]), 0.0)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class UdpEndpoint:
    """One bound UDP socket: datagrams in through ``received``, out through :meth:`sendto`."""

    def __init__(self, sock: socket.socket, received: Received) -> None:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
        self.sock = sock
        self._received = received
        self._stamped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.send_drops = 0
        """Datagrams not sent because the socket's send buffer was full."""

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.add_reader(self.sock.fileno(), self._readable)
        except NotImplementedError:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Fallback(self._received), sock=self.sock
            )
            return
        self._loop = loop
        self._stamped = stamp_arrivals(self.sock)

    def _readable(self) -> None:
        sock = self.sock
        received = self._received
        stamped = self._stamped
        for _ in range(READS_PER_WAKEUP):
            if self._loop is None:
                return  # closed by a handler of this batch
            try:
                if stamped:
                    data, ancillary, _, source = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY_BYTES)
                    wait = waited_s(arrival_s(ancillary), time.time())
                else:
                    data, source = sock.recvfrom(MAX_DATAGRAM)
                    wait = 0.0
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error reported on the socket, and the like
                log.debug("UDP socket error: %s", exc)
                return
            received(data, (source[0], source[1]), wait)

    def sendto(self, data: bytes, dest: Address) -> None:
        """Send now or not at all: UDP SIP is retransmitted by its transactions (RFC 3261 17)."""
        if self._transport is not None:
            self._transport.sendto(data, dest)
            return
        try:
            self.sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
            if self.send_drops == 1 or self.send_drops % 1000 == 0:
                log.warning("SIP UDP send buffer full: %d datagrams dropped", self.send_drops)
        except OSError as exc:
            log.debug("UDP send to %s:%s failed: %s", dest[0], dest[1], exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            return
        if self._loop is not None:
            # typed to return a bool, but uvloop's returns None: called untyped, or the
            # compiled module's check of the result refuses it
            loop: Any = self._loop
            loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()
