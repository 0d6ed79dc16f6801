"""The relay's UDP port pool: an even RTP port and the odd RTCP port above it.

RFC 3550 11: RTP uses an even port and RTCP the next higher (odd) port.
Released pairs go to the back of the queue, so a pair is reused as late as
possible and late packets of an ended call do not land on (or latch) the
next call that gets the pair. A pair that another process holds is skipped
and tried again later.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import socket


class PortPoolExhausted(Exception):
    """No free RTP/RTCP pair is left in the pool (an ``Exception``, not a ``RuntimeError``:
    mypyc compiles subclasses of a few built-in exceptions only)."""


def address_family(host: str) -> socket.AddressFamily:
    """AF_INET or AF_INET6 for an IP literal; ValueError with the reason otherwise."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        raise ValueError(f"media host must be an IP address literal, got {host!r}") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def bind_udp(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``; OSError when the port is taken.

    SO_REUSEADDR stays off, so the bind fails whenever anyone holds the port.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


_HELD_ELSEWHERE = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EPERM})
"""Bind errors that say the port is taken, reserved or denied (a cgroup's bind filter), not
that sockets cannot be made."""


def _skip_or_raise(error: OSError, host: str) -> None:
    """Carry on with the next pair when ``error`` says the port is held elsewhere."""
    if error.errno not in _HELD_ELSEWHERE:
        raise PortPoolExhausted(f"cannot open a media socket on {host}: {error}") from error


class PortPool:
    """Even RTP ports in ``[port_min, port_max]``, each with RTP+1 for RTCP (RFC 3550 11)."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(
                f"port range must satisfy 1 <= port_min <= port_max <= 65535, "
                f"got {port_min}-{port_max}"
            )
        first = port_min + (port_min & 1)
        if first + 1 > port_max:
            raise ValueError(f"port range {port_min}-{port_max} holds no even/odd RTP/RTCP pair")
        self.host = host
        self.family = address_family(host)
        self.port_min = port_min
        self.port_max = port_max
        self._free: collections.deque[int] = collections.deque(range(first, port_max, 2))
        self._in_use: set[int] = set()
        self.capacity = len(self._free)

    @property
    def available(self) -> int:
        """Pairs not handed out (some may be held by other processes at the moment)."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        """Pairs handed out and not yet released."""
        return len(self._in_use)

    def allocate(self) -> tuple[int, int]:
        """An ``(rtp, rtcp)`` pair that is bindable on the host right now."""
        rtp_sock, rtcp_sock = self.bind_pair()
        rtp_port = rtp_sock.getsockname()[1]
        rtp_sock.close()
        rtcp_sock.close()
        return rtp_port, rtp_port + 1

    def bind_pair(self) -> tuple[socket.socket, socket.socket]:
        """Allocate a pair and return its two sockets, bound and non-blocking.

        Binding is the test of freedom: a pair whose bind fails because another
        process holds a port goes to the back of the queue and the next is
        tried. Raises :class:`PortPoolExhausted` when no pair can be bound, or
        at once, with the reason, when no socket can be made at all (out of
        open files, say).
        """
        for _ in range(len(self._free)):
            rtp_port = self._free.popleft()
            try:
                rtp_sock = bind_udp(self.host, rtp_port, self.family)
            except OSError as error:
                self._free.append(rtp_port)
                _skip_or_raise(error, self.host)
                continue
            try:
                rtcp_sock = bind_udp(self.host, rtp_port + 1, self.family)
            except OSError as error:
                rtp_sock.close()
                self._free.append(rtp_port)
                _skip_or_raise(error, self.host)
                continue
            self._in_use.add(rtp_port)
            return rtp_sock, rtcp_sock
        raise PortPoolExhausted(
            f"no free RTP/RTCP port pair on {self.host} in {self.port_min}-{self.port_max} "
            f"({len(self._in_use)} in use, {len(self._free)} held by other processes)"
        )

    def release(self, rtp_port: int) -> None:
        """Return a pair to the pool; ValueError if ``rtp_port`` is not allocated."""
        try:
            self._in_use.remove(rtp_port)
        except KeyError:
            raise ValueError(f"RTP port {rtp_port} is not allocated from this pool") from None
        self._free.append(rtp_port)
