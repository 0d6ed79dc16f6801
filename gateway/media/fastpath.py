"""The relay's native forwarder: latched RTP served by a thread outside the interpreter.

Once a party is latched on a flow socket (:mod:`gateway.media.forward`) and
nothing in the gateway needs to hear its packets (no capture tap), its
direction of the stream becomes a *lane* of the :class:`Engine`, a C
extension (``_fastpath.c``, built by ``pip install``): one thread waits on an
epoll set of every lane's flow socket and relays each datagram by the lane's
routes, with the same RTCP-mux split, the same counting and the same RFC 3550
statistics as :meth:`RtpReceiver.relay`, and never takes the GIL. The event
loop keeps everything else: the first socket (latching, foreign packets),
RTCP ports, SIP, the store. A lane is given back to Python (``detach``, with
its statistics) whenever its routes, its tap or its socket change, and
attached again with the new routes.

Where the extension is missing (no compiler at install time, not Linux) the
relay says so at start-up and relays every packet in Python.
"""

from __future__ import annotations

from typing import Any, Protocol

try:
    from gateway.media import _fastpath  # type: ignore[attr-defined]  # C, no stubs
except ImportError as exc:  # not built: pure-Python relaying
    _fastpath = None
    UNAVAILABLE_REASON: str | None = f"the native forwarder is not built ({exc})"
else:
    UNAVAILABLE_REASON = None

Counts = tuple[tuple[Any, ...], int, int, int, int]
"""What a lane reports: (sender's statistics state, packets out, bytes out, send errors,
receive errors), the four counts since the last report."""


class Engine(Protocol):
    """The native forwarder's interface (``_fastpath.Engine``)."""

    @property
    def lanes(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    @property
    def relayed(self) -> int: ...

    def attach(
        self,
        in_fd: int,
        family: int,
        rtp_fd: int,
        rtp_address: tuple[Any, ...] | None,
        rtcp_fd: int,
        rtcp_address: tuple[Any, ...] | None,
        state: tuple[Any, ...],
    ) -> int: ...

    def poll(self, handle: int) -> Counts: ...

    def last_packet_at(self, handle: int) -> float: ...

    def pending(self) -> tuple[int, int, int, int]: ...

    def detach(self, handle: int) -> Counts: ...

    def close(self) -> None: ...


def available() -> bool:
    """Whether the native forwarder was built for this interpreter."""
    return _fastpath is not None


def new_engine() -> Engine:
    """A forwarder with no lanes; its thread starts with the first lane."""
    if _fastpath is None:
        raise RuntimeError(UNAVAILABLE_REASON)
    engine: Engine = _fastpath.Engine()
    return engine
