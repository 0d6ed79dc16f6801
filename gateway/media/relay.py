"""The anchored RTP relay: per call and stream, one socket pair facing each party.

RTP that party A sends to the A-side socket leaves through the B-side socket
toward party B, and the reverse. The relay sends from the port it receives
on (symmetric RTP, RFC 4961), so a party behind NAT gets its media back
through the binding it opened. The first packet on a side's socket latches
its source address, which may differ from the SDP address (NAT); packets
from any other source are then dropped and counted. Until a side latches,
packets toward it go to the address in its SDP.

RTCP runs on the port above RTP (RFC 3550 11) or, when a side uses rtcp-mux,
on its RTP port, told apart by the payload-type octet (RFC 5761 4). RTCP
from one side reaches the other on whatever port that side uses.

A port of 0 in a side's SDP rejects the stream (RFC 3264 6): nothing is sent
to or taken from that side. An unspecified connection address (0.0.0.0,
RFC 3264 8.4) puts the side on hold: nothing is sent to it while it may
still send.

Every call has its own sockets, so no packet of one call can reach another.

The per-packet path is :meth:`_RtpReceiver.datagram_received`: compare the
source with the latched address, account the header in
:class:`~gateway.media.stats.StreamStats`, send. Routes are precomputed on
the receivers whenever a latch, an SDP or congestion changes, so the packet
path reads attributes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import monotonic
from typing import Any

from gateway.media.ports import PortPool
from gateway.media.stats import StreamStats

log = logging.getLogger(__name__)

SIDES = ("a", "b")

Address = tuple[Any, ...]
"""A socket address as the event loop gives it: (host, port) or (host, port, flow, scope)."""
Tap = Callable[[bytes], None]
SendTo = Callable[[bytes, Address], None]

_CLOSE_WAIT_S = 1.0
"""How long close waits for the loop to close a session's sockets before releasing ports."""


def _discard(data: bytes, addr: Address) -> None:
    """Send target of a receiver that has no route yet."""


class _Receiver(asyncio.DatagramProtocol):
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
        self.side = side
        self.sock = sock
        self.source: Address | None = None
        self.dest: Address | None = None
        self.send: SendTo = _discard
        self.errors = 0
        self.send_errors = 0
        self.transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        """A receive error reported by the socket (ICMP unreachable and the like)."""
        self.errors += 1
        log.debug("media socket %s: %s", self.side.describe(), exc)

    def admit(self, addr: Address) -> bool:
        """First packet from ``addr`` on this socket: latch it, or count it as foreign."""
        side = self.side
        if side.rejected:
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
        if self.errors == 1 or self.errors % 10000 == 0:
            log.warning(
                "media socket %s: packet not relayed (%d so far): %r",
                self.side.describe(),
                self.errors,
                exc,
            )


class _RtpReceiver(_Receiver):
    """The RTP socket facing one party: the relay's hot path."""

    __slots__ = ("out_stats", "rtcp_dest", "rtcp_send", "tap", "update")

    def __init__(self, side: MediaSide, sock: socket.socket) -> None:
        super().__init__(side, sock)
        self.update = side.stats.update
        self.out_stats = side.stats
        self.rtcp_dest: Address | None = None
        self.rtcp_send: SendTo = _discard
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
            self.update(data, monotonic())
            tap = self.tap
            if tap is not None:
                tap(data)
        except (IndexError, struct.error):
            return  # empty, or shorter than an RTP header: not accounted
        except Exception as exc:
            self.fault(exc)

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


class _RtcpReceiver(_Receiver):
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
        return ipaddress.ip_address(self.address).is_unspecified

    def rtp_address(self) -> Address:
        return (self.address, self.rtp_port)

    def rtcp_address(self) -> Address:
        """Where RTCP goes without rtcp-mux: a=rtcp, else RTP port + 1 (RFC 3605 2.1)."""
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
        self.stats = stats
        self.remote: RemoteMedia | None = None
        self.rtp = _RtpReceiver(self, rtp_sock)
        self.rtcp = _RtcpReceiver(self, rtcp_sock)
        self.peer: MediaSide = self
        self.open = True

    def describe(self) -> str:
        return f"{self.session_id}/{self.index}{self.name}:{self.rtp_port}"

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
            self.rtp.source = None
        if previous is None or previous.rtcp_address() != remote.rtcp_address():
            self.rtcp.source = None
        self.refresh_routes()

    def rtp_destination(self) -> Address | None:
        """Where RTP toward this party goes now: the latched source, else the SDP address."""
        sdp = self.remote.rtp_address() if self.remote else None
        return self._destination(self.rtp.source, sdp)

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
        return sock.sendto if self.open else _discard

    def refresh_routes(self) -> None:
        """Recompute, on the other side's receivers, how packets reach this party."""
        other = self.peer
        other.rtp.send = self._sender(self.rtp_sock)
        other.rtp.dest = self.rtp_destination()
        rtcp_send, rtcp_dest = self.rtcp_route()
        other.rtp.rtcp_send = rtcp_send
        other.rtp.rtcp_dest = rtcp_dest
        other.rtcp.send = rtcp_send
        other.rtcp.dest = rtcp_dest

    def receivers(self) -> tuple[_RtpReceiver, _RtcpReceiver]:
        return self.rtp, self.rtcp


class MediaStream:
    """One m= line of a call: its A side (toward the caller) and B side (toward the callee)."""

    def __init__(self, index: int, a: MediaSide, b: MediaSide) -> None:
        self.index = index
        self.a = a
        self.b = b
        a.peer = b
        b.peer = a
        a.rtp.out_stats = b.stats
        b.rtp.out_stats = a.stats

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
        self.a.stats.set_clock_rate(clock_rate)
        self.b.stats.set_clock_rate(clock_rate)


class MediaSession:
    """A call's media: one :class:`MediaStream` per m= line, each anchored on four ports."""

    def __init__(self, session_id: str, streams: list[MediaStream], family: int) -> None:
        self.session_id = session_id
        self.streams = streams
        self.created_at = monotonic()
        self.closed = False
        self._family = family

    def _side(self, side: str, index: int) -> MediaSide:
        if not 0 <= index < len(self.streams):
            raise IndexError(
                f"session {self.session_id} has {len(self.streams)} streams, no stream {index}"
            )
        return self.streams[index].side(side)

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
        target.set_remote(RemoteMedia(self._address(address), rtp_port, rtcp_port, rtcp_mux))

    def _address(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"media address must be an IP literal, got {address!r}") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        wanted = 6 if self._family == socket.AF_INET6 else 4
        if ip.version != wanted and not ip.is_unspecified:
            raise ValueError(
                f"media address {address} is IPv{ip.version}; the relay runs on IPv{wanted}"
            )
        return str(ip)

    def set_tap(self, side: str, fn: Tap | None, index: int = 0) -> None:
        """Call ``fn(packet)`` with each RTP packet received from ``side`` on stream ``index``.

        The packet is relayed before ``fn`` runs; ``fn`` must not block. None removes it.
        """
        self._side(side, index).rtp.tap = fn

    def set_clock_rate(self, index: int, clock_rate: int) -> None:
        """The RTP clock rate of stream ``index`` (default 8000), for jitter_ms."""
        self._side("a", index)
        self.streams[index].set_clock_rate(clock_rate)

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
                at = side.stats.last_packet_at
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


class MediaRelay:
    """Binds call media sessions on ``host`` with ports from ``[port_min, port_max]``.

    ``recv_buffer``/``send_buffer`` set SO_RCVBUF/SO_SNDBUF on every media
    socket when given (the kernel default otherwise).
    """

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        recv_buffer: int | None = None,
        send_buffer: int | None = None,
    ) -> None:
        self.host = host
        self.pool = PortPool(host, port_min, port_max)
        self._loop = loop
        self._recv_buffer = recv_buffer
        self._send_buffer = send_buffer
        self._sessions: dict[str, MediaSession] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    @property
    def sessions(self) -> int:
        """Active sessions."""
        return len(self._sessions)

    def active_sessions(self) -> list[MediaSession]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> MediaSession | None:
        return self._sessions.get(session_id)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def create_session(self, session_id: str, streams: int = 1) -> MediaSession:
        """Bind both sides of ``streams`` streams; PortPoolExhausted when ports run out."""
        if streams < 1:
            raise ValueError(f"a media session needs at least one stream, got {streams}")
        if session_id in self._sessions:
            raise ValueError(f"media session {session_id!r} already exists")
        loop = self._get_loop()
        sides: list[MediaSide] = []
        try:
            stream_list: list[MediaStream] = []
            for index in range(streams):
                pair: list[MediaSide] = []
                for name in SIDES:
                    rtp_sock, rtcp_sock = self.pool.bind_pair()
                    side = MediaSide(session_id, index, name, rtp_sock, rtcp_sock, StreamStats())
                    sides.append(side)
                    pair.append(side)
                stream_list.append(MediaStream(index, pair[0], pair[1]))
            for side in sides:
                for receiver in side.receivers():
                    self._tune(receiver.sock)
                    await self._start_reading(loop, receiver)
        except BaseException:
            await self._teardown(sides)
            raise
        session = MediaSession(session_id, stream_list, self.pool.family)
        for side in sides:
            side.refresh_routes()
        self._sessions[session_id] = session
        return session

    def _tune(self, sock: socket.socket) -> None:
        if self._recv_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        if self._send_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)

    async def close_session(self, session: MediaSession) -> None:
        """Close the session's sockets and return its ports; closing twice is harmless."""
        if session.closed:
            return
        session.closed = True
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        await self._teardown(list(session.sides()))

    async def _start_reading(self, loop: asyncio.AbstractEventLoop, receiver: _Receiver) -> None:
        """Have the loop deliver the receiver's socket's datagrams to it."""
        transport, _ = await loop.create_datagram_endpoint(lambda: receiver, sock=receiver.sock)
        receiver.transport = transport
        receiver.closed = loop.create_future()

    async def _teardown(self, sides: list[MediaSide]) -> None:
        """Close sockets, wait for the loop to let go of them, release their ports."""
        for side in sides:
            side.open = False
            side.rtp.tap = None
        for side in sides:
            side.refresh_routes()
        waits: list[asyncio.Future[None]] = []
        for side in sides:
            for receiver in side.receivers():
                if receiver.transport is not None:
                    receiver.transport.close()
                    if receiver.closed is not None:
                        waits.append(receiver.closed)
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), _CLOSE_WAIT_S)
        for side in sides:
            side.rtp_sock.close()
            side.rtcp_sock.close()
            self.pool.release(side.rtp_port)

    async def close(self) -> None:
        """Stop idle watchers and close every session."""
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in list(self._sessions.values()):
            await self.close_session(session)

    def start_idle_watch(
        self,
        timeout: float,
        on_idle: Callable[[MediaSession], None],
        interval: float = 1.0,
    ) -> asyncio.Task[None]:
        """Run :func:`watch_idle` on this relay until :meth:`close` (or the task is cancelled)."""
        task = self._get_loop().create_task(watch_idle(self, timeout, on_idle, interval))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return task


async def watch_idle(
    relay: MediaRelay,
    timeout: float,
    on_idle: Callable[[MediaSession], None],
    interval: float = 1.0,
    *,
    clock: Callable[[], float] = monotonic,
) -> None:
    """Call ``on_idle(session)`` once when a session has had no RTP for ``timeout`` seconds.

    A session that becomes active again is watched afresh. Runs until
    cancelled. ``clock`` is the monotonic clock the sessions' times are on.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("idle timeout and interval must be positive")
    reported: set[MediaSession] = set()
    while True:
        await asyncio.sleep(interval)
        now = clock()
        active = relay.active_sessions()
        reported.intersection_update(active)
        for session in active:
            if session.idle_for(now) < timeout:
                reported.discard(session)
            elif session not in reported:
                reported.add(session)
                try:
                    on_idle(session)
                except Exception:
                    log.exception("idle handler failed for media session %s", session.session_id)
