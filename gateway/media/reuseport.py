"""Whether this kernel hands a connected UDP socket its peer's datagrams first.

Flow sockets (:mod:`gateway.media.forward`) share a port with the relay's first
socket through SO_REUSEPORT and are connected to one party. They rely on the
kernel giving a datagram to the group member connected to its source, and any
other datagram to an unconnected member, never to the connected one. Linux
does since 5.4 ("udp: correct reuseport selection with connected sockets");
before that, a connected member could be handed anyone's datagram by the
group's hash, and a flow socket would relay it as the party's.

:func:`connected_sockets_preferred` checks the running kernel once, on
loopback, with sockets of the relay's address family.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import sys

__all__ = ["connected_sockets_preferred"]

_STRANGERS = 8
"""Sources the probe sends from: the group's hash spreads them over its members."""
_LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


@functools.cache
def connected_sockets_preferred(family: socket.AddressFamily) -> bool:
    """True when a connected SO_REUSEPORT member receives exactly its peer's datagrams.

    False on other platforms, when the probe's sockets cannot be made (no IPv6
    loopback, say), or when the kernel hands a stranger's datagram to the
    connected member or the peer's to another.
    """
    if sys.platform != "linux" or not hasattr(socket, "SO_REUSEPORT"):
        return False
    host = _LOOPBACK.get(family)
    if host is None:
        return False
    try:
        with contextlib.ExitStack() as stack:

            def bound(reuseport: bool = False, port: int = 0) -> socket.socket:
                sock = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
                sock.setblocking(False)
                if reuseport:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
                return sock

            first = bound(reuseport=True)
            port = first.getsockname()[1]
            peer = bound()
            flow = bound(reuseport=True, port=port)
            flow.connect(peer.getsockname())
            for stranger in [bound() for _ in range(_STRANGERS)]:
                stranger.sendto(b"s", (host, port))
            peer.sendto(b"p", (host, port))  # loopback delivers before sendto returns
            return _queued(flow) == [b"p"] and _queued(first) == [b"s"] * _STRANGERS
    except OSError:
        return False


def _queued(sock: socket.socket) -> list[bytes]:
    found: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            found.append(sock.recv(16))
    return found
