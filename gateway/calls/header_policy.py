"""Which headers cross the B2BUA from one leg to the other.

A back-to-back user agent ends one dialog and starts another (RFC 3261 6,
"Back-to-Back User Agent"), so no header crosses by default: Via, Route,
Record-Route, Contact, Call-ID, tags and CSeq are the gateway's own on each
leg. What does cross is end-to-end information the parties need: identity,
privacy, diversion, session timers (RFC 4028), authentication challenges and
credentials (RFC 3261 22, so a PBX can authenticate to its trunk), event
packages and INFO packages.
"""

from __future__ import annotations

from gateway.sip.message import Headers

REQUEST_HEADERS: tuple[str, ...] = (
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
    "Privacy",
    "Diversion",
    "History-Info",
    "Session-Expires",
    "Min-SE",
    "Supported",
    "Require",
    "Allow",
    "Allow-Events",
    "Accept",
    "Subject",
    "Priority",
    "Alert-Info",
    "Call-Info",
    "User-to-User",
    "Authorization",
    "Proxy-Authorization",
    "Event",
    "Subscription-State",
    "Info-Package",
    "Recv-Info",
    "Refer-To",
    "Referred-By",
    "Reason",
)

RESPONSE_HEADERS: tuple[str, ...] = (
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Authentication-Info",
    "P-Asserted-Identity",
    "Remote-Party-ID",
    "Session-Expires",
    "Min-SE",
    "Supported",
    "Require",
    "Unsupported",
    "Allow",
    "Allow-Events",
    "Accept",
    "Retry-After",
    "Warning",
    "Reason",
    "Recv-Info",
)

# RFC 3262 reliable provisionals are not offered across the gateway: the
# option tag is removed so each leg stays with plain 18x.
_DROPPED_OPTION_TAGS = frozenset({"100rel"})
_OPTION_TAG_HEADERS = frozenset({"supported", "require"})


def copy_headers(source: Headers, target: Headers, names: tuple[str, ...]) -> None:
    """Append every occurrence of ``names`` from ``source`` to ``target``."""
    for name in names:
        values = source.get_all(name)
        if not values:
            continue
        if name.lower() in _OPTION_TAG_HEADERS:
            values = [v for v in values if v.strip().lower() not in _DROPPED_OPTION_TAGS]
            if not values:
                continue
            target.set(name, ", ".join(values))
            continue
        target.remove(name)
        for value in values:
            target.add(name, value)
