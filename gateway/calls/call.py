"""One call through the gateway: two legs, their dialogs, media, and its record."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.calls.anchor import MediaAnchor
from gateway.calls.routing import Route
from gateway.net.transports import Address
from gateway.sip.dialog import Dialog
from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, parse_message
from gateway.sip.transaction import ClientTransaction, ServerTransaction

if TYPE_CHECKING:
    from gateway.calls.consent_flow import CallConsent

CALLER = "caller"
CALLEE = "callee"
GATEWAY = "gateway"


class CallState(enum.Enum):
    """Where a call is in its life (RFC 3261 13: early, confirmed, terminated)."""

    PLACING = "placing"  # INVITE from A accepted, B leg not yet sent
    CALLING = "calling"  # B INVITE sent, no final response
    ANSWERED = "answered"  # 2xx relayed
    ENDED = "ended"


@dataclass(slots=True)
class Leg:
    """One side of the B2BUA: toward the caller ("a") or the callee ("b")."""

    side: str
    transport: str
    peer: Address
    local_tag: str
    call_id: str
    dialog: Dialog | None = None
    # a re-INVITE/UPDATE this leg sent us that is not answered yet (RFC 3261 14.2 glare)
    incoming_offer: ServerTransaction | None = None
    # a re-INVITE/UPDATE we sent on this leg that is not answered yet
    outgoing_offer: ClientTransaction | None = None
    # CSeq of this leg's INVITE whose 2xx held an offer: its ACK brings the answer (RFC 3264 5)
    ack_with_answer_for: int | None = None
    # CSeq of our INVITE on this leg whose 2xx we have not ACKed yet (waiting for that answer)
    owed_ack_cseq: int | None = None

    @property
    def role(self) -> str:
        return CALLER if self.side == "a" else CALLEE


class BInviteView:
    """What the callee's INVITE transaction answers to: the whole call while it may still
    need it, then (once the call has ended and no CANCEL waits for a provisional) only
    what a late 2xx takes, the INVITE and the leg: that transaction lingers 64*T1 after
    its final response (RFC 6026 7.2), and must not keep the ended call alive with it.

    Released, the view holds the INVITE as the bytes it was sent as: thousands of such
    transactions linger at a few hundred calls a second, and each parsed message is a
    graph of objects that every full collection of the cyclic collector walks, with
    the event loop (SIP and the relay) stopped. A late 2xx, which is rare, parses them
    again (:meth:`request`)."""

    __slots__ = ("call", "invite", "leg")

    def __init__(self, call: Call, invite: SipRequest) -> None:
        self.call: Call | None = call
        self.invite: SipRequest | bytes = invite
        self.leg = call.b

    def release(self) -> None:
        """Let go of the call: keep the leg's address and tags, and the INVITE's bytes."""
        self.call = None
        # the leg's address and tags, not its dialog: a late 2xx makes a dialog of its own
        self.leg = replace(self.leg, dialog=None, incoming_offer=None, outgoing_offer=None)
        if isinstance(self.invite, SipRequest):
            self.invite = bytes(self.invite)

    def request(self) -> SipRequest:
        """The INVITE, parsed again if the view keeps only its bytes."""
        if isinstance(self.invite, SipRequest):
            return self.invite
        message = parse_message(self.invite)
        if not isinstance(message, SipRequest):
            raise SipParseError("the INVITE's bytes parse as a response")
        return message


@dataclass(slots=True)
class Call:
    """Everything the gateway knows about one call."""

    record_id: str
    route: Route
    a: Leg
    b: Leg
    a_invite: SipRequest
    a_transaction: ServerTransaction
    started_at: datetime
    source_addr: Address
    state: CallState = CallState.PLACING
    b_invite: SipRequest | None = None
    b_invite_view: BInviteView | None = None
    anchor: MediaAnchor | None = None
    consent: CallConsent | None = None
    # the SDP answer the gateway gave the caller itself with an early notice (183); the
    # 2xx must repeat it (RFC 3261 13.2.1, RFC 6337 3.1)
    early_answer: tuple[bytes, str] | None = None
    answered_at: datetime | None = None
    answered_monotonic: float | None = None
    got_provisional: bool = False
    cancel_requested: bool = False  # the caller cancelled, or the gateway gave up ringing
    cancel_sent: bool = False
    a_final_sent: bool = False
    final_status: int | None = None
    disposition: str | None = None
    hangup_by: str | None = None
    end_reason: str | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def leg(self, side: str) -> Leg:
        return self.a if side == "a" else self.b

    def other(self, leg: Leg) -> Leg:
        return self.b if leg is self.a else self.a

    def cancel_timers(self) -> None:
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
