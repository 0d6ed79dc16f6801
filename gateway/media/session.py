"""A call's media session: streams, their two sides, and what each party declared.

Each stream (one m= line) has an A side facing the caller and a B side facing
the callee; each side owns an RTP and an RTCP socket. What a party declared
in its SDP (RFC 4566 c= and m=, RFC 3605 a=rtcp, RFC 5761 a=rtcp-mux) decides
where packets toward it go; :meth:`MediaSide.refresh_routes` turns that, the
latch and the socket state into the destinations the other side's receivers
use per packet.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

from gateway.media.forward import Address, RtcpReceiver, RtpReceiver, SendTo, Tap, discard
from gateway.media.stats import StreamStats
from gateway.sip.ip import ip_literal

if TYPE_CHECKING:
    from gateway.media.player import Playback

SIDES = ("a", "b")


def media_address(address: str, family: socket.AddressFamily, *, dual_stack: bool = False) -> str:
    """The SDP connection address as the relay's sockets send to it.

    IPv4-mapped IPv6 addresses become plain IPv4 on an IPv4 relay; IPv4
    addresses become IPv4-mapped on a dual-stack IPv6 relay (bound to ``::``,
    RFC 4291 2.5.5.2). Unspecified addresses (hold) pass in either family.
    ValueError, with the reason, for anything the sockets cannot reach.
    """
    try:
        ip = ip_literal(address)
    except ValueError:
        raise ValueError(f"media address must be an IP literal, got {address!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return str(ip)
    if family == socket.AF_INET6:
        if ip.version == 6:
            return str(ip)
        if dual_stack:
            return f"::ffff:{ip}"
        raise ValueError(f"media address {address} is IPv4; the relay runs on IPv6")
    if ip.version == 4:
        return str(ip)
    raise ValueError(f"media address {address} is IPv6; the relay runs on IPv4")


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """Where a party receives one stream, from its SDP (c=, m=, a=rtcp, a=rtcp-mux)."""

    address: str
    rtp_port: int
    rtcp_port: int | None
    rtcp_mux: bool

    @property
    def rejected(self) -> bool:
        """Port 0: the stream is rejected or disabled (RFC 3264 6, 8.2)."""
        return self.rtp_port == 0

    @property
    def hold(self) -> bool:
        """Unspecified connection address: send nothing (RFC 3264 8.4)."""
        return ip_literal(self.address).is_unspecified

    def rtp_address(self) -> Address:
        return (self.address, self.rtp_port)

    def rtcp_address(self) -> Address:
        """Where RTCP goes without rtcp-mux: a=rtcp (RFC 3605), else RTP port + 1 (RFC 3550 11)."""
        port = self.rtcp_port if self.rtcp_port else self.rtp_port + 1
        return (self.address, port)


class MediaSide:
    """One stream's sockets facing one party, what that party declared, and its counters."""

    def __init__(
        self,
        session_id: str,
        index: int,
        name: str,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        stats: StreamStats,
    ) -> None:
        self.session_id = session_id
        self.index = index
        self.name = name
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.rtp_port: int = rtp_sock.getsockname()[1]
        self.rtcp_port: int = rtcp_sock.getsockname()[1]
        self.counters = stats
        """The side's statistics as the receivers keep them; :attr:`stats` brings them up
        to date with the native forwarder first."""
        self.remote: RemoteMedia | None = None
        self.rtp = RtpReceiver(self, rtp_sock)
        self.rtcp = RtcpReceiver(self, rtcp_sock)
        self.peer: MediaSide | None = self
        """The side facing the other party (None once the session is closed)."""
        self.open = True
        self.announcing: bool = False
        self.playback: Playback | None = None
        """The announcement that owns this side's stream now (:mod:`gateway.media.player`)."""

    def describe(self) -> str:
        return f"{self.session_id}/{self.index}{self.name}:{self.rtp_port}"

    @property
    def stats(self) -> StreamStats:
        """The side's statistics, up to date: what the party sent (this side's receiver)
        and what was sent to it (the other side's)."""
        self.rtp.sync()
        peer = self.peer
        if peer is not None and peer is not self:
            peer.rtp.sync()
        return self.counters

    @property
    def rejected(self) -> bool:
        return self.remote is not None and self.remote.rejected

    @property
    def hold(self) -> bool:
        return self.remote is not None and self.remote.hold

    @property
    def rtcp_mux(self) -> bool:
        return self.remote is not None and self.remote.rtcp_mux

    @property
    def latched_rtp(self) -> Address | None:
        """The source this side's RTP socket accepts, None before the first packet."""
        return self.rtp.source

    @property
    def latched_rtcp(self) -> Address | None:
        return self.rtcp.source

    def local_ports(self) -> tuple[int, int | None]:
        """(RTP port, RTCP port or None when this party multiplexes RTCP)."""
        return self.rtp_port, None if self.rtcp_mux else self.rtcp_port

    def set_remote(self, remote: RemoteMedia) -> None:
        """Take the party's new description; a moved address un-latches (re-INVITE)."""
        previous = self.remote
        self.remote = remote
        if previous is None or previous.rtp_address() != remote.rtp_address():
            self.rtp.unlatch()
        if previous is None or previous.rtcp_address() != remote.rtcp_address():
            self.rtcp.source = None
        self.refresh_routes()

    def rtp_destination(self) -> Address | None:
        """Where RTP toward this party goes now: the latched source, else the SDP address."""
        sdp = self.remote.rtp_address() if self.remote else None
        return self._destination(self.rtp.source, sdp)

    def announce_destination(self) -> Address | None:
        """Where an announcement toward this party goes: as :meth:`rtp_destination`.

        Unaffected by :attr:`announcing`, which only takes the relayed route away.
        """
        return self.rtp_destination()

    def set_announcing(self, flag: bool) -> None:
        """While ``flag`` holds, RTP relayed from the other party is dropped, not sent here.

        The announcement player then owns this party's incoming stream (one
        SSRC and sequence space per source, RFC 3550 5.1). RTCP keeps its
        route; non-RTP packets on the RTP port (STUN, DTLS) share the dropped
        route.
        """
        self.announcing = flag
        self.refresh_routes()

    def rtcp_route(self) -> tuple[SendTo, Address | None]:
        """The socket and address RTCP toward this party leaves by (RFC 5761 for mux)."""
        if self.rtcp_mux:
            return self._sender(self.rtp_sock), self.rtp_destination()
        sdp = self.remote.rtcp_address() if self.remote else None
        return self._sender(self.rtcp_sock), self._destination(self.rtcp.source, sdp)

    def _destination(self, latched: Address | None, sdp: Address | None) -> Address | None:
        if self.rejected or self.hold or not self.open:
            return None
        return latched if latched is not None else sdp

    def _sender(self, sock: socket.socket) -> SendTo:
        # socket.sendto is overloaded (with and without flags); the relay passes no flags
        return cast(SendTo, sock.sendto) if self.open else discard

    def refresh_routes(self) -> None:
        """Recompute, on the other side's receivers, how packets reach this party."""
        other = self.peer
        if other is None:
            return  # closed: nothing is relayed any more
        dest = None if self.announcing else self.rtp_destination()
        other.rtp.send = self._sender(self.rtp_sock)
        other.rtp.dest = dest
        flow = self.rtp.flow
        # the flow socket is connected to the latched source: it sends there only
        other.rtp.flow_send = flow.send if flow is not None and dest == self.rtp.source else None
        rtcp_send, rtcp_dest = self.rtcp_route()
        other.rtp.rtcp_send = rtcp_send
        other.rtp.rtcp_dest = rtcp_dest
        other.rtcp.send = rtcp_send
        other.rtcp.dest = rtcp_dest
        other.rtp.reroute()

    def receivers(self) -> tuple[RtpReceiver, RtcpReceiver]:
        return self.rtp, self.rtcp

    def release(self) -> None:
        """Break the references between the closed side, its peer and its receivers, so
        reference counting frees them (see :meth:`Receiver.release`). A playback still
        running lets go of the side at its next packet time, when it finds it closed."""
        self.peer = None
        self.playback = None
        for receiver in self.receivers():
            receiver.release()


class MediaStream:
    """One m= line of a call: its A side (toward the caller) and B side (toward the callee)."""

    def __init__(self, index: int, a: MediaSide, b: MediaSide) -> None:
        self.index = index
        self.a = a
        self.b = b
        a.peer = b
        b.peer = a
        a.rtp.out_stats = b.counters  # what A sends reaches B
        b.rtp.out_stats = a.counters

    def side(self, name: str) -> MediaSide:
        if name == "a":
            return self.a
        if name == "b":
            return self.b
        raise ValueError(f"media side must be 'a' or 'b', got {name!r}")

    def sides(self) -> tuple[MediaSide, MediaSide]:
        return self.a, self.b

    def set_clock_rate(self, clock_rate: int) -> None:
        """The RTP clock of the stream's codec, for jitter in milliseconds (RFC 3550 A.8)."""
        if clock_rate <= 0:
            raise ValueError(f"RTP clock rate must be positive, got {clock_rate}")
        for side in self.sides():
            side.rtp.take_lane_back()  # the forwarder's statistics run at the old clock
            try:
                side.counters.set_clock_rate(clock_rate)
            finally:
                side.rtp.reroute()


class MediaSession:
    """A call's media: one :class:`MediaStream` per m= line, each anchored on four ports."""

    def __init__(
        self,
        session_id: str,
        streams: list[MediaStream],
        family: socket.AddressFamily,
        *,
        dual_stack: bool = False,
    ) -> None:
        self.session_id = session_id
        self.streams = streams
        self.created_at = monotonic()
        self.closed = False
        self._family = family
        self._dual_stack = dual_stack

    def _stream(self, index: int) -> MediaStream:
        if not 0 <= index < len(self.streams):
            raise IndexError(
                f"session {self.session_id} has {len(self.streams)} streams, no stream {index}"
            )
        return self.streams[index]

    def _side(self, side: str, index: int) -> MediaSide:
        return self._stream(index).side(side)

    def local_ports(self, side: str) -> list[tuple[int, int | None]]:
        """Per stream, the (RTP, RTCP or None under rtcp-mux) ports facing ``side``.

        These are what the SDP sent *to* that side advertises.
        """
        return [stream.side(side).local_ports() for stream in self.streams]

    def set_remote(
        self,
        side: str,
        index: int,
        address: str,
        rtp_port: int,
        rtcp_port: int | None,
        rtcp_mux: bool,
    ) -> None:
        """Where ``side`` receives stream ``index``, from that side's SDP.

        ``rtp_port`` 0 rejects the stream (traffic dropped both ways on that
        side); an unspecified ``address`` (0.0.0.0, ::) is hold: nothing is
        sent toward the side, which may still send and latch. A changed
        address or port resets the latch so the party's new source can latch.
        Raises ValueError for an address that is not an IP literal of the
        relay's family, or a port out of range.
        """
        target = self._side(side, index)
        if not 0 <= rtp_port <= 65535:
            raise ValueError(f"RTP port out of range: {rtp_port}")
        if rtcp_port is not None and not 0 <= rtcp_port <= 65535:
            raise ValueError(f"RTCP port out of range: {rtcp_port}")
        host = media_address(address, self._family, dual_stack=self._dual_stack)
        target.set_remote(RemoteMedia(host, rtp_port, rtcp_port, rtcp_mux))

    def set_tap(self, side: str, fn: Tap | None, index: int = 0) -> None:
        """Call ``fn(packet, arrival)`` with each RTP packet received from ``side`` on stream
        ``index`` (arrival: :func:`time.monotonic` when the relay received it).

        The packet is relayed before ``fn`` runs; ``fn`` must not block. None removes it.
        """
        self._side(side, index).rtp.set_tap(fn)

    def set_clock_rate(self, index: int, clock_rate: int) -> None:
        """The RTP clock rate of stream ``index`` (default 8000), for jitter_ms."""
        self._stream(index).set_clock_rate(clock_rate)

    def stats(self) -> dict[str, Any]:
        """Per side, the counters of stream 0 (the first m= line).

        ``{"a": {...}, "b": {...}}`` where side "a" counts what came from and
        went to the caller. Sessions with more streams add ``"streams"``: one
        such dict per stream, in m= line order.
        """
        first = self.streams[0]
        result: dict[str, Any] = {"a": first.a.stats.to_dict(), "b": first.b.stats.to_dict()}
        if len(self.streams) > 1:
            result["streams"] = [
                {"a": stream.a.stats.to_dict(), "b": stream.b.stats.to_dict()}
                for stream in self.streams
            ]
        return result

    @property
    def last_activity(self) -> float:
        """Monotonic time of the last RTP packet from either party, else of creation.

        Same clock as ``time.monotonic()`` and the event loop's ``time()``.
        """
        last = self.created_at
        for stream in self.streams:
            for side in stream.sides():
                at = side.rtp.last_packet_at()
                if at is not None and at > last:
                    last = at
        return last

    def idle_for(self, now: float) -> float:
        """Seconds without RTP from either party at monotonic time ``now``."""
        return max(0.0, now - self.last_activity)

    def sides(self) -> Iterator[MediaSide]:
        for stream in self.streams:
            yield stream.a
            yield stream.b

    def __repr__(self) -> str:
        ports = [(s.index, s.name, s.rtp_port) for s in self.sides()]
        return f"MediaSession({self.session_id!r}, ports={ports})"
