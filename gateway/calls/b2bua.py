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
import ipaddress
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.calls import disposition as dispositions
from gateway.calls.anchor import SDP_TYPE, MediaAnchor, SdpBody, SdpParseError, find_sdp
from gateway.calls.call import CALLEE, CALLER, GATEWAY, Call, CallState, Leg
from gateway.calls.header_policy import REQUEST_HEADERS, RESPONSE_HEADERS, copy_headers
from gateway.calls.numbers import to_e164, uri_number
from gateway.calls.routing import NoRoute, RouteTable
from gateway.config import Settings
from gateway.media.relay import MediaRelay
from gateway.net.stack import SipStack
from gateway.net.transports import Address
from gateway.sip.dialog import Dialog
from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.routing import uri_to_address
from gateway.sip.transaction import (
    AckTimeout,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionTimeout,
    build_cancel,
    new_call_id,
    new_tag,
)
from gateway.sip.uri import NameAddr, SipUri
from gateway.store.writer import CallEnd, CallStart, CallUpdate, RecordWriter

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE"
ENDING_WAIT_S = 4.0
"""How long a drain waits for the answers to the BYEs and CANCELs it sent."""
AUTH_RETRY_WINDOW_S = 32.0
"""How long a call whose callee challenged (401/407) waits for the caller's retry."""

ResponseHandler = Callable[[SipResponse], None]
TimeoutHandler = Callable[[], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _format_address(address: Address) -> str:
    """``host:port``, with IPv6 hosts in brackets (RFC 3986 3.2.2)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CallManager:
    """Owns every active call and mirrors each leg's signalling on the other."""

    def __init__(
        self,
        *,
        settings: Settings,
        stack: SipStack,
        relay: MediaRelay,
        writer: RecordWriter,
        peer_addresses: dict[tuple[str, int], Address] | None = None,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.relay = relay
        self.writer = writer
        self.routes = RouteTable(settings.tenants)
        self._peer_addresses = peer_addresses or {}
        self.calls: dict[str, Call] = {}
        self._by_tag: dict[str, tuple[Call, Leg]] = {}
        self._by_server_txn: dict[int, Call] = {}
        self._awaiting_auth: dict[tuple[str, str], Call] = {}
        self._own_hosts = {self.stack.advertised_host}
        self._own_hosts.update(address.host for address in stack.transports.bound)
        self.draining = False
        self._idle_task: asyncio.Task[None] | None = None
        self._all_ended = asyncio.Event()
        self._all_ended.set()
        self.completed = 0
        self._closing: set[asyncio.Future[None]] = set()
        self._endings: set[ClientTransaction] = set()
        stack.set_handler(self.handle)

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self._own_hosts.update(address.host for address in self.stack.transports.bound)
        self._idle_task = asyncio.ensure_future(self._watch_media_idle())

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()

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

    # ---------------------------------------------------------------- events

    def handle(self, event: Event) -> None:
        """Entry point for every event of the transaction layer."""
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.source, event.transaction)
        elif isinstance(event, ResponseReceived):
            handlers = event.transaction.user_data
            if handlers is not None:
                handlers[0](event.response)
        elif isinstance(event, TransactionTimeout):
            handlers = event.transaction.user_data
            if handlers is not None:
                handlers[1]()
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.invite_transaction)
        elif isinstance(event, AckTimeout):
            call = self._by_server_txn.get(id(event.transaction))
            if call is not None and call.state is not CallState.ENDED:
                log.warning("call %s: no ACK for the 2xx; ending it", call.record_id)
                self.terminate(
                    call, reason="no ACK for the 2xx", disposition=dispositions.FAILED
                )

    def _on_request(
        self, request: SipRequest, source: Address, transaction: ServerTransaction | None
    ) -> None:
        if request.method == "ACK":
            self._on_ack(request)
            return
        assert transaction is not None
        if request.method == "OPTIONS" and request.to.tag is None:
            self._answer_options(request, transaction)
            return
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._reply(transaction, request, 483)  # RFC 3261 16.3 step 3
            return
        to_tag = request.to.tag
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

    # ------------------------------------------------------------ new calls

    def _on_new_invite(
        self, request: SipRequest, source: Address, transaction: ServerTransaction
    ) -> None:
        retry_key = (request.call_id, request.from_.tag or "")
        parked = self._awaiting_auth.pop(retry_key, None)
        if parked is not None and parked.state is not CallState.ENDED:
            self._retry_after_challenge(parked, request, transaction)
            return
        if self.draining:
            response = make_response(request, 503, "Gateway Draining", to_tag=new_tag())
            response.headers.set("Retry-After", "30")
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
            started_at=_utcnow(),
            source_addr=source,
        )
        self._register(call)
        region = route.tenant.default_region
        to_uri = request.uri if request.uri.user else request.to.uri
        self.writer.submit(
            CallStart(
                record_id=record_id,
                tenant=route.tenant.name,
                call_id=request.call_id,
                direction=route.direction,
                source_number=to_e164(uri_number(request.from_.uri), region),
                source_uri=str(request.from_.uri),
                destination_number=to_e164(uri_number(to_uri), region),
                destination_uri=str(request.uri),
                source_addr=_format_address(source),
                started_at=call.started_at,
                gateway_instance=self.settings.instance_id,
                destination_addr=_format_address(call.b.peer),
                b_call_id=call.b.call_id,
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
        self._send_b_invite(call, offer)

    def _send_b_invite(self, call: Call, offer: SdpBody | None) -> None:
        """Offer the caller's SDP, re-anchored, to the callee; start ringing time."""
        body, content_type = b"", None
        if offer is not None and call.anchor is not None:
            call.anchor.accept("a", offer.sdp)
            body, content_type = offer.replace(call.anchor.render("b", offer.sdp))
        invite = self._build_b_invite(call, body, content_type)
        call.b_invite = invite
        call.state = CallState.CALLING
        transaction = self.stack.send_request(invite, call.b.peer, call.b.transport)
        transaction.user_data = (
            lambda response: self._on_b_invite_response(call, response),
            lambda: self._on_b_invite_timeout(call),
        )
        call.b_transaction = transaction
        self._arm_no_answer(call)

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

    # ------------------------------------------------------ B INVITE outcome

    def _on_b_invite_response(self, call: Call, response: SipResponse) -> None:
        status = response.status
        if status == 100:
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
        if response.to.tag is not None and call.b.dialog is None:
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
            if call.b.dialog is not None and response.to.tag != call.b.dialog.remote_tag:
                # a second fork answered: confirm and release it
                extra = Dialog.from_uac(call.b_invite, response)  # type: ignore[arg-type]
                self._ack_dialog(extra, call.b, response.cseq.seq)
                self._send_bye_dialog(extra, call.b)
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
        call.answered_at = _utcnow()
        call.answered_monotonic = asyncio.get_running_loop().time()
        call.final_status = response.status
        call.a_final_sent = True
        self.stack.send_response(call.a_transaction, relayed)
        self.writer.submit(CallUpdate(record_id=call.record_id, answered_at=call.answered_at))

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

    # ------------------------------------------------------------ challenges

    def _park_for_auth(self, call: Call) -> None:
        """Keep the call for the caller's authenticated retry (RFC 3261 22.2)."""
        key = (call.a_invite.call_id, call.a_invite.from_.tag or "")
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

    # -------------------------------------------------------------- CANCEL

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

    # ------------------------------------------------------ in-dialog traffic

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
        else:
            self._relay_request(call, leg, request, transaction, body=request.body)

    def _on_bye(
        self, call: Call, leg: Leg, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        self._reply(transaction, request, 200, to_tag=leg.local_tag)
        if call.state is CallState.ENDED:
            return
        if call.state is not CallState.ANSWERED and leg.side == "b":
            # RFC 3261 15: a callee may not BYE an early dialog; take it as a refusal
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
        if leg.incoming_offer is not None or other.outgoing_offer is not None or (
            leg.outgoing_offer is not None
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
            relayed.headers.set(
                "Contact", str(self.stack.contact(leg.transport, toward=leg.peer))
            )
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
        tag = ack.to.tag
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

    # ------------------------------------------------------------- endings

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
        self.writer.submit(
            CallEnd(
                record_id=call.record_id,
                ended_at=_utcnow(),
                disposition=disposition,
                final_status=call.final_status,
                hangup_by=hangup_by,
                end_reason=reason,
                media_stats=media_stats,
                answered_at=call.answered_at,
            )
        )
        self.calls.pop(call.record_id, None)
        self._by_server_txn.pop(id(call.a_transaction), None)
        # tags stay registered briefly so late in-dialog requests (e.g. a crossing BYE)
        # get a clean answer instead of 481
        loop = asyncio.get_running_loop()
        loop.call_later(32.0, self._forget_tags, call)
        if call.anchor is not None:
            closing = asyncio.ensure_future(self.relay.close_session(call.anchor.session))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self.completed += 1
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

    # -------------------------------------------------------------- helpers

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
        if not _is_ip(host):
            return leg.peer, leg.transport
        return (host, port), transport

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
