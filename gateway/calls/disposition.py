"""How a call's end is classified in its record.

The final SIP status (RFC 3261 21) of an unanswered call says why it failed;
the gateway's own decisions (no-answer timer, media timeout, drain) are named
by the code that makes them.
"""

from __future__ import annotations

ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no_answer"
CANCELLED = "cancelled"
REJECTED = "rejected"
FAILED = "failed"
MEDIA_TIMEOUT = "media_timeout"
GATEWAY_RESTART = "gateway_restart"

_BUSY_STATUSES = frozenset({486, 600})
_NO_ANSWER_STATUSES = frozenset({408, 480})


def for_failure(status: int) -> str:
    """Disposition of a call whose callee answered the INVITE with a final failure."""
    if status in _BUSY_STATUSES:
        return BUSY
    if status in _NO_ANSWER_STATUSES:
        return NO_ANSWER
    if status == 487:
        return CANCELLED
    if 500 <= status < 600:
        return FAILED
    return REJECTED
