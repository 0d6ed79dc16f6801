"""IP literals parsed once: SIP and SDP carry the same few addresses in every message.

:func:`ipaddress.ip_address` is pure Python and costs a few microseconds per
call; a gateway compares the Via sent-by with the source (RFC 3261 18.2.1)
and reads every SDP connection address (RFC 4566 5.7), so the same peers'
addresses are parsed many times a call. The parsed objects are immutable,
so one cached object can serve every caller.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CACHED_LITERALS = 4096
"""Distinct texts kept; a gateway talks to far fewer peers than this."""


LONGEST_CACHED = 45
"""Longest text cached: an IPv6 literal with an embedded IPv4 address. A scoped address
(``fe80::1%eth0``) or anything longer is parsed each time, so a peer cannot fill the
cache with long texts of its choosing."""


def ip_literal(text: str) -> IpAddress:
    """``text`` as an IP address; ValueError when it is not an IP literal (not cached).

    No brackets: strip an IPv6 reference's ``[]`` first (RFC 3261 25.1).
    """
    if len(text) > LONGEST_CACHED or "%" in text:
        return ipaddress.ip_address(text)
    return _cached_literal(text)


@lru_cache(maxsize=CACHED_LITERALS)
def _cached_literal(text: str) -> IpAddress:
    return ipaddress.ip_address(text)
