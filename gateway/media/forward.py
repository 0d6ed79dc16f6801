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

Flow sockets: once a party's RTP source is latched (on Linux, on a loop with
``add_reader``), a second socket is bound to the same port (SO_REUSEPORT) and
connected to that source. The kernel delivers a connected socket the
datagrams of its peer ahead of an unconnected one on the same port, so the
party's packets arrive on the flow socket and anything from another source
still reaches the first socket, where it is dropped and counted. The flow
socket is read with ``recv`` (no source address to build: the kernel has
matched it) and packets toward the party leave by its ``send`` (no address
to parse, and a route the kernel keeps with the connection instead of
looking it up per packet). ``tests/bench/bench_relay.py`` compares the
paths in one run (``--paths native,flows,first``).

Lanes: a flow socket whose packets nothing in the gateway needs to hear (no
tap) is handed to the native forwarder (:mod:`gateway.media.fastpath`), which
relays and accounts its packets as :meth:`RtpReceiver.relay` does, on a
thread of its own; the receiver takes it back (with the statistics) whenever
its routes, tap or flow change, and hands it over again with the new routes.
The kernel forwarder (:mod:`gateway.media.kernel`) takes lanes the same way,
but relays the party's packets before they reach the flow socket: what was
already queued on the socket when the lane began is relayed here first
(:meth:`RtpReceiver._hand_over`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from gateway.media.fastpath import Counts, Engine
    from gateway.media.session import MediaSide
    from gateway.media.stats import StreamStats

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
    """A socket's reader: latching and the precomputed route toward the other party.

    The event loop calls :meth:`readable` when the socket has datagrams (a reader on
    its descriptor, as for flow sockets): no transport is made for it, which cost
    more than the rest of a session's set-up, nor waited for at its close. A loop
    without readers (Windows' proactor loop) delivers through a datagram transport
    instead (:attr:`transport`). Packets leave through the plain socket's ``sendto``:
    a full send buffer raises BlockingIOError and the packet is dropped (late RTP is
    useless).
    """

    __slots__ = (
        "dest",
        "errors",
        "fd",
        "loop",
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
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop reading the socket, None when none does."""
        self.fd = -1
        """The descriptor the loop watches (kept: the socket may be closed first)."""
        self.transport: asyncio.BaseTransport | None = None
        """Where the loop has no readers: the datagram transport that reads instead."""

    def start_reading(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Have ``loop`` call :meth:`readable` whenever the socket has datagrams; False
        when the loop has no readers (use :attr:`transport` then)."""
        fd = self.sock.fileno()
        try:
            loop.add_reader(fd, self.readable)
        except NotImplementedError:
            return False
        self.fd = fd
        self.loop = loop
        return True

    def stop_reading(self) -> None:
        """No more reads: before the socket closes (a closed descriptor's number may be
        given to another socket, which the loop must not watch for this one)."""
        loop: Any = self.loop  # uvloop's remove_reader may return None, not bool: unchecked
        if loop is not None:
            self.loop = None
            if not loop.is_closed():
                loop.remove_reader(self.fd)
        transport = self.transport
        if transport is not None:
            self.transport = None
            transport.close()

    def readable(self) -> None:
        """The socket has datagrams: hand each to :meth:`datagram_received`, a bounded
        number per wake-up so one socket cannot hold the loop."""
        sock = self.sock
        for _ in range(_READS_PER_WAKE):
            if self.loop is None:  # a datagram ended the call: the socket is closing
                return
            try:
                data, addr = sock.recvfrom(FLOW_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket, say
                self.error_received(exc)
                return
            self.datagram_received(data, addr)

    def release(self) -> None:
        """Let go of the side and the routes once the socket is closed.

        The receiver and its side refer to each other: left as they are, every ended
        call would leave those cycles (sockets, statistics) for the cyclic collector,
        whose full passes then stall the event loop for tens of milliseconds.
        """
        self.loop = None
        self.transport = None
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
        side.counters.dropped_foreign += 1
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


class FlowSockets(NamedTuple):
    """What a receiver needs to open flow sockets: the loop that reads them, the
    relay's socket options for them, and the native forwarder that may serve them."""

    loop: asyncio.AbstractEventLoop
    tune: Callable[[socket.socket], None]
    engine: Engine | None = None


def _socket_of(send: Callable[..., Any] | None) -> socket.socket | None:
    """The socket whose ``send``/``sendto`` a route is, None for :func:`discard`."""
    owner = getattr(send, "__self__", None)
    return owner if isinstance(owner, socket.socket) else None


_STRAGGLER_LIMIT: Final = 8
"""Datagrams past the kernel forwarder after which a flow goes to the native forwarder."""


def _has_queued(sock: socket.socket) -> bool:
    """Whether a datagram waits on the socket; a pending refusal (ICMP) is cleared, and
    is not one."""
    sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading the error clears it
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # another error came meanwhile: the reader sees it
    return True


FLOW_RECV_SIZE: Final = 65536
"""Read size on a flow socket: a datagram larger than this would be truncated, and no
UDP datagram is."""
_READS_PER_WAKE: Final = 32
"""Datagrams a receiver reads each time its socket is readable, before the loop's other work."""


class RtpReceiver(Receiver):
    """The RTP socket facing one party: the relay's hot path.

    ``flow_send`` is set (by the other side's
    :meth:`~gateway.media.session.MediaSide.refresh_routes`) when packets toward the
    other party leave by that party's flow socket; ``send``/``dest`` otherwise.
    ``lane`` is set while the native forwarder serves the flow socket.
    """

    __slots__ = (
        "flow",
        "flow_reader",
        "flow_reading",
        "flow_send",
        "flows",
        "in_stats",
        "lane",
        "out_stats",
        "rtcp_dest",
        "rtcp_send",
        "straggler_watch",
        "stragglers",
        "tap",
        "update",
    )

    def __init__(self, side: MediaSide, sock: socket.socket) -> None:
        super().__init__(side, sock)
        self.in_stats: StreamStats = side.counters
        self.update = self.in_stats.update
        self.out_stats: StreamStats = self.in_stats
        self.rtcp_dest: Address | None = None
        self.rtcp_send: SendTo = discard
        self.tap: Tap | None = None
        self.flows: FlowSockets | None = None
        """Set when the party's latched source gets a flow socket."""
        self.flow: socket.socket | None = None
        """The flow socket connected to the latched source, while there is one."""
        self.flow_send: Callable[[bytes], int] | None = None
        self.flow_reading = False
        """The flow socket's first read is done: its datagrams are all the party's."""
        self.flow_reader = False
        """The loop reads the flow socket (:meth:`_flow_read`)."""
        self.lane: int | None = None
        """The native forwarder's handle while it serves the flow socket."""
        self.stragglers = 0
        """Times a datagram reached the flow socket while the kernel served it."""
        self.straggler_watch = False
        """The loop's reader on the flow socket is :meth:`_straggler_read` (a kernel lane)."""

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            if addr != self.source and not self.admit(addr):
                return
        except Exception as exc:
            self.fault(exc)
            return
        if self.lane is None:
            self.relay(data)
        else:  # queued on the first socket before the flow took over: rare
            self.take_lane_back()
            self.relay(data)
            self.reroute()

    def relay(self, data: bytes) -> None:
        """One datagram from the latched party: relayed, accounted, tapped."""
        try:
            if data[0] >> 6 != 2:
                self.forward(data)  # not RTP or RTCP (STUN, DTLS, ZRTP; RFC 7983): not accounted
                return
            if 191 < data[1] < 224:
                self.rtcp(data)
                return
            if self.forward(data):
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

    def forward(self, data: bytes) -> bool:
        """Send ``data`` toward the other party by its route; whether it left."""
        try:
            flow_send = self.flow_send
            if flow_send is not None:
                try:
                    flow_send(data)
                except ConnectionRefusedError:
                    # a refusal (ICMP) of an earlier packet, reported on this send and
                    # cleared by it: this packet was not sent yet
                    flow_send(data)
                return True
            dest = self.dest
            if dest is None:
                return False
            self.send(data, dest)
        except OSError:  # a full buffer; a refusal again
            self.send_errors += 1
            return False
        return True

    def rtcp(self, data: bytes) -> None:
        """RTCP multiplexed on the RTP port (RFC 5761 4): onward on the other side's RTCP route."""
        dest = self.rtcp_dest
        if dest is not None:
            try:
                self.rtcp_send(data, dest)
            except OSError:
                self.send_errors += 1

    def admit(self, addr: Address) -> bool:
        admitted = super().admit(addr)
        if admitted and self.flows is not None and self.source == addr:
            self.open_flow(addr)
        return admitted

    def open_flow(self, addr: Address) -> None:
        """Bind a socket to this port, connect it to the latched ``addr``, read it.

        Until ``connect`` returns, the new socket is an unconnected member of the port's
        group and may take a datagram from anyone; its first read therefore checks each
        queued datagram's source (:meth:`_first_flow_read`) before the plain reads start.
        A flow that cannot be opened leaves the party on the first socket.
        """
        flows = self.flows
        side = self.side
        if flows is None or side is None:
            return
        self.close_flow()
        self.stragglers = 0  # a new source: it gets the kernel's lanes again
        try:
            flow = socket.socket(self.sock.family, socket.SOCK_DGRAM)
        except OSError as exc:  # out of descriptors, say
            log.debug("media socket %s: no flow socket for %s: %r", side.describe(), addr, exc)
            return
        try:
            flow.setblocking(False)
            flow.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            flows.tune(flow)
            flow.bind(self.sock.getsockname())
            flow.connect(addr)
            flows.loop.add_reader(flow.fileno(), self._first_flow_read)
        except (OSError, NotImplementedError, RuntimeError) as exc:
            flow.close()
            log.debug("media socket %s: no flow socket for %s: %r", side.describe(), addr, exc)
            return
        self.flow = flow
        side.refresh_routes()

    def _first_flow_read(self) -> None:
        """Relay what is queued from the latched source, count the rest as foreign, then
        read with plain ``recv``."""
        flow, flows = self.flow, self.flows
        if flow is None or flows is None:
            return
        source = self.source
        while self.flow is flow:  # relaying may close it (a tap ending the call)
            try:
                data, addr = flow.recvfrom(FLOW_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue  # a refusal of what we sent the party comes before queued data
            except OSError as exc:
                self.error_received(exc)
                break
            if addr == source:
                self.relay(data)
            elif self.side is not None:
                self.side.counters.dropped_foreign += 1
        if self.flow is flow:
            flows.loop.add_reader(flow.fileno(), self._flow_read, flow.recv)
            self.flow_reader = True
            self.flow_reading = True
            self.reroute()

    def _flow_read(self, recv: Callable[[int], bytes]) -> None:
        """The flow socket is readable: one datagram of the latched party."""
        try:
            data = recv(FLOW_RECV_SIZE)
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            return  # a refusal (ICMP) of what we sent the party: the party's port is shut
        except OSError as exc:
            self.error_received(exc)
            return
        self.relay(data)

    def close_flow(self) -> None:
        """Stop reading and close the flow socket; the party's packets reach the first
        socket again. Datagrams still queued on it are dropped: they are from a source
        the relay no longer takes (a moved party) or of a call that ended."""
        flow = self.flow
        if flow is None:
            return
        self.take_lane_back()
        self.flow = None
        self.flow_reading = False
        self.flow_reader = self.straggler_watch = False
        if self.side is not None:
            # before the close: the other side's lane may send by this socket
            self.side.refresh_routes()
        flows = self.flows
        if flows is not None and not flows.loop.is_closed():
            flows.loop.remove_reader(flow.fileno())
        flow.close()

    def set_tap(self, tap: Tap | None) -> None:
        """Hear each packet the party sends (None: stop); a tapped flow stays in Python."""
        self.tap = tap
        self.reroute()

    def reroute(self) -> None:
        """After a change of routes, tap or flow: a forwarder (the kernel's or the native
        one) serves the flow socket with the routes as they are now, or the loop reads it.

        The forwarder takes a flow socket whose first read is done and whose packets
        nothing here needs to hear; the receiver keeps everything else.
        """
        self.take_lane_back()
        flow, flows, side = self.flow, self.flows, self.side
        if flow is None or flows is None or not self.flow_reading:
            return
        if self.flow_reader and self.straggler_watch:  # the lane it watched is gone
            flows.loop.remove_reader(flow.fileno())
            self.flow_reader = self.straggler_watch = False
        if flows.engine is not None and self.tap is None and side is not None and side.open:
            if self.flow_reader:
                flows.loop.remove_reader(flow.fileno())
                self.flow_reader = False
            if self._hand_over(flows, flow):
                if self._in_kernel(flows):  # the kernel never reads the socket: the loop does
                    flows.loop.add_reader(flow.fileno(), self._straggler_read)
                    self.flow_reader = self.straggler_watch = True
                return
        if not self.flow_reader:
            flows.loop.add_reader(flow.fileno(), self._flow_read, flow.recv)
            self.flow_reader = True

    def _hand_over(self, flows: FlowSockets, flow: socket.socket) -> bool:
        """Attach the flow socket as a lane with the current routes; whether it took.

        A lane the kernel serves never reads the socket, so a datagram queued on it
        before the lane began would stay there: when one is, the lane is taken back,
        the queue relayed here (a straggler, as in :meth:`_straggler_read`), and the
        lane attached again; a datagram the kernel relayed meanwhile may overtake the
        queued one. A flow that keeps racing its hand-over goes to the native
        forwarder once it has had as many stragglers as the limit.
        """
        engine = flows.engine
        assert engine is not None
        for _ in range(_STRAGGLER_LIMIT + 1):
            if not self._attach(engine, flow):
                return False
            if not self._in_kernel(flows) or not _has_queued(flow):
                return True
            self.take_lane_back()
            if self._drain(flow):
                self.stragglers += 1
            if self.flow is not flow or self.lane is not None or self.flow_reader:
                return True  # relaying closed the flow or rerouted it (a tap set or ended)
        return False

    def _in_kernel(self, flows: FlowSockets) -> bool:
        """Whether the kernel forwarder serves the lane (it never reads the flow socket)."""
        in_kernel: Callable[[int], bool] | None = getattr(flows.engine, "in_kernel", None)
        return in_kernel is not None and self.lane is not None and in_kernel(self.lane)

    def _straggler_read(self) -> None:
        """A datagram reached the flow socket while the kernel serves the lane: one in
        flight when the lane began, a fragment, one by an interface without the program.
        The lane is taken back, the queue relayed here, and the lane handed over again;
        a flow that keeps doing it goes to the native forwarder instead."""
        flow = self.flow
        if flow is None or not _has_queued(flow):
            return  # a refusal (ICMP) of what the kernel sent the party, now cleared
        self.take_lane_back()
        if self._drain(flow):
            self.stragglers += 1
        if self.flow is flow:
            self.reroute()

    def _attach(self, engine: Engine, flow: socket.socket) -> bool:
        if self.stragglers >= _STRAGGLER_LIMIT and getattr(engine, "in_kernel", None):
            fallback: Engine | None = getattr(engine, "fallback", None)
            if fallback is None:
                return False  # no native forwarder behind the kernel's: the loop reads it
            engine = fallback
        rtp_sock = _socket_of(self.flow_send)
        rtp_address = None  # a flow socket of the other party: connected
        if rtp_sock is None and self.dest is not None:
            rtp_sock, rtp_address = _socket_of(self.send), self.dest
        rtcp_sock = _socket_of(self.rtcp_send) if self.rtcp_dest is not None else None
        try:
            self.lane = engine.attach(
                flow.fileno(),
                flow.family,
                rtp_sock.fileno() if rtp_sock is not None else -1,
                rtp_address,
                rtcp_sock.fileno() if rtcp_sock is not None else -1,
                self.rtcp_dest if rtcp_sock is not None else None,
                self.in_stats.export_state(),
            )
        except Exception as exc:  # the loop reads the flow instead: nothing is lost
            log.debug("media socket %s: relayed in Python: %r", self.describe(), exc)
            return False
        return True

    def _drain(self, flow: socket.socket) -> int:
        """Relay what is queued on the flow socket (the latched party's datagrams), while
        no lane serves it (relaying may set a tap or change routes); how many."""
        relayed = 0
        while self.flow is flow and self.lane is None:
            try:
                data = flow.recv(FLOW_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue
            except OSError as exc:
                self.error_received(exc)
                break
            self.relay(data)
            relayed += 1
        return relayed

    def describe(self) -> str:
        return self.side.describe() if self.side is not None else "(released)"

    def _lane_engine(self) -> Engine | None:
        """The native forwarder while it serves this receiver's flow socket."""
        if self.lane is None or self.flows is None:
            return None
        return self.flows.engine

    def take_lane_back(self) -> None:
        """Stop the native forwarder serving the flow socket, and take its counts."""
        engine, lane = self._lane_engine(), self.lane
        self.lane = None
        if engine is None or lane is None:
            return
        try:
            self._take_counts(engine.detach(lane))
        except KeyError:  # the engine closed first and let go of every lane
            pass
        except OSError as exc:  # the kernel's map refused: the counts since the last poll are lost
            log.warning("media socket %s: lane not taken back: %r", self.describe(), exc)

    def sync(self) -> None:
        """Bring the statistics up to date with what the native forwarder relayed."""
        engine, lane = self._lane_engine(), self.lane
        if engine is None or lane is None:
            return
        with contextlib.suppress(KeyError, OSError):
            self._take_counts(engine.poll(lane))

    def last_packet_at(self) -> float | None:
        """When the party's last RTP packet was accounted (monotonic seconds), None if
        never: what the native forwarder saw, without taking its counts."""
        engine, lane = self._lane_engine(), self.lane
        if engine is None or lane is None:
            return self.in_stats.last_packet_at
        try:
            at = engine.last_packet_at(lane)
        except (KeyError, OSError):
            return self.in_stats.last_packet_at
        return None if at != at else at  # NaN: none yet

    def _take_counts(self, counts: Counts) -> None:
        state, packets_out, bytes_out, send_errors, errors = counts
        self.in_stats.import_state(state)
        out = self.out_stats
        out.packets_out += packets_out
        out.bytes_out += bytes_out
        self.send_errors += send_errors
        self.errors += errors

    def unlatch(self) -> None:
        """Forget the latched source (a new SDP address): the next packet latches anew."""
        self.source = None
        self.close_flow()

    def release(self) -> None:
        self.close_flow()
        self.take_lane_back()
        super().release()
        self.rtcp_send = discard
        self.rtcp_dest = None
        self.tap = None
        self.flow_send = None
        self.flows = None


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
