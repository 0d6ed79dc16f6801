"""The anchored RTP relay: binds call media sessions and watches them for silence.

RTP that party A sends to the A-side socket leaves through the B-side socket
toward party B, and the reverse. The relay sends from the port it receives
on (symmetric RTP, RFC 4961), so a party behind NAT gets its media back
through the binding it opened. The first packet on a side's socket latches
its source address, which may differ from the SDP address (NAT); packets
from any other source are then dropped and counted. Until a side latches,
packets toward it go to the address in its SDP.

RTCP runs on the port above RTP (RFC 3550 11) or, when a side uses rtcp-mux,
on its RTP port, told apart by the packet-type octet (RFC 5761 4). RTCP from
one side reaches the other on whatever port that side uses.

A port of 0 in a side's SDP rejects the stream (RFC 3264 6): nothing is sent
to or taken from that side. An unspecified connection address (0.0.0.0,
RFC 3264 8.4) puts the side on hold: nothing is sent to it while it may
still send.

Every call has its own sockets, so no packet of one call can reach another.

Performance: the loop calls each socket's receiver when the socket is readable (a
reader on its descriptor; no transport is made for it) and the relay sends with the
socket's own ``sendto``; once a party is latched, its packets come and go through a flow
socket connected to it (Linux; ``flow_sockets``), and the native forwarder
relays it outside the interpreter while nothing in the gateway listens to it
(``fastpath``; :mod:`gateway.media.fastpath`), or the kernel relays it before it
reaches a socket (``kernel_forwarding``; :mod:`gateway.media.kernel`). See
:mod:`gateway.media.forward` for the per-packet path and
``tests/bench/bench_relay.py`` for the measurements behind these choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from time import monotonic

from gateway.media import fastpath as native
from gateway.media import kernel
from gateway.media.forward import FlowSockets, Receiver, RtpReceiver
from gateway.media.netlink_route import route_events
from gateway.media.ports import PortPool, PortPoolExhausted
from gateway.media.reuseport import connected_sockets_preferred
from gateway.media.session import SIDES, MediaSession, MediaSide, MediaStream, RemoteMedia
from gateway.media.stats import StreamStats

__all__ = [
    "MediaRelay",
    "MediaSession",
    "MediaSide",
    "MediaStream",
    "PortPoolExhausted",
    "RemoteMedia",
    "watch_idle",
]

log = logging.getLogger(__name__)

_ROUTE_SETTLE_S = 0.2
"""After a route change, how long the relay waits for more before it hands kernel lanes
over again (a failover changes several routes at once)."""


class MediaRelay:
    """Binds call media sessions on ``host`` with ports from ``[port_min, port_max]``.

    ``recv_buffer``/``send_buffer`` set SO_RCVBUF/SO_SNDBUF on every media
    socket when given (the kernel default otherwise). ``flow_sockets`` gives each
    latched party a socket connected to it (see :mod:`gateway.media.forward`); it
    takes effect on Linux kernels that prefer connected sockets in a port's
    SO_REUSEPORT group (:mod:`gateway.media.reuseport`, checked once) with a loop
    that has ``add_reader`` (uvloop's and asyncio's Unix loops). ``fastpath`` hands
    latched flow sockets that no tap listens to to the native forwarder
    (:mod:`gateway.media.fastpath`) when it is built; it needs flow sockets.
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
        flow_sockets: bool = True,
        fastpath: bool = True,
        kernel_forwarding: str = "off",
        kernel_interfaces: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.pool = PortPool(host, port_min, port_max)
        self._loop = loop
        self._recv_buffer = recv_buffer
        self._send_buffer = send_buffer
        self.flow_sockets = flow_sockets and connected_sockets_preferred(self.pool.family)
        if flow_sockets and not self.flow_sockets:
            log.warning(
                "media relay: no flow sockets (this kernel does not give a connected UDP "
                "socket its peer's datagrams ahead of the others on its port); every "
                "packet takes the first socket"
            )
        self.fastpath: native.Engine | None = None
        """The native forwarder, when it serves this relay's latched flows."""
        if fastpath and self.flow_sockets:
            if native.available():
                self.fastpath = native.new_engine()
            else:
                log.warning(
                    "media relay: every packet is relayed in Python: %s", native.UNAVAILABLE_REASON
                )
        self.kernel: kernel.KernelForwarder | None = None
        """The kernel forwarder, when it serves this relay's latched flows (with the native
        forwarder, if any, behind it for the lanes it does not take)."""
        if kernel_forwarding == "on" and not self.flow_sockets:
            raise RuntimeError("media relay: kernel forwarding is on, but it needs flow sockets")
        if kernel_forwarding != "off" and self.flow_sockets:
            self._start_kernel(kernel_forwarding, kernel_interfaces)
        self._route_events: socket.socket | None = None
        self._route_refresh: asyncio.TimerHandle | None = None
        self._sessions: dict[str, MediaSession] = {}
        self._closed_totals: dict[str, int] = dict.fromkeys(PACKET_TOTALS, 0)
        self._creating: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()

    def _start_kernel(self, mode: str, interfaces: tuple[str, ...]) -> None:
        """``mode`` "on": the kernel forwarder or an error; "auto": it, when it can run."""
        try:
            self.kernel = kernel.KernelForwarder(
                kernel.media_interfaces(interfaces), fallback=self.fastpath
            )
        except OSError as exc:
            if mode == "on":
                raise RuntimeError(f"media relay: kernel forwarding is on, but {exc}") from exc
            # named interfaces are a deliberate setting: its failure is worth a warning
            (log.warning if interfaces else log.info)("media relay: no kernel forwarder (%s)", exc)
            return
        self.fastpath = self.kernel
        log.warning(
            "media relay: kernel forwarder on: latched RTP is relayed before this host's "
            "netfilter hooks (no SNAT, firewall rule or conntrack sees it); set "
            'media.kernel_forwarding = "off" where they must'
        )

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
        if session_id in self._sessions or session_id in self._creating:
            raise ValueError(f"media session {session_id!r} already exists")
        self._creating.add(session_id)
        try:
            session = await self._bind_session(session_id, streams)
        finally:
            self._creating.discard(session_id)
        self._sessions[session_id] = session
        return session

    def _watch_routes(self, loop: asyncio.AbstractEventLoop) -> None:
        """With the kernel forwarder: follow this host's route changes (rtnetlink).

        A kernel lane leaves by the interface its route named when it began; after a
        change of links, addresses or routes every kernel lane is handed over again,
        which looks its route up anew (an uplink failover, a new default route)."""
        if self.kernel is None or self._route_events is not None:
            return
        try:
            self._route_events = route_events()
            loop.add_reader(self._route_events.fileno(), self._on_route_event)
        except (OSError, NotImplementedError, RuntimeError) as exc:
            log.warning("media relay: route changes not followed: %r", exc)
            if self._route_events is not None:
                self._route_events.close()
                self._route_events = None

    def _on_route_event(self) -> None:
        events = self._route_events
        if events is None:
            return
        while True:  # the messages do not matter, only that something changed
            try:
                events.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:  # ENOBUFS: events were lost, a change too
                    break
        if self._route_refresh is None:  # a burst of changes is one refresh
            self._route_refresh = self._get_loop().call_later(
                _ROUTE_SETTLE_S, self._refresh_kernel_routes
            )

    def _refresh_kernel_routes(self) -> None:
        self._route_refresh = None
        forwarder = self.kernel
        if forwarder is None or forwarder.closed:
            return
        forwarder.forget_routes()
        for session in list(self._sessions.values()):
            for side in session.sides():
                receiver = side.rtp
                if receiver.lane is not None and forwarder.in_kernel(receiver.lane):
                    receiver.reroute()

    async def _bind_session(self, session_id: str, streams: int) -> MediaSession:
        loop = self._get_loop()
        self._watch_routes(loop)
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
                    if not receiver.start_reading(loop):  # a loop without readers
                        receiver.transport, _ = await loop.create_datagram_endpoint(
                            _itself(receiver), sock=receiver.sock
                        )
                    self._share_port(loop, receiver)
        except BaseException:
            await self._teardown(sides)
            raise
        for side in sides:
            side.refresh_routes()
        dual_stack = (
            self.pool.family == socket.AF_INET6 and ipaddress.ip_address(self.host).is_unspecified
        )
        return MediaSession(session_id, stream_list, self.pool.family, dual_stack=dual_stack)

    def _tune(self, sock: socket.socket) -> None:
        if self._recv_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        if self._send_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)

    def packet_totals(self) -> dict[str, int]:
        """Packets in, out and dropped (from a source the side had not latched) since start,
        over every session, live or closed.

        Reads the receivers' counters as they are and adds what the native forwarder
        relayed since it last handed counts over (``pending``): exact, and without
        taking every lane's counts.
        """
        totals = dict(self._closed_totals)
        for session in self._sessions.values():
            _add_totals(totals, session)
        if self.fastpath is not None and not self.fastpath.closed:
            packets_in, _, packets_out, _ = self.fastpath.pending()
            totals["packets_in"] += packets_in
            totals["packets_out"] += packets_out
        return totals

    def native_totals(self) -> tuple[int, int]:
        """(lanes the native forwarder serves now, RTP packets it has sent since start);
        zeros without it."""
        engine = self.native_engine
        if engine is None or engine.closed:
            return 0, 0
        return engine.lanes, engine.relayed

    @property
    def native_engine(self) -> native.Engine | None:
        """The native forwarder (behind the kernel forwarder when there is one)."""
        return self.kernel.fallback if self.kernel is not None else self.fastpath

    def kernel_totals(self) -> tuple[int, int]:
        """(lanes the kernel forwarder serves now, RTP packets it has sent since start);
        zeros without it."""
        if self.kernel is None or self.kernel.closed:
            return 0, 0
        return self.kernel.kernel_lanes, self.kernel.kernel_relayed

    async def close_session(self, session: MediaSession) -> None:
        """Close the session's sockets and return its ports; closing twice is harmless."""
        if session.closed:
            return
        session.closed = True
        for side in session.sides():
            side.open = False  # no lane is attached again...
            side.rtp.take_lane_back()  # ...and the counters hold everything relayed
        _add_totals(self._closed_totals, session)
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        await self._teardown(list(session.sides()))

    def _share_port(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        """Let the RTP receiver's flow sockets join its port (with ``flow_sockets``)."""
        if self.flow_sockets and isinstance(receiver, RtpReceiver):
            # set after the bind, which stayed exclusive (the pool's test that the port
            # is free, so no other relay's pool takes it); from here on a socket of the
            # same user that sets SO_REUSEPORT may join the port (Linux checks the uid):
            # this relay's flow sockets, or a process that could read this one's memory
            receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            receiver.flows = FlowSockets(loop, self._tune, self.fastpath)

    async def _teardown(self, sides: list[MediaSide]) -> None:
        """Stop reading the sockets, close them, release their ports."""
        for side in sides:
            side.open = False
            side.rtp.tap = None
        for side in sides:
            side.rtp.close_flow()
            side.refresh_routes()
        for side in sides:
            for receiver in side.receivers():
                try:
                    receiver.stop_reading()
                except (OSError, ValueError) as exc:  # the sockets still close below
                    log.warning("media socket %s: %r", side.describe(), exc)
        for side in sides:
            side.rtp_sock.close()
            side.rtcp_sock.close()
            self.pool.release(side.rtp_port)
            side.release()

    async def close(self) -> None:
        """Stop idle watchers and close every session."""
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(self.close_session(s) for s in list(self._sessions.values())))
        if self._route_refresh is not None:
            self._route_refresh.cancel()
            self._route_refresh = None
        if self._route_events is not None:
            with contextlib.suppress(Exception):  # a loop already closed
                self._get_loop().remove_reader(self._route_events.fileno())
            self._route_events.close()
            self._route_events = None
        if self.fastpath is not None:
            self.fastpath.close()

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


def _itself(receiver: Receiver) -> Callable[[], Receiver]:
    """The protocol factory of a transport that reads for ``receiver``."""
    return lambda: receiver


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


PACKET_TOTALS = ("packets_in", "packets_out", "dropped_foreign")


def _add_totals(totals: dict[str, int], session: MediaSession) -> None:
    for stream in session.streams:
        for side in stream.sides():
            stats = side.counters
            totals["packets_in"] += stats.packets_in
            totals["packets_out"] += stats.packets_out
            totals["dropped_foreign"] += stats.dropped_foreign
