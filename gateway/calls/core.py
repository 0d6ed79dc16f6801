"""What every part of the B2BUA shares: the call tables, replies, endings, next hops.

:class:`CallCore` holds the active calls and the lookups into them (by the
gateway's own tag on each leg, by the caller's INVITE transaction), and the
operations both the call set-up (:mod:`gateway.calls.b2bua`) and the in-dialog
relay (:mod:`gateway.calls.in_dialog`) use: answering, ending a call (BYE,
CANCEL, record), rendering SDP for a leg and choosing where a request goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.calls import disposition as dispositions
from gateway.calls.anchor import SdpParseError, find_sdp
from gateway.calls.call import GATEWAY, Call, CallState, Leg
from gateway.calls.consent_service import ConsentService
from gateway.calls.overload import AdmissionControl, OverloadLimits
from gateway.calls.routing import RouteTable
from gateway.config import Settings
from gateway.media.relay import MediaRelay
from gateway.net.stack import SipStack
from gateway.net.transports import Address
from gateway.sip.dialog import Dialog
from gateway.sip.errors import SipParseError
from gateway.sip.ip import ip_literal
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.routing import uri_to_address
from gateway.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    build_cancel,
    new_tag,
)
from gateway.store.writer import CallEnd, RecordWriter

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE"
ENDING_WAIT_S = 4.0
"""How long a drain waits for the answers to the BYEs and CANCELs it sent."""
AUTH_RETRY_WINDOW_S = 32.0
"""How long a call whose callee challenged (401/407) waits for the caller's retry."""
TAG_LINGER_S = 2.0
"""How long an ended call still answers requests that crossed its end (a BYE from
the other party sent as ours left): such a request arrives within a round trip, and
a lost one's first two retransmissions (T1 and 3 x T1 later, RFC 3261 17.1.2.2) within
2 s; a later one gets 481, which also ends the dialog for its sender (15.1.2).
Retransmissions of a request that did arrive need no lingering: its transaction
absorbs them (17.2.2). Kept short because every lingering call stays in memory and
the collector walks it: at 420 calls/s of 1 s calls, 4 s of lingering kept about 1,700
ended calls in the collector's middle generation (167k objects, pauses of about
150 ms); 2 s halves the calls and cuts the objects by a sixth."""

ResponseHandler = Callable[[SipResponse], None]
TimeoutHandler = Callable[[], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_address(address: Address) -> str:
    """``host:port``, with IPv6 hosts in brackets (RFC 3986 3.2.2)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    try:
        ip_literal(host)
    except ValueError:
        return False
    return True


def _answers_first_invite(call: Call, message: SipResponse) -> bool:
    """Whether ``message`` answers the B leg's initial INVITE (not a later re-INVITE)."""
    invite = call.b_invite
    cseq = message.cseq
    return invite is not None and cseq.method == "INVITE" and cseq.seq == invite.cseq.seq


class CallCore:
    """Shared state and operations of the back-to-back user agent."""

    def __init__(
        self,
        *,
        settings: Settings,
        stack: SipStack,
        relay: MediaRelay,
        writer: RecordWriter,
        peer_addresses: dict[tuple[str, int], Address] | None = None,
        consent: ConsentService | None = None,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.relay = relay
        self.writer = writer
        self.routes = RouteTable(settings.tenants)
        self.consent = consent or ConsentService(settings, writer)
        self._peer_addresses = peer_addresses or {}
        self.calls: dict[str, Call] = {}
        self.ended: Counter[str] = Counter()
        """Calls ended since start, by disposition (for /metrics)."""
        self.consent_outcomes: Counter[str] = Counter()
        """Calls ended since start, by consent outcome (for /metrics)."""
        self._by_tag: dict[str, tuple[Call, Leg]] = {}
        self._by_server_txn: dict[int, Call] = {}
        self._awaiting_auth: dict[tuple[str, str], Call] = {}
        self._own_hosts = {self.stack.advertised_host}
        self._own_hosts.update(address.host for address in stack.transports.bound)
        self.draining = False
        sip = settings.sip
        self.admission = AdmissionControl(
            OverloadLimits(
                target_lag_s=sip.overload_lag_s,
                sustain_s=sip.overload_sustain_s,
                retry_after_s=sip.overload_retry_after_s,
            )
        )
        """Overload control: which new calls to refuse (:mod:`gateway.calls.overload`)."""
        self._idle_task: asyncio.Task[None] | None = None
        self._all_ended = asyncio.Event()
        self._all_ended.set()
        self._closing: set[asyncio.Future[None]] = set()
        self._endings: set[ClientTransaction] = set()

    async def _wait_for_endings(self, timeout: float) -> None:
        """Wait until the peers answered the BYEs and CANCELs we sent (or ``timeout``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._endings and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def _track_ending(self, transaction: ClientTransaction) -> None:
        """Remember a BYE/CANCEL until its final response or its timeout."""
        self._endings.add(transaction)

        def answered(response: SipResponse) -> None:
            if response.status >= 200:
                self._endings.discard(transaction)

        transaction.user_data = (answered, lambda: self._endings.discard(transaction))

    def _reply(
        self,
        transaction: ServerTransaction,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
    ) -> None:
        response = make_response(request, status, reason, to_tag=to_tag or new_tag())
        self.stack.send_response(transaction, response)

    @staticmethod
    def _release_b_invite(call: Call, *, answered: bool = False) -> None:
        """Once the call has ended, its callee INVITE transaction keeps only what a late
        2xx needs (:class:`~gateway.calls.call.BInviteView`); not while a CANCEL still
        waits for a provisional response (RFC 3261 9.1), unless the INVITE got its final
        response (``answered``) and needs no CANCEL any more."""
        view = call.b_invite_view
        if view is None or call.state is not CallState.ENDED:
            return
        if call.cancel_requested and not call.cancel_sent and not answered:
            return
        view.release()
        call.b_invite_view = None

    def _send_cancel_if_due(self, call: Call) -> None:
        """RFC 3261 9.1: CANCEL only once a provisional response has arrived."""
        if call.cancel_sent or call.b_invite is None or not call.got_provisional:
            return
        call.cancel_sent = True
        cancel = build_cancel(call.b_invite)
        transaction = self.stack.send_request(cancel, call.b.peer, call.b.transport)
        self._track_ending(transaction)

    def _fail_a(self, call: Call, status: int, reason: str) -> None:
        if call.a_final_sent:
            return
        call.a_final_sent = True
        response = make_response(call.a_invite, status, reason, to_tag=call.a.local_tag)
        self.stack.send_response(call.a_transaction, response)

    def terminate(
        self, call: Call, *, reason: str, disposition: str | None = None, status: int | None = None
    ) -> None:
        """End a call from the gateway's side: BYE the answered legs, or fail the ringing one."""
        if call.state is CallState.ENDED:
            return
        if call.state is CallState.ANSWERED:
            self._send_bye(call.a)
            self._send_bye(call.b)
            self._finish(
                call, disposition or dispositions.ANSWERED, GATEWAY, reason, call.final_status
            )
            return
        call.cancel_requested = True
        self._send_cancel_if_due(call)
        self._fail_a(call, status or 503, "Service Unavailable")
        self._finish(call, disposition or dispositions.FAILED, GATEWAY, reason, status or 503)

    def _send_bye(self, leg: Leg) -> None:
        if leg.dialog is not None:
            self._send_bye_dialog(leg.dialog, leg)

    def _send_bye_dialog(self, dialog: Dialog, leg: Leg) -> None:
        bye = dialog.create_request("BYE", via=self.stack.via(leg.transport, toward=leg.peer))
        dest, transport = self._next_hop(leg, dialog)
        transaction = self.stack.send_request(bye, dest, transport)
        self._track_ending(transaction)

    def _finish(
        self,
        call: Call,
        disposition: str,
        hangup_by: str,
        reason: str,
        status: int | None,
    ) -> None:
        """Close the call: its record, its media, its lookups."""
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.cancel_timers()
        call.disposition = disposition
        call.hangup_by = hangup_by
        call.end_reason = reason
        if status is not None:
            call.final_status = status
        media_stats = call.anchor.session.stats() if call.anchor is not None else None
        consent_fields = self.consent.close(call.consent) if call.consent is not None else {}
        self.ended[disposition] += 1
        self.consent_outcomes[str(consent_fields.get("consent_outcome") or "none")] += 1
        self.writer.submit(
            CallEnd(
                record_id=call.record_id,
                ended_at=utcnow(),
                disposition=disposition,
                final_status=call.final_status,
                hangup_by=hangup_by,
                end_reason=reason,
                media_stats=media_stats,
                answered_at=call.answered_at,
                **consent_fields,
            )
        )
        self.calls.pop(call.record_id, None)
        self._by_server_txn.pop(id(call.a_transaction), None)
        # tags stay registered briefly so late in-dialog requests (e.g. a crossing BYE)
        # get a clean answer instead of 481
        loop = asyncio.get_running_loop()
        loop.call_later(TAG_LINGER_S, self._forget_tags, call)
        if call.anchor is not None:
            closing = asyncio.ensure_future(self.relay.close_session(call.anchor.session))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        # the call's SIP side lingers (its tags, a late 2xx from a fork, the transactions'
        # absorbing states: up to 64*T1) and with it this object; its media and consent
        # state, the larger part, are let go now
        call.anchor = None
        call.consent = None
        self._release_b_invite(call)
        if not self.calls:
            self._all_ended.set()
        log.info(
            "call %s ended: %s by %s (%s) status=%s",
            call.record_id,
            disposition,
            hangup_by,
            reason,
            call.final_status,
        )

    def _forget_tags(self, call: Call) -> None:
        for leg in (call.a, call.b):
            if self._by_tag.get(leg.local_tag, (None,))[0] is call:
                del self._by_tag[leg.local_tag]

    def _relay_body(
        self, call: Call, from_side: str, to_side: str, message: SipResponse
    ) -> tuple[bytes | None, str | None]:
        """Body to relay to ``to_side``: SDP re-anchored, other bodies unchanged.

        Returns (None, None) when the SDP is unusable (the caller treats that
        as a failed exchange).
        """
        content_type = message.headers.get("Content-Type")
        try:
            found = find_sdp(content_type, message.body)
        except (SdpParseError, SipParseError) as exc:
            log.warning("call %s: bad SDP from %s: %s", call.record_id, from_side, exc.reason)
            return None, None
        if found is None or call.anchor is None:
            return message.body, content_type
        call.anchor.accept(from_side, found.sdp)
        if (
            to_side == "a"
            and call.early_answer is not None
            and _answers_first_invite(call, message)
        ):
            return call.early_answer
        return found.replace(call.anchor.render(to_side, found.sdp))

    def _a_response(
        self, call: Call, status: int, reason: str, body: bytes, content_type: str | None
    ) -> SipResponse:
        """A response to the caller's INVITE, with the gateway's dialog identity (12.1.1)."""
        response = make_response(
            call.a_invite,
            status,
            reason,
            to_tag=call.a.local_tag,
            body=body,
            content_type=content_type if body else None,
        )
        for record_route in call.a_invite.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", record_route)
        contact = self.stack.contact(call.a.transport, toward=call.a.peer)
        response.headers.set("Contact", str(contact))
        return response

    def _ensure_a_dialog(self, call: Call) -> None:
        if call.a.dialog is None:
            call.a.dialog = Dialog.from_uas(call.a_invite, call.a.local_tag)

    def _ack_b(self, call: Call, response: SipResponse) -> None:
        assert call.b.dialog is not None
        self._ack_dialog(call.b.dialog, call.b, response.cseq.seq)

    def _ack_dialog(self, dialog: Dialog, leg: Leg, cseq: int | None = None) -> None:
        ack = dialog.create_ack(
            cseq if cseq is not None else dialog.local_cseq,
            via=self.stack.via(leg.transport, toward=leg.peer),
        )
        dest, transport = self._next_hop(leg, dialog)
        self.stack.send_ack(ack, dest, transport)

    def _next_hop(self, leg: Leg, dialog: Dialog | None = None) -> tuple[Address, str]:
        """Where an in-dialog request to ``leg`` goes (RFC 3261 12.2.1.1, 8.1.2)."""
        dialog = dialog or leg.dialog
        if dialog is None:
            return leg.peer, leg.transport
        host, port, transport = uri_to_address(dialog.next_hop(), leg.transport)
        transport = transport.lower()
        if transport not in ("udp", "tcp"):
            transport = leg.transport
        if transport == "tcp" and self.stack.transports.has_connection(leg.peer):
            return leg.peer, "tcp"
        if not is_ip(host):
            return leg.peer, leg.transport
        return (host, port), transport
