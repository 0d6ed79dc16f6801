"""SIP over UDP and TCP (RFC 3261 18): sockets in, raw messages out.

This is the only place where SIP touches sockets. Every datagram, and every
message cut from a TCP stream by :class:`~gateway.sip.framing.StreamFramer`,
goes to one callback with its source address and transport name; sending
takes bytes, a destination and a transport. Responses to a request that came
over TCP go back over the same connection (RFC 3261 18.2.2), which is why
connections are kept by their remote address.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.net.udp_endpoint import UdpEndpoint
from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer

log = logging.getLogger(__name__)

Address = tuple[str, int]
MessageHandler = Callable[[bytes, Address, str], None]
"""Called with (raw message, source address, transport name "udp"/"tcp")."""

_PONG = b"\r\n"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One address the gateway listens on."""

    transport: str
    host: str
    port: int


def _normalise(address: tuple) -> Address:
    """Drop IPv6 flow/scope fields so addresses compare as (host, port)."""
    return (address[0], address[1])


class TcpConnection(asyncio.Protocol):
    """A SIP-over-TCP connection: Content-Length framing (RFC 3261 18.3)."""

    def __init__(self, owner: Transports, max_message_bytes: int) -> None:
        self._owner = owner
        self._framer = StreamFramer(max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.remote: Address | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.remote = _normalise(transport.get_extra_info("peername"))
        self._owner._register(self)

    def data_received(self, data: bytes) -> None:
        pings_before = self._framer.pings_received
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            log.info("closing TCP connection from %s: %s", self.remote, exc.reason)
            assert self.transport is not None
            self.transport.close()
            return
        if self._framer.pings_received != pings_before and self.transport is not None:
            self.transport.write(_PONG)  # RFC 5626 4.4.1: CRLFCRLF ping, CRLF pong
        assert self.remote is not None
        for message in messages:
            try:
                self._owner._on_message(message, self.remote, "tcp")
            except Exception:
                log.exception("error handling TCP message from %s", self.remote)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)


class Transports:
    """All SIP sockets of the gateway: UDP endpoints, TCP listeners and connections."""

    def __init__(self, on_message: MessageHandler, *, max_message_bytes: int = 65535) -> None:
        self._on_message = on_message
        self._max_message_bytes = max_message_bytes
        self._udp: dict[int, UdpEndpoint] = {}  # address family -> socket
        self._udp_endpoints: list[UdpEndpoint] = []
        self.receive_wait_s = 0.0
        """How long the message being handled waited in its socket's queue (UDP; 0 for TCP,
        whose stream has no per-message arrival)."""
        self.max_receive_wait_s = 0.0
        self.late_after_s = math.inf
        """A message that waited longer than this is late (overload control sets it)."""
        self.late_since: float | None = None
        """When (monotonic) the current run of late UDP messages began; None while on time."""
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: dict[Address, TcpConnection] = {}
        self._pending: dict[Address, asyncio.Task[TcpConnection]] = {}
        self.bound: list[ListenAddress] = []

    async def listen(self, addresses: list[ListenAddress]) -> None:
        """Bind every listen address; port 0 picks a free port (see :attr:`bound`)."""
        loop = asyncio.get_running_loop()
        for address in addresses:
            family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            if address.transport == "udp":
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    try:
                        sock.bind((address.host, address.port))
                    except OSError as exc:
                        where = (address.host, address.port)
                        raise OSError(
                            exc.errno,
                            f"error while attempting to bind on address {where!r}: "
                            f"{(exc.strerror or str(exc)).lower()}",
                        ) from None
                    endpoint = UdpEndpoint(sock, self._on_datagram)
                    await endpoint.start(loop)
                except BaseException:
                    sock.close()
                    raise
                self._udp_endpoints.append(endpoint)
                self._udp.setdefault(family, endpoint)
                port = sock.getsockname()[1]
            elif address.transport == "tcp":
                server = await loop.create_server(
                    lambda: TcpConnection(self, self._max_message_bytes),
                    host=address.host,
                    port=address.port,
                    family=family,
                    reuse_address=True,
                )
                self._servers.append(server)
                # typed as a tuple, but uvloop's Server gives a list: read untyped, or
                # the compiled module's type check refuses it
                listening: Any = server
                port = listening.sockets[0].getsockname()[1]
            else:
                raise ValueError(f"unsupported SIP transport {address.transport!r}")
            self.bound.append(ListenAddress(address.transport, address.host, port))

    def _on_datagram(self, data: bytes, source: Address, waited_s: float) -> None:
        """One UDP datagram: one SIP message (RFC 3261 18.3)."""
        if data.strip(b"\r\n") == b"":
            return  # RFC 5626 3.5.1 keep-alive on UDP: nothing to answer
        self.receive_wait_s = waited_s
        if waited_s > self.max_receive_wait_s:
            self.max_receive_wait_s = waited_s
        if waited_s <= self.late_after_s:
            self.late_since = None
        elif self.late_since is None:
            self.late_since = time.monotonic()
        try:
            self._on_message(data, source, "udp")
        except Exception:  # a bad message must never take the socket down
            log.exception("error handling UDP message from %s:%s", source[0], source[1])
        finally:
            self.receive_wait_s = 0.0

    def late_for_s(self) -> float:
        """How long every UDP message read has been late (0 while they are on time)."""
        since = self.late_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def send_drops(self) -> int:
        """UDP datagrams dropped on a full send buffer since start."""
        return sum(endpoint.send_drops for endpoint in self._udp_endpoints)

    def local_port(self, transport: str) -> int:
        """The port this gateway uses for ``transport`` (for Via and Contact)."""
        for address in self.bound:
            if address.transport == transport:
                return address.port
        return self.bound[0].port

    def send(self, data: bytes, dest: Address, transport: str) -> None:
        """Send one message; TCP connects first when no connection to ``dest`` is open."""
        if transport == "tcp":
            connection = self._connections.get(dest)
            if connection is not None:
                connection.send(data)
            else:
                self._send_after_connect(data, dest)
            return
        family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
        udp = self._udp.get(family)
        if udp is None:
            log.warning("no UDP socket for %s; dropping message", dest)
            return
        udp.sendto(data, dest)

    def _send_after_connect(self, data: bytes, dest: Address) -> None:
        task = self._pending.get(dest)
        if task is None:
            task = asyncio.ensure_future(self._connect(dest))
            self._pending[dest] = task

        def _write(done: asyncio.Task[TcpConnection]) -> None:
            if done.cancelled() or done.exception() is not None:
                log.warning("TCP connect to %s:%s failed: %s", *dest, done.exception())
                return
            done.result().send(data)

        task.add_done_callback(_write)

    async def _connect(self, dest: Address) -> TcpConnection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: TcpConnection(self, self._max_message_bytes), dest[0], dest[1]
            )
            return connection
        finally:
            self._pending.pop(dest, None)

    def _register(self, connection: TcpConnection) -> None:
        assert connection.remote is not None
        self._connections[connection.remote] = connection

    def _unregister(self, connection: TcpConnection) -> None:
        if connection.remote is not None and self._connections.get(connection.remote) is connection:
            del self._connections[connection.remote]

    def has_connection(self, remote: Address) -> bool:
        return remote in self._connections

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        for endpoint in self._udp_endpoints:
            endpoint.close()
        self._udp_endpoints.clear()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._udp.clear()
