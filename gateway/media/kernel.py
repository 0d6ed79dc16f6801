"""The relay's kernel forwarder: latched RTP relayed before it reaches a socket.

``kernel_forward.bpf.c`` is a tc program attached (as a tcx link) at the
ingress of the interfaces that carry media. A lane of this forwarder is an
entry of its map, keyed by the flow's four-tuple: the kernel rewrites each of
the party's datagrams to the route's addresses and sends it on, with the same
RTP/RTCP-mux/other split, the same counting and the same RFC 3550 statistics
as :meth:`RtpReceiver.relay` (the program keeps transit and jitter in integer
nanoseconds of timestamp units; this module converts them). No system call,
no context switch and no copy to user space is left per packet; this is what
rtpengine's kernel module does with an iptables target.

:class:`KernelForwarder` has the interface of the native forwarder
(:class:`gateway.media.fastpath.Engine`), so the receivers need not know which
one serves them. A lane the kernel cannot take goes to the native forwarder
behind it:

- IPv6 flows, and sockets bound to a wildcard address (the program keys on
  the address the packet was sent to, so the socket must be bound to one);
- a route to one of this host's addresses for a party that is not on this
  host: the rewritten packet would enter the stack with a local source
  address, which the kernel drops as a martian (RFC 1812 5.3.7); and the
  reverse, a party on this host sent elsewhere (its packet keeps the loopback
  route, which ``bpf_redirect_neigh`` leaked on kernels before late 2025);
- RTP clocks above 90 kHz (the jitter arithmetic's 64 bits);
- a flow whose datagrams keep reaching its socket past the program (see
  :meth:`RtpReceiver._straggler_read`).

It needs Linux 6.6 or later (tcx links), CAP_BPF and CAP_NET_ADMIN, libbpf,
and the program built by ``pip install`` (clang). :func:`unavailable_reason`
says what is missing; ``media.kernel_forwarding = "auto"`` then relays by the
native forwarder.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import functools
import logging
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from gateway.media.bpf import BpfError, LoadedProgram
from gateway.media.fastpath import Counts, Engine
from gateway.media.netlink_route import RouteLookup, lookup_route

log = logging.getLogger(__name__)

PROGRAM_PATH: Final = Path(str(files("gateway.media").joinpath("kernel_forward.bpf.o")))
"""Found through the package, not ``__file__``, which a module compiled into the mypyc
group's shared library does not hold as its own path."""
PROGRAM_NAME: Final = "rtp_forward"
MAP_NAME: Final = "lanes"

NS_PER_S: Final = 1_000_000_000
ROUTE_FORMAT: Final = "4s4s2s2sII"
KEY_FORMAT: Final = "4s4s2s2s"
LANE_FORMAT: Final = "=II" + KEY_FORMAT + "I" + ROUTE_FORMAT * 2 + "qqQqqqqqqqqqqqQqqq"
"""``struct lane`` of the program, field for field (see ``kernel_forward.bpf.c``): lock,
clock rate, key, reserved, two routes, StreamStats' state (15 fields, the transit as an
arrival and a timestamp), packets, bytes and send errors out."""
_LANE: Final = struct.Struct(LANE_FORMAT)
_KEY: Final = struct.Struct("=" + KEY_FORMAT)
_NO_ROUTE: Final = (b"\0" * 4, b"\0" * 4, b"\0" * 2, b"\0" * 2, 0, 0)
_STATE_AT: Final = 19
"""Where StreamStats' state starts in an unpacked lane (after lock, clock, key, routes)."""
_STATE_LEN: Final = 15
_OUT_AT: Final = _STATE_AT + _STATE_LEN
_INT64: Final = 1 << 63
_ROUTE_CACHE_S: Final = 5.0
"""How long a route lookup is reused: attaches come in bursts (a call's four lanes)."""
_ROUTE_CACHE_SIZE: Final = 4096
MAX_CLOCK_RATE: Final = 90_000
"""Highest RTP clock the program's jitter arithmetic holds in 64 bits (video's 90 kHz)."""
ETHERNET_TYPES: Final = frozenset({1, 772})
"""ARPHRD_ETHER and ARPHRD_LOOPBACK: the program reads an Ethernet header first."""


class NotForKernel(Exception):
    """This lane is one the kernel forwarder does not take (the native forwarder does)."""


@dataclass(slots=True)
class _Lane:
    key: bytes
    packets_in: int
    bytes_in: int
    packets_out: int = 0
    bytes_out: int = 0
    send_errors: int = 0


def _port(port: int) -> bytes:
    return port.to_bytes(2, "big")


def _sockname(fd: int, peer: bool) -> tuple[str, int]:
    """The local (or, with ``peer``, the connected) IPv4 address of the socket ``fd``.

    The descriptor is borrowed, not duplicated: a ``_socket.socket`` (the C type, without
    ``socket.socket``'s Python ``__init__``) is wrapped around it and detached again, so
    the caller's descriptor stays open. This runs several times for each lane."""
    sock = _socket.socket(fileno=fd)
    try:
        if sock.family != socket.AF_INET:
            raise NotForKernel("not IPv4")
        address = sock.getpeername() if peer else sock.getsockname()
    finally:
        sock.detach()
    return address[0], address[1]


class KernelForwarder:
    """A set of lanes relayed by the kernel, with a native forwarder for the rest.

    Handles of kernel lanes are negative; the native forwarder's are not.
    """

    def __init__(
        self,
        interfaces: Iterable[int],
        fallback: Engine | None,
        program_path: Path = PROGRAM_PATH,
    ) -> None:
        self._program = LoadedProgram(str(program_path), PROGRAM_NAME, MAP_NAME)
        sizes = (self._program.key_size, self._program.value_size)
        if sizes != (_KEY.size, _LANE.size):
            self._program.close()
            raise BpfError(
                errno.EINVAL,
                f"{program_path}: a lane's key and value are {sizes} octets, "
                f"expected {(_KEY.size, _LANE.size)}",
            )
        self._links: list[int] = []
        try:
            for ifindex in interfaces:
                self._links.append(self._program.attach_ingress(ifindex))
        except BaseException:
            self._release()
            raise
        self._fallback = fallback
        self._lanes: dict[int, _Lane] = {}
        self._next_handle = -1
        self._relayed_taken = 0
        self._routes: dict[str, tuple[float, RouteLookup]] = {}
        self._closed = False

    # -- the Engine interface

    @property
    def lanes(self) -> int:
        fallback = self._fallback.lanes if self._fallback is not None else 0
        return len(self._lanes) + fallback

    @property
    def kernel_lanes(self) -> int:
        return len(self._lanes)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def fallback(self) -> Engine | None:
        """The native forwarder that takes the lanes the kernel does not."""
        return self._fallback

    @property
    def relayed(self) -> int:
        """RTP packets the lanes sent, since the forwarder started (kernel and native)."""
        fallback = self._fallback.relayed if self._fallback is not None else 0
        return self.kernel_relayed + fallback

    @property
    def kernel_relayed(self) -> int:
        """RTP packets the kernel's lanes sent, since the forwarder started."""
        total = self._relayed_taken
        for lane in self._lanes.values():
            value = self._program.read(lane.key)
            if value is not None:
                total += _LANE.unpack(value)[_OUT_AT] - lane.packets_out
        return total

    def attach(
        self,
        in_fd: int,
        family: int,
        rtp_fd: int,
        rtp_address: tuple[Any, ...] | None,
        rtcp_fd: int,
        rtcp_address: tuple[Any, ...] | None,
        state: tuple[Any, ...],
    ) -> int:
        if self._closed:
            raise RuntimeError("the kernel forwarder is closed")
        try:
            return self._attach_kernel(
                in_fd, family, rtp_fd, rtp_address, rtcp_fd, rtcp_address, state
            )
        except (NotForKernel, OSError, struct.error, OverflowError, ValueError) as exc:
            if self._fallback is None:
                raise
            log.debug("media lane relayed by the native forwarder: %s", exc)
        return self._fallback.attach(
            in_fd, family, rtp_fd, rtp_address, rtcp_fd, rtcp_address, state
        )

    def forget_routes(self) -> None:
        """Drop the route lookups: the next lanes look their routes up again."""
        self._routes.clear()

    def in_kernel(self, handle: int) -> bool:
        """Whether the kernel serves this lane (it then never reads the flow socket)."""
        return handle < 0

    def poll(self, handle: int) -> Counts:
        if handle >= 0:
            return self._native(handle).poll(handle)
        lane = self._lane(handle)
        value = self._program.read(lane.key)
        if value is None:
            raise KeyError(handle)
        return self._counts(lane, value)

    def last_packet_at(self, handle: int) -> float:
        if handle >= 0:
            return self._native(handle).last_packet_at(handle)
        lane = self._lane(handle)
        value = self._program.read(lane.key)
        if value is None:
            raise KeyError(handle)
        last_ns = _LANE.unpack(value)[_STATE_AT + 2]
        return last_ns / NS_PER_S if last_ns else float("nan")

    def pending(self) -> tuple[int, int, int, int]:
        """What the lanes relayed that no poll or detach has taken yet, over every lane."""
        packets_in = bytes_in = packets_out = bytes_out = 0
        for lane in self._lanes.values():
            value = self._program.read(lane.key)
            if value is None:
                continue
            fields = _LANE.unpack(value)
            packets_in += fields[_STATE_AT] - lane.packets_in
            bytes_in += fields[_STATE_AT + 1] - lane.bytes_in
            packets_out += fields[_OUT_AT] - lane.packets_out
            bytes_out += fields[_OUT_AT + 1] - lane.bytes_out
        if self._fallback is not None and not self._fallback.closed:
            more = self._fallback.pending()
            packets_in, bytes_in = packets_in + more[0], bytes_in + more[1]
            packets_out, bytes_out = packets_out + more[2], bytes_out + more[3]
        return packets_in, bytes_in, packets_out, bytes_out

    def detach(self, handle: int) -> Counts:
        if handle >= 0:
            return self._native(handle).detach(handle)
        lane = self._lanes.pop(handle, None)
        if lane is None:
            raise KeyError(handle)
        try:
            value = self._program.take(lane.key)
        except OSError as exc:  # the entry must not outlive the lane: it would forward on
            log.error("kernel forwarder: a lane could not be taken back (%s); removing it", exc)
            self._program.remove(lane.key)  # OSError again: the forwarder must be closed
            raise KeyError(handle) from exc
        if value is None:
            raise KeyError(handle)
        return self._counts(lane, value)

    def close(self) -> None:
        """Detach the program from every interface and free every lane."""
        if self._closed:
            return
        self._closed = True
        self._lanes.clear()
        self._release()
        if self._fallback is not None:
            self._fallback.close()

    # -- inside

    def _release(self) -> None:
        for link in self._links:
            with contextlib.suppress(OSError):
                os.close(link)
        self._links.clear()
        self._program.close()

    def _native(self, handle: int) -> Engine:
        if self._fallback is None:
            raise KeyError(handle)
        return self._fallback

    def _lane(self, handle: int) -> _Lane:
        lane = self._lanes.get(handle)
        if lane is None:
            raise KeyError(handle)
        return lane

    def _route_to(self, address: str, source: str | None = None) -> RouteLookup:
        now = time.monotonic()
        cache_key = f"{address}<{source}"
        cached = self._routes.get(cache_key)
        if cached is not None and now - cached[0] < _ROUTE_CACHE_S:
            return cached[1]
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes = {
                key: entry for key, entry in self._routes.items() if now - entry[0] < _ROUTE_CACHE_S
            }
        found = lookup_route(address, source)
        self._routes[cache_key] = (now, found)
        return found

    def _route(
        self, fd: int, address: tuple[Any, ...] | None, from_local: bool
    ) -> tuple[bytes, bytes, bytes, bytes, int, int]:
        """The program's route for a send by ``fd`` (to ``address``, or its peer)."""
        if fd < 0:
            return _NO_ROUTE
        src_host, src_port = _sockname(fd, peer=False)
        if address is None:
            dst_host, dst_port = _sockname(fd, peer=True)
        else:
            dst_host, dst_port = str(address[0]), int(address[1])
        if src_host == "0.0.0.0":
            raise NotForKernel("socket bound to the wildcard address")
        try:
            dst_packed = socket.inet_aton(dst_host)
        except OSError:
            raise NotForKernel(f"not an IPv4 destination: {dst_host}") from None
        found = self._route_to(dst_host, src_host)
        if found.local != from_local:
            # a remote party's packet to a local address would enter the stack with a
            # local source (a martian, RFC 1812 5.3.7); a local sender's packet sent out
            # keeps its loopback route, which redirect_neigh leaks on older kernels
            raise NotForKernel("a party on this host and one elsewhere")
        return (
            socket.inet_aton(src_host),
            dst_packed,
            _port(src_port),
            _port(dst_port),
            found.ifindex,
            1 if found.local else 0,
        )

    def _attach_kernel(
        self,
        in_fd: int,
        family: int,
        rtp_fd: int,
        rtp_address: tuple[Any, ...] | None,
        rtcp_fd: int,
        rtcp_address: tuple[Any, ...] | None,
        state: tuple[Any, ...],
    ) -> int:
        if family != socket.AF_INET:
            raise NotForKernel("not IPv4")
        if not 0 < int(state[14]) <= MAX_CLOCK_RATE:
            raise NotForKernel(f"clock rate {state[14]} Hz")
        local_host, local_port = _sockname(in_fd, peer=False)
        remote_host, remote_port = _sockname(in_fd, peer=True)
        if local_host == "0.0.0.0":
            raise NotForKernel("flow socket bound to the wildcard address")
        from_local = self._route_to(remote_host).local
        rtp = self._route(rtp_fd, rtp_address, from_local)
        rtcp = self._route(rtcp_fd, rtcp_address, from_local)
        key = _KEY.pack(
            socket.inet_aton(local_host),
            socket.inet_aton(remote_host),
            _port(local_port),
            _port(remote_port),
        )
        value = _LANE.pack(
            0, int(state[14]), *_KEY.unpack(key), 0, *rtp, *rtcp, *_state_in(state), 0, 0, 0
        )
        self._program.insert(key, value)
        handle = self._next_handle
        self._next_handle -= 1
        self._lanes[handle] = _Lane(key, int(state[0]), int(state[1]))
        return handle

    def _counts(self, lane: _Lane, value: bytes) -> Counts:
        """The lane's state and what it sent since the last report; marks it taken."""
        fields = _LANE.unpack(value)
        packets_out, bytes_out, send_errors = fields[_OUT_AT:]
        state = _state_out(fields[_STATE_AT:_OUT_AT], int(fields[1]))
        counts: Counts = (
            state,
            packets_out - lane.packets_out,
            bytes_out - lane.bytes_out,
            send_errors - lane.send_errors,
            0,
        )
        self._relayed_taken += packets_out - lane.packets_out
        lane.packets_in, lane.bytes_in = fields[_STATE_AT], fields[_STATE_AT + 1]
        lane.packets_out, lane.bytes_out, lane.send_errors = packets_out, bytes_out, send_errors
        return counts


def _state_in(state: tuple[Any, ...]) -> tuple[int, ...]:
    """StreamStats' state tuple (:data:`STATE_FIELDS`) in the program's integers: 15
    fields, the clock rate left out, the transit split in two.

    The transit becomes an arrival and a timestamp whose difference it is: the last
    packet's arrival, and the timestamp that makes the difference exact to the
    nanosecond of a unit. ValueError when a field does not fit the program's integers.
    """
    last_at, ssrc, transit, jitter, clock_rate = (state[i] for i in (2, 3, 9, 13, 14))
    has_packet = last_at == last_at  # NaN: no packet yet
    last_ns = max(1, round(last_at * NS_PER_S)) if has_packet else 0
    transit_at_ns = transit_ts_ns = 0
    if has_packet and ssrc >= 0:
        transit_at_ns = last_ns
        transit_ts_ns = round((last_at * clock_rate - transit) * NS_PER_S)
    fields = (
        *state[:2], last_ns, *state[3:9], transit_at_ns, transit_ts_ns, *state[10:13],
        round(jitter * NS_PER_S),
    )  # fmt: skip
    if any(not -_INT64 <= int(field) < _INT64 for field in fields):
        raise ValueError("a statistic is out of the kernel forwarder's range")
    return fields


def _state_out(fields: tuple[int, ...], clock_rate: int) -> tuple[Any, ...]:
    """The program's integers (see :func:`_state_in`) as StreamStats' state tuple."""
    last_ns, transit_at_ns, transit_ts_ns, jitter_ns = (fields[i] for i in (2, 9, 10, 14))
    last_at = last_ns / NS_PER_S if last_ns else float("nan")
    transit = (transit_at_ns * clock_rate - transit_ts_ns) / NS_PER_S
    return (
        *fields[:2], last_at, *fields[3:9], transit, *fields[11:14], jitter_ns / NS_PER_S,
        clock_rate,
    )  # fmt: skip


def _link_type(name: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{name}/type").read_text())
    except (OSError, ValueError):
        return -1


def media_interfaces(names: Iterable[str] = ()) -> list[int]:
    """The interfaces to attach to: those named (OSError for one that does not exist or
    has no Ethernet header), or every Ethernet and loopback interface of this host.

    Packets that come in by another interface (a tunnel, an interface made after start)
    reach the flow socket, where the gateway reads them and relays the flow itself."""
    wanted = list(names)
    if wanted:
        for name in wanted:
            if _link_type(name) not in ETHERNET_TYPES:
                raise OSError(
                    errno.EINVAL, f"interface {name!r}: not an Ethernet or loopback interface here"
                )
        return [socket.if_nametoindex(name) for name in wanted]
    return [index for index, name in socket.if_nameindex() if _link_type(name) in ETHERNET_TYPES]


@functools.cache
def unavailable_reason() -> str | None:
    """Why the kernel forwarder cannot run here (None: it can): built, libbpf, privileges,
    a kernel with tcx links. Checked by loading the program and attaching it to ``lo``."""
    if not PROGRAM_PATH.exists():
        return (
            f"the kernel forwarder is not built ({PROGRAM_PATH.name} missing: "
            "needs clang and libbpf-dev at install)"
        )
    try:
        forwarder = KernelForwarder([socket.if_nametoindex("lo")], None)
    except OSError as exc:
        return f"the kernel forwarder cannot be loaded: {exc}"
    forwarder.close()
    return None
