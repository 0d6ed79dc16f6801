"""The back-to-back user agent: every call crosses the gateway as two dialogs.

The caller's INVITE ends at the gateway (leg A, the gateway is its UAS) and a
new INVITE leaves for the callee (leg B, the gateway is its UAC); from then
on everything that happens on one leg is mirrored on the other, with SDP
rewritten so media flows through the relay (RFC 3261 6 "Back-to-Back User
Agent", RFC 7092 media-relay B2BUA). The :class:`CallManager` receives the
transaction layer's events, finds the call and leg they belong to by the
gateway's own tags (unique per leg), and drives the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace

from gateway.calls import disposition as dispositions
from gateway.calls.anchor import SDP_TYPE, MediaAnchor, SdpBody, SdpParseError, find_sdp
from gateway.calls.call import CALLEE, CALLER, GATEWAY, BInviteView, Call, CallState, Leg
from gateway.calls.codecs import restrict_to_g711
from gateway.calls.consent_flow import CallFacts
from gateway.calls.consent_service import ConsentService
from gateway.calls.core import (
    ALLOW,
    AUTH_RETRY_WINDOW_S,
    ENDING_WAIT_S,
    format_address,
    utcnow,
)
from gateway.calls.header_policy import REQUEST_HEADERS, RESPONSE_HEADERS, copy_headers
from gateway.calls.in_dialog import InDialogRelay
from gateway.calls.numbers import to_e164, uri_number
from gateway.calls.routing import NoRoute
from gateway.config import Settings
from gateway.media.relay import MediaRelay
from gateway.net.stack import SipStack
from gateway.net.transports import Address
from gateway.sip.dialog import Dialog
from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.transaction import (
    AckTimeout,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionTimeout,
    new_call_id,
    new_tag,
)
from gateway.sip.uri import NameAddr, SipUri
from gateway.store.writer import CallStart, CallUpdate, RecordWriter

log = logging.getLogger(__name__)

OVERLOAD_REPORT_S = 5.0
"""Overload control reports the calls it refused at most this often."""


class CallManager(InDialogRelay):
    """Owns every active call and mirrors each leg's signalling on the other."""

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
        super().__init__(
            settings=settings,
            stack=stack,
            relay=relay,
            writer=writer,
            peer_addresses=peer_addresses,
            consent=consent,
        )
        stack.set_handler(self.handle)
        self._lag_timer: asyncio.TimerHandle | None = None
        self._shed_reported = 0
        self._shed_report_due = 0.0

    def start(self) -> None:
        self._own_hosts.update(address.host for address in self.stack.transports.bound)
        self._idle_task = asyncio.ensure_future(self._watch_media_idle())
        limits = self.admission.limits
        if limits.enabled:
            self.stack.transports.late_after_s = limits.target_lag_s
        loop = asyncio.get_running_loop()
        due = loop.time() + limits.interval_s
        self._lag_timer = loop.call_at(due, self._sample_lag, loop, due)

    def _sample_lag(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """How late this timer ran is the event loop's lag (:mod:`gateway.calls.overload`);
        calls refused since the last report are logged at most every OVERLOAD_REPORT_S."""
        now = loop.time()
        admission = self.admission
        next_due = now + admission.limits.interval_s
        self._lag_timer = loop.call_at(next_due, self._sample_lag, loop, next_due)
        admission.observe(max(0.0, now - due))
        if admission.shed != self._shed_reported and now >= self._shed_report_due:
            log.warning(
                "overload: %d more new calls refused with 503, %d since start "
                "(longest SIP wait so far %.0f ms, event loop lag now %.0f ms)",
                admission.shed - self._shed_reported,
                admission.shed,
                self.stack.transports.max_receive_wait_s * 1000,
                admission.last_lag_s * 1000,
            )
            self._shed_reported = admission.shed
            self._shed_report_due = now + OVERLOAD_REPORT_S

    async def close(self) -> None:
        if self._lag_timer is not None:
            self._lag_timer.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self.consent.stop()

    async def drain(self, timeout: float) -> None:
        """Refuse new calls (503), let active calls end for ``timeout``, then end them."""
        self.draining = True
        if self.calls:
            log.info("draining: %d active calls, waiting up to %.0f s", len(self.calls), timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_ended.wait(), timeout)
        for call in list(self.calls.values()):
            self.terminate(call, reason="gateway shut down", disposition=None)
        await self._wait_for_endings(ENDING_WAIT_S)

    def handle(self, event: Event) -> None:
        """Entry point for every event of the transaction layer."""
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.source, event.transaction)
        elif isinstance(event, ResponseReceived):
            transaction = event.transaction
            handlers = transaction.user_data
            if type(handlers) is BInviteView:
                self._on_b_invite_response_to(handlers, event.response)
            elif handlers is not None:
                if event.response.status >= 200 and transaction.method != "INVITE":
                    # a non-INVITE transaction only absorbs retransmissions of its final
                    # response now (RFC 3261 17.1.2.2, Timer K): it must not keep the
                    # call, its legs and messages alive through its handlers
                    transaction.user_data = None
                handlers[0](event.response)
        elif isinstance(event, TransactionTimeout):
            handlers = event.transaction.user_data
            if type(handlers) is BInviteView:
                self._on_b_invite_timeout_to(handlers)
            elif handlers is not None:
                handlers[1]()
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.invite_transaction)
        elif isinstance(event, AckTimeout):
            call = self._by_server_txn.get(id(event.transaction))
            if call is not None and call.state is not CallState.ENDED:
                log.warning("call %s: no ACK for the 2xx; ending it", call.record_id)
                self.terminate(call, reason="no ACK for the 2xx", disposition=dispositions.FAILED)

    def _on_request(
        self, request: SipRequest, source: Address, transaction: ServerTransaction | None
    ) -> None:
        if request.method == "ACK":
            self._on_ack(request)
            return
        assert transaction is not None
        if request.method == "OPTIONS" and request.to_tag is None:
            self._answer_options(request, transaction)
            return
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._reply(transaction, request, 483)  # RFC 3261 16.3 step 3
            return
        to_tag = request.to_tag
        if to_tag is not None:
            found = self._by_tag.get(to_tag)
            if found is None or found[1].call_id != request.call_id:
                self._reply(transaction, request, 481)
                return
            call, leg = found
            self._on_in_dialog(call, leg, request, transaction)
            return
        if request.method == "INVITE":
            self._on_new_invite(request, source, transaction)
        elif request.method in ("BYE", "CANCEL", "PRACK", "UPDATE", "INFO", "NOTIFY"):
            self._reply(transaction, request, 481)
        else:
            response = make_response(request, 405, to_tag=new_tag())
            response.headers.set("Allow", ALLOW)
            self.stack.send_response(transaction, response)

    def _answer_options(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """RFC 3261 11.2: a health probe gets 200 with our capabilities."""
        status = 503 if self.draining else 200
        response = make_response(request, status, to_tag=new_tag())
        response.headers.set("Allow", ALLOW)
        response.headers.set("Accept", SDP_TYPE)
        response.headers.set("Supported", "timer")
        self.stack.send_response(transaction, response)

    def _on_new_invite(
        self, request: SipRequest, source: Address, transaction: ServerTransaction
    ) -> None:
        retry_key = (request.call_id, request.from_tag or "")
        parked = self._awaiting_auth.pop(retry_key, None)
        if parked is not None and parked.state is not CallState.ENDED:
            self._retry_after_challenge(parked, request, transaction)
            return
        if self.draining:
            response = make_response(request, 503, "Gateway Draining", to_tag=new_tag())
            response.headers.set("Retry-After", "30")
            self.stack.send_response(transaction, response)
            return
        transports = self.stack.transports
        if not self.admission.admit(transports.receive_wait_s, transports.late_for_s()):
            # RFC 6357 5.1 / RFC 3261 21.5.4: refused early and cheaply, before any routing,
            # media or record, so the calls already admitted keep their timing
            response = make_response(request, 503, "Overloaded", to_tag=new_tag())
            response.headers.set("Retry-After", str(self.admission.limits.retry_after_s))
            self.stack.send_response(transaction, response)
            return
        sender = self._original_sender(request, source)
        try:
            route = self.routes.route(sender[0], sender[1], request.uri)
        except NoRoute as exc:
            log.info("403 for INVITE from %s:%s: %s", source[0], source[1], exc)
            self._reply(transaction, request, 403, "No Tenant For This Peer")
            return
        try:
            offer = find_sdp(request.headers.get("Content-Type"), request.body)
        except (SdpParseError, SipParseError) as exc:
            self._reply(transaction, request, 400, f"Bad SDP: {exc.reason}"[:100])
            return
        record_id = str(uuid.uuid4())
        a_transport = "tcp" if transaction.reliable else "udp"
        target = route.target
        b_transport = target.transport
        call = Call(
            record_id=record_id,
            route=route,
            a=Leg("a", a_transport, source, new_tag(), request.call_id),
            b=Leg(
                "b",
                b_transport,
                self._resolve(target.host, target.port),
                new_tag(),
                new_call_id(self.stack.advertised_host),
            ),
            a_invite=request,
            a_transaction=transaction,
            started_at=utcnow(),
            source_addr=source,
        )
        self._register(call)
        region = route.tenant.default_region
        to_uri = request.uri if request.uri.user else request.to.uri
        source_number = to_e164(uri_number(request.from_.uri), region)
        destination_number = to_e164(uri_number(to_uri), region)
        call.consent = self.consent.open(
            CallFacts(record_id, route.tenant.name, route.direction, call.started_at),
            request,
            {CALLER: source_number, CALLEE: destination_number},
            region,
            from_pbx=route.direction == "outbound",
            hang_up=lambda reason: self._consent_hang_up(call, reason),
        )
        self.writer.submit(
            CallStart(
                record_id=record_id,
                tenant=route.tenant.name,
                call_id=request.call_id,
                direction=route.direction,
                source_number=source_number,
                source_uri=str(request.from_.uri),
                destination_number=destination_number,
                destination_uri=str(request.uri),
                source_addr=format_address(source),
                started_at=call.started_at,
                gateway_instance=self.settings.instance_id,
                destination_addr=format_address(call.b.peer),
                b_call_id=call.b.call_id,
                **call.consent.start_fields(),
            )
        )
        self._spawn(call, self._place(call, offer))

    def _original_sender(self, request: SipRequest, source: Address) -> Address:
        """The peer that sent the call: behind a trusted proxy, the Via below its own.

        The proxy stamps that Via with ``received``/``rport`` (RFC 3261 18.2.1,
        RFC 3581 4), so those name the sender as the proxy saw it.
        """
        if not self.settings.sip.is_trusted_proxy(source[0], source[1]):
            return source
        vias = request.vias
        if len(vias) < 2:
            return source
        via = vias[1]
        host = via.received or via.host
        port = via.rport or via.port or 5060
        return (host, port)

    def _resolve(self, host: str, port: int) -> Address:
        return self._peer_addresses.get((host, port), (host, port))

    def _register(self, call: Call) -> None:
        self.calls[call.record_id] = call
        self._all_ended.clear()
        self._by_tag[call.a.local_tag] = (call, call.a)
        self._by_tag[call.b.local_tag] = (call, call.b)
        self._by_server_txn[id(call.a_transaction)] = call

    def _spawn(self, call: Call, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coroutine)
        call.tasks.add(task)
        task.add_done_callback(call.tasks.discard)

    async def _place(self, call: Call, offer: SdpBody | None) -> None:
        """Anchor media and send the B leg's INVITE."""
        streams = len(offer.sdp.media) if offer is not None else 2
        try:
            session = await self.relay.create_session(call.record_id, streams=max(streams, 1))
        except Exception:
            log.exception("call %s: no media ports", call.record_id)
            self._fail_a(call, 503, "No Media Ports")
            self._finish(call, dispositions.FAILED, GATEWAY, "no media ports", 503)
            return
        call.anchor = MediaAnchor(session, self._media_address())
        if call.state is CallState.ENDED:  # cancelled while the ports were bound
            await self.relay.close_session(session)
            return
        if call.consent is not None:
            call.anchor.on_accept = call.consent.learn_sdp
            call.consent.attach(session)
            if offer is not None and call.consent.early and self._notice_early(call, offer):
                return
        self._send_b_invite(call, offer)

    def _notice_early(self, call: Call, offer: SdpBody) -> bool:
        """Answer the caller with 183 and play its notice before the callee rings.

        The gateway answers the offer itself with one G.711 codec (and the
        telephone-events) and offers the callee the same, so both legs agree
        without transcoding; the callee's 2xx reaches the caller with this
        same answer (RFC 3261 13.2.1: an answer in a 1xx is repeated in the
        2xx). False when the offer has no G.711: the call goes on at once.
        """
        assert call.anchor is not None and call.consent is not None
        restricted = restrict_to_g711(offer.sdp)
        if restricted is None:
            call.consent.play_early(lambda: None)  # records why no notice could play
            return False
        call.anchor.accept("a", offer.sdp)
        call.early_answer = offer.replace(call.anchor.render("a", restricted))
        body, content_type = call.early_answer
        self._ensure_a_dialog(call)
        progress = self._a_response(call, 183, "Session Progress", body, content_type)
        self.stack.send_response(call.a_transaction, progress)
        onward = replace(offer, sdp=restricted)
        return call.consent.play_early(lambda: self._after_early_notice(call, onward))

    def _after_early_notice(self, call: Call, offer: SdpBody) -> None:
        if call.state is CallState.PLACING and not call.cancel_requested:
            self._send_b_invite(call, offer)

    def _consent_hang_up(self, call: Call, reason: str) -> None:
        """The policy ends calls without consent: BYE when answered, else 603 (RFC 3261 21.6.2)."""
        if call.state is CallState.ENDED:
            return
        if call.state is CallState.ANSWERED:
            self.terminate(call, reason=reason)
            return
        call.cancel_requested = True
        call.cancel_timers()
        self._send_cancel_if_due(call)
        self._fail_a(call, 603, "Decline")
        self._finish(call, dispositions.REJECTED, GATEWAY, reason, 603)

    def _send_b_invite(self, call: Call, offer: SdpBody | None) -> None:
        """Offer the caller's SDP, re-anchored, to the callee; start ringing time."""
        body, content_type = b"", None
        if offer is not None and call.anchor is not None:
            call.anchor.accept("a", offer.sdp)
            body, content_type = offer.replace(call.anchor.render("b", offer.sdp))
        previous = call.b_invite_view
        if previous is not None:  # a retry after a challenge: that INVITE has its final
            previous.release()
        invite = self._build_b_invite(call, body, content_type)
        call.b_invite = invite
        call.state = CallState.CALLING
        transaction = self.stack.send_request(invite, call.b.peer, call.b.transport)
        view = BInviteView(call, invite)
        call.b_invite_view = view
        # the view itself, not a pair of handlers: the transaction lingers 64*T1 after the
        # call (see BInviteView), and closures would be more objects for the collector
        transaction.user_data = view
        self._arm_no_answer(call)

    def _on_b_invite_response_to(self, view: BInviteView, response: SipResponse) -> None:
        call = view.call
        if call is None:
            self._late_b_response(view, response)
            return
        self._on_b_invite_response(call, response)
        self._release_b_invite(call, answered=response.status >= 200)

    def _on_b_invite_timeout_to(self, view: BInviteView) -> None:
        if view.call is not None:
            self._on_b_invite_timeout(view.call)

    def _late_b_response(self, view: BInviteView, response: SipResponse) -> None:
        """A response to the INVITE of a call that has ended: a 2xx (a fork, or one that
        crossed our CANCEL) is confirmed and its dialog ended (RFC 3261 9.1 note, 13.2.2.4)."""
        if 200 <= response.status < 300:
            try:
                invite = view.request()
            except SipParseError as exc:
                log.warning("late 2xx for an ended call: its INVITE does not parse: %s", exc)
                return
            self._confirm_and_end(invite, view.leg, response)

    def _confirm_and_end(self, invite: SipRequest, leg: Leg, response: SipResponse) -> None:
        """ACK a 2xx the call has no use for, and BYE the dialog it made."""
        dialog = Dialog.from_uac(invite, response)
        self._ack_dialog(dialog, leg, response.cseq.seq)
        self._send_bye_dialog(dialog, leg)

    def _media_address(self) -> str:
        media = self.settings.media
        return media.advertised_address or media.host

    def _build_b_invite(
        self, call: Call, body: bytes, content_type: str | None = None
    ) -> SipRequest:
        a_invite = call.a_invite
        target = call.route.target
        request_uri = a_invite.uri
        if request_uri.host in self._own_hosts or request_uri.host == target.host:
            params = {k: v for k, v in request_uri.params.items() if k not in ("transport",)}
            if target.transport != "udp":
                params["transport"] = target.transport
            request_uri = SipUri(
                scheme=request_uri.scheme if request_uri.scheme != "tel" else "sip",
                user=request_uri.user,
                password=None,
                host=target.host,
                port=target.port,
                params=params,
                headers={},
            )
        from_ = NameAddr(a_invite.from_.display_name, a_invite.from_.uri, {"tag": call.b.local_tag})
        to = NameAddr(a_invite.to.display_name, a_invite.to.uri, {})
        invite = SipRequest("INVITE", request_uri)
        headers = invite.headers
        headers.add("Via", str(self.stack.via(call.b.transport, toward=call.b.peer)))
        max_forwards = a_invite.max_forwards
        headers.add("Max-Forwards", str((max_forwards if max_forwards is not None else 70) - 1))
        headers.add("From", str(from_))
        headers.add("To", str(to))
        headers.add("Call-ID", call.b.call_id)
        # Same CSeq number as the caller's INVITE keeps RAck/CSeq references aligned.
        headers.add("CSeq", str(CSeq(a_invite.cseq.seq, "INVITE")))
        headers.add("Contact", str(self.stack.contact(call.b.transport, toward=call.b.peer)))
        copy_headers(a_invite.headers, headers, REQUEST_HEADERS)
        if body:
            headers.set("Content-Type", content_type or SDP_TYPE)
            invite.body = body
        elif a_invite.body and a_invite.content_type != SDP_TYPE:
            headers.set("Content-Type", a_invite.headers.get("Content-Type") or "")
            invite.body = a_invite.body
        return invite

    def _arm_no_answer(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.settings.sip.no_answer_timeout_s
        call.timers.append(loop.call_later(timeout, self._on_no_answer, call))

    def _on_b_invite_response(self, call: Call, response: SipResponse) -> None:
        status = response.status
        if status == 100:
            # RFC 3261 9.1: any provisional response, 100 Trying too, lets a CANCEL go
            call.got_provisional = True
            if call.cancel_requested:
                self._send_cancel_if_due(call)
            return
        if call.state is CallState.ENDED or call.cancel_requested:
            self._after_cancel_response(call, response)
            return
        if status < 200:
            self._on_b_provisional(call, response)
        elif status < 300:
            self._on_b_answer(call, response)
        else:
            self._on_b_failure(call, response)

    def _after_cancel_response(self, call: Call, response: SipResponse) -> None:
        """The caller (or the no-answer timer) already gave up on this INVITE."""
        status = response.status
        if status < 200:
            call.got_provisional = True
            self._send_cancel_if_due(call)
        elif status < 300:
            # the 2xx crossed our CANCEL: confirm and end that dialog (RFC 3261 9.1 note)
            dialog = Dialog.from_uac(call.b_invite, response)  # type: ignore[arg-type]
            call.b.dialog = dialog
            self._ack_b(call, response)
            self._send_bye(call.b)

    def _on_b_provisional(self, call: Call, response: SipResponse) -> None:
        call.got_provisional = True
        if response.to_tag is not None and call.b.dialog is None:
            call.b.dialog = Dialog.from_uac(call.b_invite, response)  # type: ignore[arg-type]
        self._ensure_a_dialog(call)
        body, content_type = self._relay_body(call, "b", "a", response)
        if body is None:
            return
        relayed = self._a_response(call, response.status, response.reason, body, content_type)
        copy_headers(response.headers, relayed.headers, RESPONSE_HEADERS)
        self.stack.send_response(call.a_transaction, relayed)

    def _on_b_answer(self, call: Call, response: SipResponse) -> None:
        if call.state is CallState.ANSWERED:
            if call.b.dialog is not None and response.to_tag != call.b.dialog.remote_tag:
                # a second fork answered: confirm and release it
                self._confirm_and_end(call.b_invite, call.b, response)  # type: ignore[arg-type]
            return
        call.cancel_timers()
        call.b.dialog = Dialog.from_uac(call.b_invite, response)  # type: ignore[arg-type]
        body, content_type = self._relay_body(call, "b", "a", response)
        if body is None:
            self._ack_b(call, response)
            self._send_bye(call.b)
            self._fail_a(call, 502, "Bad SDP From Callee")
            self._finish(call, dispositions.FAILED, GATEWAY, "unusable SDP in the answer", 502)
            return
        if not call.b_invite.body and body:  # type: ignore[union-attr]
            # the 2xx holds the offer: the caller's ACK brings the answer for the callee
            call.b.owed_ack_cseq = response.cseq.seq
            call.a.ack_with_answer_for = call.a_invite.cseq.seq
        else:
            self._ack_b(call, response)
        relayed = self._a_response(call, response.status, response.reason, body, content_type)
        copy_headers(response.headers, relayed.headers, RESPONSE_HEADERS)
        self._ensure_a_dialog(call)
        call.state = CallState.ANSWERED
        call.answered_at = utcnow()
        call.answered_monotonic = asyncio.get_running_loop().time()
        call.final_status = response.status
        call.a_final_sent = True
        self.stack.send_response(call.a_transaction, relayed)
        self.writer.submit(CallUpdate(record_id=call.record_id, answered_at=call.answered_at))
        if call.consent is not None:
            call.consent.answered()

    def _on_b_failure(self, call: Call, response: SipResponse) -> None:
        call.cancel_timers()
        status = response.status
        relayed = make_response(call.a_invite, status, response.reason, to_tag=call.a.local_tag)
        copy_headers(response.headers, relayed.headers, RESPONSE_HEADERS)
        if 300 <= status < 400:
            for contact in response.headers.get_all("Contact"):
                relayed.headers.add("Contact", contact)
        call.a_final_sent = True
        call.final_status = status
        self.stack.send_response(call.a_transaction, relayed)
        if status in (401, 407):
            self._park_for_auth(call)
            return
        self._finish(
            call, dispositions.for_failure(status), CALLEE, f"callee answered {status}", status
        )

    def _on_b_invite_timeout(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        call.cancel_timers()
        if not call.cancel_requested:
            self._fail_a(call, 408, "Callee Not Responding")
        self._finish(call, dispositions.FAILED, GATEWAY, "no response from callee", 408)

    def _on_no_answer(self, call: Call) -> None:
        """The configured ringing time ran out: CANCEL the callee, tell the caller."""
        if call.state is not CallState.CALLING or call.cancel_requested:
            return
        call.cancel_requested = True
        self._send_cancel_if_due(call)
        self._fail_a(call, 480, "No Answer")
        self._finish(call, dispositions.NO_ANSWER, GATEWAY, "no answer timeout", 480)

    def _park_for_auth(self, call: Call) -> None:
        """Keep the call for the caller's authenticated retry (RFC 3261 22.2)."""
        key = (call.a_invite.call_id, call.a_invite.from_tag or "")
        self._awaiting_auth[key] = call
        call.state = CallState.PLACING
        loop = asyncio.get_running_loop()
        call.timers.append(loop.call_later(AUTH_RETRY_WINDOW_S, self._auth_window_over, call, key))

    def _auth_window_over(self, call: Call, key: tuple[str, str]) -> None:
        if self._awaiting_auth.get(key) is call:
            del self._awaiting_auth[key]
            status = call.final_status or 407
            self._finish(call, dispositions.REJECTED, CALLEE, f"callee answered {status}", status)

    def _retry_after_challenge(
        self, call: Call, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        """The caller retried with credentials: same call, same B dialog identifiers."""
        call.cancel_timers()
        self._by_server_txn.pop(id(call.a_transaction), None)
        call.a_invite = request
        call.a_transaction = transaction
        call.a_final_sent = False
        call.got_provisional = False
        call.b.dialog = None
        self._by_server_txn[id(transaction)] = call
        try:
            offer = find_sdp(request.headers.get("Content-Type"), request.body)
        except (SdpParseError, SipParseError) as exc:
            self._reply(transaction, request, 400, f"Bad SDP: {exc.reason}"[:100])
            self._finish(call, dispositions.FAILED, CALLER, "bad SDP in retry", 400)
            return
        self._send_b_invite(call, offer)

    def _on_cancel(self, invite_transaction: ServerTransaction) -> None:
        """RFC 3261 9.2: the layer answered the CANCEL; we answer the INVITE with 487."""
        call = self._by_server_txn.get(id(invite_transaction))
        if call is None:
            return
        if call.a_final_sent or call.state is CallState.ENDED:
            return
        call.cancel_requested = True
        call.cancel_timers()
        self._fail_a(call, 487, "Request Terminated")
        self._send_cancel_if_due(call)
        self._finish(call, dispositions.CANCELLED, CALLER, "caller cancelled", 487)

    async def _watch_media_idle(self) -> None:
        """End answered calls whose media stopped in both directions (media timeout)."""
        active_limit = self.settings.media.timeout_s
        hold_limit = self.settings.media.hold_timeout_s
        loop = asyncio.get_running_loop()
        interval = min(1.0, active_limit / 4)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for call in list(self.calls.values()):
                if call.state is not CallState.ANSWERED or call.anchor is None:
                    continue
                limit = hold_limit if call.anchor.on_hold else active_limit
                if limit <= 0:
                    continue
                last = max(call.anchor.session.last_activity, call.answered_monotonic or 0.0)
                if now - last >= limit:
                    held = " on hold" if call.anchor.on_hold else ""
                    self.terminate(
                        call,
                        reason=f"no RTP for {limit:g} s{held}",
                        disposition=dispositions.MEDIA_TIMEOUT,
                    )
