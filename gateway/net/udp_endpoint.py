"""A SIP UDP socket read by the gateway itself, so each datagram's wait is known.

The kernel stamps every datagram with its arrival time (``SO_TIMESTAMPNS``,
Linux socket(7)); reading the socket with ``recvmsg`` gives that stamp with
the data, and the difference to the time it is read is how long the message
waited in the socket's queue. That wait is what a peer sees as the
gateway's slowness: past T1 (RFC 3261 17.1.1.2) it retransmits, and an
overloaded gateway then drowns in retransmissions. The event loop's own
lag does not show it: the loop reads a bounded batch from each socket per
turn, so its turns stay short while a queue of messages waits behind them.
Overload control (:mod:`gateway.calls.overload`) refuses a new call whose
INVITE waited too long.

Where the stamp is unavailable (not Linux), every wait reads 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
Received = Callable[[bytes, Address, float], None]
"""Called with (datagram, source address, seconds it waited in the socket's queue)."""

SO_TIMESTAMPNS = 35
"""Linux ``SO_TIMESTAMPNS`` (and ``SCM_TIMESTAMPNS``) on its generic ABI (x86-64, arm64);
Python's socket module does not name it."""
_TIMESPEC = struct.Struct("@qq")
"""struct timespec on a 64-bit Linux: seconds, nanoseconds."""
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)
MAX_DATAGRAM = 65535
READS_PER_WAKEUP = 64
"""Datagrams read before the loop gets its turn back (its other sockets and timers)."""


def stamp_arrivals(sock: socket.socket) -> bool:
    """Ask the kernel to stamp ``sock``'s datagrams with their arrival; False if it cannot."""
    if not sys.platform.startswith("linux"):
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


class UdpEndpoint:
    """One bound UDP socket: datagrams in through ``received``, out through :meth:`sendto`."""

    def __init__(self, sock: socket.socket, received: Received) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._received = received
        self._stamped = stamp_arrivals(sock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_drops = 0
        """Datagrams not sent because the socket's send buffer was full."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        received = self._received
        stamped = self._stamped
        for _ in range(READS_PER_WAKEUP):
            try:
                if stamped:
                    data, ancillary, _, source = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY_BYTES)
                else:
                    data, source = sock.recvfrom(MAX_DATAGRAM)
                    ancillary = []
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error reported on the socket, and the like
                log.debug("UDP socket error: %s", exc)
                continue
            waited = 0.0
            if ancillary:
                arrived = arrival_s(ancillary)
                if arrived is not None:
                    waited = max(0.0, time.time() - arrived)
            received(data, (source[0], source[1]), waited)

    def sendto(self, data: bytes, dest: Address) -> None:
        """Send now or not at all: UDP SIP is retransmitted by its transactions (RFC 3261 17)."""
        try:
            self.sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
            if self.send_drops == 1 or self.send_drops % 1000 == 0:
                log.warning("SIP UDP send buffer full: %d datagrams dropped", self.send_drops)
        except OSError as exc:
            log.debug("UDP send to %s:%s failed: %s", dest[0], dest[1], exc)

    def getsockname(self) -> tuple:
        return self.sock.getsockname()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()
