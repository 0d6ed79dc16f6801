"""Open files the relay may need, and the process's limit raised to fit them.

Every port pair the relay hands out is one side of a call's stream: an RTP
and an RTCP socket, and a flow socket once the party is latched
(:mod:`gateway.media.forward`). A full port range therefore holds three
descriptors per pair, besides the SIP sockets, database connections,
recordings and API connections. Many systems start processes with a soft
limit of 1,024 open files (and a far higher hard one), which the default
range alone outgrows; past it, sockets fail with EMFILE and calls are
refused for want of ports. The gateway raises its soft limit at start, as
far as the hard limit allows (an unprivileged process may).
"""

from __future__ import annotations

import resource
from typing import Final, NamedTuple

DESCRIPTORS_PER_PAIR: Final = 3
"""RTP, RTCP and the flow socket of one side of a stream (two without flow sockets)."""
RESERVE: Final = 512
"""Descriptors for everything else: SIP sockets and connections, the store, the API,
recordings being written, the event loop's own."""


def media_descriptors(port_min: int, port_max: int, *, flow_sockets: bool = True) -> int:
    """Descriptors a process may hold when every pair in ``[port_min, port_max]`` is in use
    (see :class:`~gateway.media.ports.PortPool` for how pairs are counted)."""
    first = port_min + (port_min & 1)
    pairs = max(0, (port_max - first + 1) // 2)
    per_pair = DESCRIPTORS_PER_PAIR if flow_sockets else DESCRIPTORS_PER_PAIR - 1
    return pairs * per_pair + RESERVE


class OpenFilesLimit(NamedTuple):
    """The soft limit before and after :func:`raise_open_files_limit`, the hard one, and
    why the system refused a raise (empty when it did not)."""

    before: int
    after: int
    hard: int
    refused: str = ""

    def fits(self, needed: int) -> bool:
        return self.after == resource.RLIM_INFINITY or self.after >= needed


def raise_open_files_limit(needed: int) -> OpenFilesLimit:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (never lower it), capped by the hard limit.

    A raise the system refuses (a soft limit above what it allows per process, a
    sandbox) leaves the limit as it was, with the reason."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited or soft >= needed:
        return OpenFilesLimit(soft, soft, hard)
    target = needed if hard == unlimited else min(needed, hard)
    if target <= soft:
        return OpenFilesLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:  # CPython reports EPERM and EINVAL as ValueError
        return OpenFilesLimit(soft, soft, hard, str(error))
    return OpenFilesLimit(soft, target, hard)
