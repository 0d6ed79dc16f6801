"""The relay's per-packet path: one datagram protocol per media socket.

A receiver owns one socket facing one party. Its first packet latches the
party's source address (symmetric RTP, RFC 4961: the party may sit behind
NAT, so where it sends from is where it receives); later packets from any
other source are dropped and counted. Each packet leaves through the socket
facing the other party, to a destination precomputed on the receiver by
:meth:`~gateway.media.session.MediaSide.refresh_routes` whenever a latch or
an SDP changes, so the path below reads attributes and makes one system call.

RTP and RTCP are told apart inline by the first two octets (RFC 7983 7,
RFC 5761 4; see :mod:`gateway.media.rtp`), without a function call.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.media.session import MediaSide

log = logging.getLogger(__name__)

Address = tuple[Any, ...]
"""A socket address as the event loop gives it: (host, port) or (host, port, flow, scope)."""
Tap = Callable[[bytes, float], None]
"""Hears each RTP packet a party sends, after it is relayed: ``(packet, arrival)``, arrival in
:func:`time.monotonic` seconds."""
SendTo = Callable[[bytes, Address], None]


def discard(data: bytes, addr: Address) -> None:
    """Send target of a receiver that has no route yet."""


class Receiver(asyncio.DatagramProtocol):
    """A socket's protocol: latching and the precomputed route toward the other party.

    Packets leave through the plain socket's ``sendto``: a full send buffer
    raises BlockingIOError and the packet is dropped (late RTP is useless),
    where the transport's ``sendto`` would queue it and resolve the address
    through the loop's cache on every call.
    """

    __slots__ = (
        "closed",
        "dest",
        "errors",
        "send",
        "send_errors",
        "side",
        "sock",
        "source",
        "transport",
    )

    def __init__(self, side: MediaSide, sock: socket.socket) -> None:
        self.side: MediaSide | None = side
        """The side this socket faces; None once released."""
        self.sock = sock
        self.source: Address | None = None
        self.dest: Address | None = None
        self.send: SendTo = discard
        self.errors = 0
        self.send_errors = 0
        self.transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def release(self) -> None:
        """Let go of the transport, the side and the routes once the socket is closed.

        The receiver and its transport, and the receiver and its side, refer to
        each other: left as they are, every ended call would leave those cycles
        (sockets, transports, futures, statistics) for the cyclic collector, whose
        full passes then stall the event loop for tens of milliseconds.
        """
        self.transport = None
        self.closed = None
        self.side = None
        self.send = discard
        self.dest = None

    def error_received(self, exc: Exception) -> None:
        """A receive error reported by the socket (ICMP unreachable and the like)."""
        self.errors += 1
        if self.side is not None:  # None once released
            log.debug("media socket %s: %s", self.side.describe(), exc)

    def admit(self, addr: Address) -> bool:
        """First packet from ``addr`` on this socket: latch it, or count it as foreign."""
        side = self.side
        if side is None or side.rejected:  # released, or a rejected stream
            return False
        if self.source is None:
            self.source = addr
            side.refresh_routes()
            return True
        side.stats.dropped_foreign += 1
        return False

    def fault(self, exc: Exception) -> None:
        """A packet this socket could not handle; the socket and the call carry on."""
        self.errors += 1
        if self.side is not None and (self.errors == 1 or self.errors % 10000 == 0):
            log.warning(
                "media socket %s: packet not relayed (%d so far): %r",
                self.side.describe(),
                self.errors,
                exc,
            )


class RtpReceiver(Receiver):
    """The RTP socket facing one party: the relay's hot path."""

    __slots__ = ("out_stats", "rtcp_dest", "rtcp_send", "tap", "update")

    def __init__(self, side: MediaSide, sock: socket.socket) -> None:
        super().__init__(side, sock)
        self.update = side.stats.update
        self.out_stats = side.stats
        self.rtcp_dest: Address | None = None
        self.rtcp_send: SendTo = discard
        self.tap: Tap | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            if addr != self.source and not self.admit(addr):
                return
            if data[0] >> 6 != 2:
                self.other(data)
                return
            if 191 < data[1] < 224:
                self.rtcp(data)
                return
            dest = self.dest
            if dest is not None:
                try:
                    self.send(data, dest)
                except OSError:
                    self.send_errors += 1
                else:
                    out = self.out_stats
                    out.packets_out += 1
                    out.bytes_out += len(data)
            arrival = monotonic()
            self.update(data, arrival)
            tap = self.tap
            if tap is not None:
                tap(data, arrival)
        except (IndexError, struct.error):
            return  # empty, or shorter than an RTP header: not accounted
        except Exception as exc:
            self.fault(exc)

    def release(self) -> None:
        super().release()
        self.rtcp_send = discard
        self.rtcp_dest = None
        self.tap = None

    def rtcp(self, data: bytes) -> None:
        """RTCP multiplexed on the RTP port (RFC 5761 4): onward on the other side's RTCP route."""
        dest = self.rtcp_dest
        if dest is not None:
            try:
                self.rtcp_send(data, dest)
            except OSError:
                self.send_errors += 1

    def other(self, data: bytes) -> None:
        """Not RTP or RTCP (STUN, DTLS, ZRTP; RFC 7983): relayed untouched, not accounted."""
        dest = self.dest
        if dest is not None:
            try:
                self.send(data, dest)
            except OSError:
                self.send_errors += 1


class RtcpReceiver(Receiver):
    """The RTCP socket facing one party (RFC 3550 11)."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            if addr != self.source and not self.admit(addr):
                return
            dest = self.dest
            if dest is not None and data:
                self.send(data, dest)
        except OSError:
            self.send_errors += 1
        except Exception as exc:
            self.fault(exc)
