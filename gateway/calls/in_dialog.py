"""In-dialog traffic: every request on one leg is mirrored on the other.

BYE ends both dialogs; re-INVITE and UPDATE (hold, codec change, session
refresh, RFC 3261 14, RFC 3311, RFC 4028) are relayed with their SDP
re-anchored; INFO, NOTIFY, MESSAGE, REFER and the rest are relayed with their
bodies; ACK for a 2xx is relayed only when it carries an SDP answer
(RFC 3264 5). Glare gets 491 (RFC 3261 14.2).
"""

from __future__ import annotations

import logging
from time import monotonic

from gateway.calls import disposition as dispositions
from gateway.calls.anchor import SDP_TYPE, SdpParseError, find_sdp
from gateway.calls.call import CALLEE, CALLER, Call, CallState, Leg
from gateway.calls.consent_flow import CAPTURE_HEADER
from gateway.calls.core import (
    CallCore,
)
from gateway.calls.header_policy import REQUEST_HEADERS, RESPONSE_HEADERS, copy_headers
from gateway.consent.machine import Method
from gateway.sip.dtmf_info import DtmfInfoError, parse_dtmf_info
from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
)

log = logging.getLogger(__name__)


class InDialogRelay(CallCore):
    """Relays requests inside established (or early) dialogs between the two legs."""

    def _on_in_dialog(
        self, call: Call, leg: Leg, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        if leg.dialog is None:
            if leg.side == "a" and call.state is not CallState.ENDED:
                self._ensure_a_dialog(call)
            else:
                self._reply(transaction, request, 481, to_tag=leg.local_tag)
                return
        dialog = leg.dialog
        assert dialog is not None
        if not dialog.check_remote_cseq(request):
            self._reply(transaction, request, 500, "CSeq Out Of Order", to_tag=leg.local_tag)
            return
        method = request.method
        if method == "BYE":
            self._on_bye(call, leg, request, transaction)
            return
        if call.state is CallState.ENDED:
            self._reply(transaction, request, 481, to_tag=leg.local_tag)
            return
        if method in ("INVITE", "UPDATE"):
            self._relay_offer(call, leg, request, transaction)
        elif method == "INFO" and self._consent_info(call, leg, request, transaction):
            return
        else:
            self._relay_request(call, leg, request, transaction, body=request.body)

    def _consent_info(
        self, call: Call, leg: Leg, request: SipRequest, transaction: ServerTransaction
    ) -> bool:
        """INFO that concerns consent; True when the gateway consumed it.

        ``X-Callgate-Capture: pause|resume|stop`` from the tenant's side (its
        PBX) controls capture and is answered here, not relayed (RFC 6086 4.2:
        the gateway is the INFO's recipient). A DTMF body (application/dtmf-relay,
        application/dtmf) is a key press of the sending party; it is also
        relayed, since the far end may be waiting for it.
        """
        consent = call.consent
        if consent is None:
            return False
        command = request.headers.get(CAPTURE_HEADER)
        if command is not None:
            if leg.role != consent.internal:
                self._reply(
                    transaction,
                    request,
                    403,
                    "Capture Control Is For The Tenant's Side",
                    to_tag=leg.local_tag,
                )
            elif consent.capture_command(command.strip().lower(), Method.INFO):
                self._reply(transaction, request, 200, to_tag=leg.local_tag)
            else:
                reason = f"Unknown {CAPTURE_HEADER} {command.strip()[:30]!r}"
                self._reply(transaction, request, 400, reason, to_tag=leg.local_tag)
            return True
        try:
            info = parse_dtmf_info(request.headers.get("Content-Type"), request.body)
        except DtmfInfoError as error:
            log.info("call %s: DTMF INFO not understood: %s", call.record_id, error)
            return False
        if info is not None:
            consent.on_digit(leg.role, info.digit, "info", monotonic())
        return False

    def _on_bye(
        self, call: Call, leg: Leg, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        self._reply(transaction, request, 200, to_tag=leg.local_tag)
        if call.state is CallState.ENDED:
            return
        if call.state is not CallState.ANSWERED and leg.side == "b":
            # RFC 3261 15: a callee may not BYE an early dialog; take it as a refusal, and
            # CANCEL its INVITE, which would otherwise ring on (15.1.1 for the caller's side)
            call.cancel_requested = True
            self._send_cancel_if_due(call)
            self._fail_a(call, 480, "Callee Ended Early Dialog")
            self._finish(call, dispositions.FAILED, CALLEE, "callee sent BYE before answering", 480)
            return
        if call.state is not CallState.ANSWERED and leg.side == "a":
            # a BYE before the answer works as a CANCEL (RFC 3261 15)
            call.cancel_requested = True
            call.cancel_timers()
            self._fail_a(call, 487, "Request Terminated")
            self._send_cancel_if_due(call)
            self._finish(call, dispositions.CANCELLED, CALLER, "caller hung up while ringing", 487)
            return
        other = call.other(leg)
        self._send_bye(other)
        self._finish(
            call, dispositions.ANSWERED, leg.role, f"{leg.role} hung up", call.final_status
        )

    def _relay_offer(
        self, call: Call, leg: Leg, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        """Re-INVITE or UPDATE (hold, codec change, session refresh): RFC 3261 14, RFC 3311."""
        other = call.other(leg)
        if (
            leg.incoming_offer is not None
            or leg.outgoing_offer is not None
            or other.outgoing_offer is not None
        ):
            self._reply(transaction, request, 491, to_tag=leg.local_tag)  # 14.2 glare
            return
        try:
            offer = find_sdp(request.headers.get("Content-Type"), request.body)
        except (SdpParseError, SipParseError) as exc:
            reason = f"Bad SDP: {exc.reason}"[:100]
            self._reply(transaction, request, 400, reason, to_tag=leg.local_tag)
            return
        body = request.body
        if offer is not None and call.anchor is not None:
            if len(offer.sdp.media) > call.anchor.stream_count:
                self._reply(transaction, request, 488, "Too Many Streams", to_tag=leg.local_tag)
                return
            call.anchor.accept(leg.side, offer.sdp)
            body, _ = offer.replace(call.anchor.render(other.side, offer.sdp))
        contacts = request.contacts
        if contacts:
            leg.dialog.update_remote_target(contacts[0])  # type: ignore[union-attr]
        leg.incoming_offer = transaction
        self._relay_request(call, leg, request, transaction, body=body, offer=True)

    def _relay_request(
        self,
        call: Call,
        leg: Leg,
        request: SipRequest,
        transaction: ServerTransaction,
        *,
        body: bytes,
        offer: bool = False,
    ) -> None:
        other = call.other(leg)
        if other.dialog is None:
            self._reply(transaction, request, 481, to_tag=leg.local_tag)
            leg.incoming_offer = None
            return
        relayed = other.dialog.create_request(
            request.method,
            via=self.stack.via(other.transport, toward=other.peer),
            contact=self.stack.contact(other.transport, toward=other.peer),
            body=body,
            content_type=request.headers.get("Content-Type") if body else None,
        )
        copy_headers(request.headers, relayed.headers, REQUEST_HEADERS)
        max_forwards = request.max_forwards
        if max_forwards is not None:
            relayed.headers.set("Max-Forwards", str(max_forwards - 1))
        dest, transport = self._next_hop(other)
        client = self.stack.send_request(relayed, dest, transport)
        if offer:
            other.outgoing_offer = client
        client.user_data = (
            lambda response: self._on_relayed_response(
                call, leg, request, transaction, client, response
            ),
            lambda: self._on_relayed_timeout(call, leg, request, transaction, client),
        )

    def _on_relayed_response(
        self,
        call: Call,
        leg: Leg,
        request: SipRequest,
        transaction: ServerTransaction,
        client: ClientTransaction,
        response: SipResponse,
    ) -> None:
        status = response.status
        if status == 100:
            return
        other = call.other(leg)
        reason = response.reason
        body, content_type = self._relay_body(call, other.side, leg.side, response)
        if body is None:
            body, content_type = b"", None
            status, reason = 488, "Unusable SDP In Answer"
        relayed = make_response(request, status, reason, to_tag=leg.local_tag)
        copy_headers(response.headers, relayed.headers, RESPONSE_HEADERS)
        if body:
            relayed.body = body
            relayed.headers.set("Content-Type", content_type or SDP_TYPE)
        if request.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            relayed.headers.set("Contact", str(self.stack.contact(leg.transport, toward=leg.peer)))
        if status >= 200:
            if other.outgoing_offer is client:
                other.outgoing_offer = None
            if leg.incoming_offer is transaction:
                leg.incoming_offer = None
            if request.method == "INVITE" and 200 <= response.status < 300:
                self._on_reinvite_answered(leg, other, request, response)
        self.stack.send_response(transaction, relayed)

    def _on_reinvite_answered(
        self, leg: Leg, other: Leg, request: SipRequest, response: SipResponse
    ) -> None:
        """ACK the re-INVITE's 2xx on the answering leg now, unless the ACK must carry
        the answer to an offer in that 2xx (RFC 3264 5)."""
        if other.dialog is None:
            return
        if not request.body and response.body:
            other.owed_ack_cseq = response.cseq.seq
            leg.ack_with_answer_for = request.cseq.seq
            return
        ack = other.dialog.create_ack(
            response.cseq.seq, via=self.stack.via(other.transport, toward=other.peer)
        )
        dest, transport = self._next_hop(other)
        self.stack.send_ack(ack, dest, transport)

    def _on_relayed_timeout(
        self,
        call: Call,
        leg: Leg,
        request: SipRequest,
        transaction: ServerTransaction,
        client: ClientTransaction,
    ) -> None:
        other = call.other(leg)
        if other.outgoing_offer is client:
            other.outgoing_offer = None
        if leg.incoming_offer is transaction:
            leg.incoming_offer = None
        self._reply(transaction, request, 408, to_tag=leg.local_tag)
        if request.method == "INVITE" and call.state is CallState.ANSWERED:
            # RFC 3261 14.1: a re-INVITE that times out ends the dialog
            self.terminate(call, reason=f"no answer to re-INVITE from {other.role}")

    def _on_ack(self, ack: SipRequest) -> None:
        """ACK for a 2xx: relayed only when it carries the answer (RFC 3264 5)."""
        tag = ack.to_tag
        found = self._by_tag.get(tag) if tag else None
        if found is None:
            return
        call, leg = found
        if leg.ack_with_answer_for is None or leg.ack_with_answer_for != ack.cseq.seq:
            return  # the other leg's 2xx was ACKed when it arrived
        leg.ack_with_answer_for = None
        other = call.other(leg)
        cseq, other.owed_ack_cseq = other.owed_ack_cseq, None
        if cseq is None or other.dialog is None:
            return
        body, content_type = b"", None
        try:
            answer = find_sdp(ack.headers.get("Content-Type"), ack.body)
        except (SdpParseError, SipParseError) as exc:
            log.warning("call %s: bad SDP in ACK: %s", call.record_id, exc.reason)
            answer = None
        if answer is not None and call.anchor is not None:
            call.anchor.accept(leg.side, answer.sdp)
            body, content_type = answer.replace(call.anchor.render(other.side, answer.sdp))
        ack_out = other.dialog.create_ack(
            cseq,
            via=self.stack.via(other.transport, toward=other.peer),
            body=body,
            content_type=content_type,
        )
        dest, transport = self._next_hop(other)
        self.stack.send_ack(ack_out, dest, transport)
