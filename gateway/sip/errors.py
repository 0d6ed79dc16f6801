"""The one exception the SIP message layer raises for malformed input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.sip.message import SipRequest


class SipParseError(ValueError):
    """A SIP message, header or URI that does not follow RFC 3261.

    ``reason`` is short human text usable as the reason phrase of the error
    response (RFC 3261 21.4.1: a 400 "SHOULD" say what was wrong).

    ``partial`` is the request as far as it could be read when enough of it
    (a usable top Via plus From, To, Call-ID and CSeq) is known to answer
    it; ``None`` when the message cannot be answered (responses, garbage).

    ``status`` is the response code RFC 3261 asks for: 400 by default,
    505 for an unsupported SIP-Version (8.2.2.1 / 21.5.6), 416 for a
    Request-URI scheme this element does not handle (8.2.2.1).
    """

    def __init__(
        self, reason: str, partial: SipRequest | None = None, *, status: int = 400
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.status = status
