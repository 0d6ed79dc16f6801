"""Demo SIP phones: user agents that place and answer real calls with real RTP.

A :class:`Phone` is one UDP SIP socket run by the gateway's own
:class:`~gateway.net.stack.SipStack` (and so its transaction layer, RFC 3261
17) with a small UA core on top; each call is a :class:`PhoneCall` with its
own :class:`~gateway.demo.rtp_endpoint.RtpEndpoint` and
:class:`~gateway.demo.script.AudioScript`.

As caller (UAC): the INVITE is built as RFC 3261 8.1.1 says (Request-URI,
To, From with a tag, Call-ID, CSeq, Max-Forwards, Via, Contact) with an SDP
offer (RFC 3264 5). Provisional responses are recorded; one with SDP starts
early media. A 2xx creates the dialog (12.1.2) and is ACKed through it
(13.2.2.4); a 2xx from a second fork is ACKed and ended with BYE. A failure
ends the call with its status (the transaction layer ACKs it, 17.1.1.3).
:meth:`PhoneCall.hangup` sends CANCEL before the answer (9.1: only once a
provisional response has arrived) and BYE after it (15.1.1).

As callee (UAS): every new INVITE is answered as :class:`AnswerMode` says:
rejected with a final status, or 180 (or 183 with SDP for early media), then
200 with the SDP answer after ``ring_s`` (13.3.1). A CANCEL before the 200
gets the INVITE a 487 (9.2). In a dialog, BYE ends the call (15.1.2), INFO
is recorded, a re-INVITE or UPDATE with an offer is answered, OPTIONS gets
200; a request for an unknown dialog gets 481 (12.2.2).

Times (``media_t0``, ``answered_at``, the sent log, packet arrivals) are
``time.monotonic()`` seconds. A script's times count from the phone's media
start: for the caller the first 18x with SDP or the 2xx, whichever comes
first; for the callee the sending of its 200 (or of its 183 with early media).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from gateway.demo.rtp_endpoint import RtpEndpoint, answer_sdp, offer_sdp, remote_media
from gateway.demo.script import AudioScript, Digit, Hangup, RenderedScript
from gateway.media.rtp import RtpPacket
from gateway.net.stack import SipStack
from gateway.net.transports import Address, ListenAddress
from gateway.sip.dialog import Dialog
from gateway.sip.dtmf_info import DTMF_RELAY, DtmfInfoError, parse_dtmf_info
from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.routing import uri_to_address
from gateway.sip.sdp import SdpParseError, SessionDescription
from gateway.sip.timers import TimerConfig
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

log = logging.getLogger(__name__)

__all__ = ["AnswerMode", "CallNotAnswered", "Phone", "PhoneCall"]

SDP_TYPE: Final = "application/sdp"
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS, UPDATE"
TRANSPORT: Final = "udp"
TAG_LINGER_S: Final = 32.0
"""How long an ended call still answers late requests in its dialog (64*T1, RFC 3261 17)."""

CALLING, EARLY, ANSWERED, ENDED = "calling", "early", "answered", "ended"

ResponseHandlers = tuple[Callable[[SipResponse], None], Callable[[], None]]


class CallNotAnswered(Exception):
    """Set on :attr:`PhoneCall.answered` when a call ends without being answered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AnswerMode:
    """How a phone answers incoming calls.

    ``reject_status``: answer every INVITE with this final status at once.
    Otherwise 180 Ringing (183 with the SDP answer when ``early_media``), and
    200 OK ``ring_s`` later; ``script`` plays from the 200 (or the 183);
    ``auto_hangup_s`` after the answer the phone sends BYE (None: never).
    """

    ring_s: float = 0.2
    script: AudioScript = field(default_factory=AudioScript)
    auto_hangup_s: float | None = None
    reject_status: int | None = None
    early_media: bool = False
    codecs: tuple[int, ...] = (0, 8)


def _sdp_of(message: SipRequest | SipResponse) -> SessionDescription | None:
    """The SDP body of a message (plain application/sdp), None when it has none."""
    if not message.body or message.content_type != SDP_TYPE:
        return None
    return SessionDescription.parse(message.body)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    future.exception()


class PhoneCall:
    """One call of a :class:`Phone`, placed or received (see the module notes)."""

    def __init__(
        self,
        phone: Phone,
        *,
        direction: str,
        invite: SipRequest,
        peer: Address,
        local_tag: str,
        script: AudioScript,
        codecs: tuple[int, ...],
        media: RtpEndpoint | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.phone = phone
        self.direction = direction
        """"outgoing" (this phone is the UAC) or "incoming" (the UAS)."""
        self.invite = invite
        self.peer = peer
        """The SIP peer the INVITE went to or came from."""
        self.local_tag = local_tag
        self.script = script
        self.codecs = codecs
        self.state = CALLING
        self.final_status: int | None = None
        self.answered: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()
        self.progress: list[int] = []
        """Every provisional status received (caller) or sent (callee), in order."""
        self.early_sdp: SessionDescription | None = None
        """The SDP of the first provisional response that carried one (caller)."""
        self.remote_sdp: SessionDescription | None = None
        self.local_sdp: SessionDescription | None = None
        self.answered_at: float | None = None
        self.received_infos: list[SipRequest] = []
        self.info_digits: list[str] = []
        """Digits of received INFO requests (application/dtmf-relay or application/dtmf)."""
        self.sent_log: list[tuple[float, str]] = []
        self.dialog: Dialog | None = None
        self.media = media or RtpEndpoint(phone.host, phone.media_port)
        self.transaction: ServerTransaction | ClientTransaction | None = None
        self._plan: RenderedScript = script.render()
        self._acked: asyncio.Future[None] = loop.create_future()
        self._got_provisional = False
        self._cancel_requested = False
        self._cancel_sent = False
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[object]] = set()

    def __repr__(self) -> str:
        return f"<PhoneCall {self.direction} {self.state} {self.invite.call_id}>"

    # -- what tests read

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def media_t0(self) -> float | None:
        """When this call's media started: the time its first RTP packet (slot 0) left."""
        return self.media.media_t0

    @property
    def received_packets(self) -> list[tuple[float, RtpPacket]]:
        """(arrival, packet) for every RTP packet received, in arrival order."""
        return self.media.received_packets

    @property
    def ssrcs(self) -> set[int]:
        return self.media.ssrcs

    @property
    def received_digits(self) -> list[str]:
        """RFC 4733 digits received, one per key press (deduplicated by event timestamp)."""
        return self.media.received_digits

    def received_audio(self) -> npt.NDArray[np.int16]:
        """The received audio by arrival time (:meth:`RtpEndpoint.received_audio`)."""
        return self.media.received_audio()

    # -- actions

    async def hangup(self) -> None:
        """End the call: CANCEL before the answer (RFC 3261 9.1), BYE after it (15.1.1).

        A callee that has not answered yet declines with 603. Returns once the
        CANCEL or BYE is answered (or timed out).
        """
        if self.state == ENDED:
            return
        if self.state != ANSWERED:
            if self.direction == "incoming":
                self._send_final(603)
                self._finish("failed 603")
                return
            self._cancel_requested = True
            self._send_cancel_if_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.ended), self._transaction_timeout())
            return
        if self.direction == "incoming" and not self._acked.done():
            # RFC 3261 15: no BYE from the callee before the ACK (or its timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._acked), self._transaction_timeout())
            if self.state == ENDED:
                return
        response = self._send_bye()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(response, self._transaction_timeout())

    async def send_info(
        self, headers: dict[str, str], body: bytes = b"", content_type: str | None = None
    ) -> int:
        """Send INFO in the dialog (RFC 6086) and return the final status (408 on timeout)."""
        if self.dialog is None or self.state != ANSWERED:
            raise RuntimeError(f"INFO needs an answered call; this one is {self.state}")
        return await self._request(
            "INFO", body=body, content_type=content_type, extra_headers=headers.items()
        )

    async def send_digit_info(self, digit: str) -> int:
        """Send one digit as INFO application/dtmf-relay (Signal and Duration lines)."""
        body = f"Signal={digit}\r\nDuration=160\r\n".encode("ascii")
        return await self.send_info({}, body, DTMF_RELAY)

    # -- in-dialog requests we send

    def _transaction_timeout(self) -> float:
        return self.phone.stack.layer.timers.timer_f + 1.0

    def _next_hop(self, dialog: Dialog | None = None) -> Address:
        """Where requests in the dialog go (RFC 3261 12.2.1.1); the peer for a host name."""
        dialog = dialog or self.dialog
        assert dialog is not None
        host, port, _ = uri_to_address(dialog.next_hop(), TRANSPORT)
        return (host, port) if _is_ip(host) else self.peer

    def _request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> asyncio.Future[int]:
        """Send a request in the dialog; the future gets its final status (408 on timeout)."""
        assert self.dialog is not None
        stack = self.phone.stack
        hop = self._next_hop()
        request = self.dialog.create_request(
            method,
            via=stack.via(TRANSPORT, toward=hop),
            body=body,
            content_type=content_type,
            extra_headers=extra_headers,
        )
        status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def answered(response: SipResponse) -> None:
            if response.status >= 200 and not status.done():
                status.set_result(response.status)

        def timed_out() -> None:
            if not status.done():
                status.set_result(408)

        transaction = stack.send_request(request, hop, TRANSPORT)
        transaction.user_data = (answered, timed_out)
        return status

    def _send_bye(self) -> asyncio.Future[int]:
        """RFC 3261 15.1.1: BYE in the dialog; the call ends now, whatever the answer."""
        response = self._request("BYE")
        self._finish("bye-sent")
        return response

    def _send_cancel_if_due(self) -> None:
        """RFC 3261 9.1: CANCEL the INVITE, but only after a provisional response."""
        if not self._cancel_requested or self._cancel_sent or not self._got_provisional:
            return
        if self.state == ENDED:
            return
        self._cancel_sent = True
        transaction = self.phone.stack.send_request(build_cancel(self.invite), self.peer, TRANSPORT)
        transaction.user_data = (lambda response: None, lambda: None)

    # -- caller side: responses to our INVITE

    def _on_invite_response(self, response: SipResponse) -> None:
        status = response.status
        if status < 200:
            self._on_provisional(response)
        elif status < 300:
            self._on_success(response)
        else:
            self.final_status = status
            cancelled = self._cancel_requested and status == 487
            self._finish("cancelled" if cancelled else f"failed {status}")

    def _on_invite_timeout(self) -> None:
        """RFC 3261 8.1.3.1: a transaction timeout counts as 408."""
        if self.state in (CALLING, EARLY):
            self.final_status = 408
            self._finish("failed 408")

    def _on_provisional(self, response: SipResponse) -> None:
        self.progress.append(response.status)
        self._got_provisional = True
        if self.state == ENDED:
            return
        if response.status > 100:
            self.state = EARLY
            sdp = self._read_sdp(response)
            if sdp is not None and self.early_sdp is None:
                self.early_sdp = sdp
                self._take_remote_sdp(sdp)
                self._start_media()
        self._send_cancel_if_due()

    def _on_success(self, response: SipResponse) -> None:
        dialog = Dialog.from_uac(self.invite, response)
        if self.dialog is not None and dialog.remote_tag != self.dialog.remote_tag:
            # RFC 3261 13.2.2.4: a 2xx from another fork is ACKed, then ended
            self._ack(dialog, response)
            self._bye_stray(dialog)
            return
        self.dialog = dialog
        self._ack(dialog, response)
        self.final_status = response.status
        if self.state == ENDED or self._cancel_requested:
            if self.state != ENDED:
                self._send_bye()
            else:
                self._bye_stray(dialog)
            return
        sdp = self._read_sdp(response)
        if sdp is not None:
            self._take_remote_sdp(sdp)
        self._set_answered()
        self._start_media()

    def _ack(self, dialog: Dialog, response: SipResponse) -> None:
        stack = self.phone.stack
        hop = self._next_hop(dialog)
        ack = dialog.create_ack(response.cseq.seq, via=stack.via(TRANSPORT, toward=hop))
        stack.send_ack(ack, hop, TRANSPORT)

    def _bye_stray(self, dialog: Dialog) -> None:
        stack = self.phone.stack
        hop = self._next_hop(dialog)
        bye = dialog.create_request("BYE", via=stack.via(TRANSPORT, toward=hop))
        transaction = stack.send_request(bye, hop, TRANSPORT)
        transaction.user_data = (lambda response: None, lambda: None)

    # -- callee side

    async def _answer(self, transaction: ServerTransaction, mode: AnswerMode) -> None:
        """Answer the INVITE as ``mode`` says (RFC 3261 13.3.1, RFC 3264 6)."""
        self.transaction = transaction
        if mode.reject_status is not None:
            self._send_final(mode.reject_status)
            self._finish(f"failed {mode.reject_status}")
            return
        try:
            offer = _sdp_of(self.invite)
        except SdpParseError:
            self._send_final(400, "Bad SDP")
            self._finish("failed 400")
            return
        try:
            await self.media.open()
        except OSError as exc:
            log.warning("%s: no media socket: %s", self.phone.name, exc)
            self._send_final(503)
            self._finish("failed 503")
            return
        if self.state == ENDED:
            self.media.close()
            return
        if offer is None:
            self.local_sdp = offer_sdp(
                self.phone.host, self.media.port, mode.codecs, self.phone.name
            )
        else:
            remote = remote_media(offer, mode.codecs)
            answer = answer_sdp(
                offer, self.phone.host, self.media.port, mode.codecs, self.phone.name
            )
            if remote is None or answer is None:
                self._send_final(488)
                self._finish("failed 488")
                return
            self.remote_sdp = offer
            self.media.set_remote(remote)
            self.local_sdp = answer
        self.dialog = Dialog.from_uas(self.invite, self.local_tag)
        self.state = EARLY
        if mode.early_media and offer is not None:
            self._send_response(183, with_sdp=True)
            self._start_media()
        else:
            self._send_response(180)
        await asyncio.sleep(mode.ring_s)
        if self.state == ENDED:
            return
        self._send_response(200, with_sdp=True)
        self.final_status = 200
        self._set_answered()
        self._start_media()
        if mode.auto_hangup_s is not None:
            self._later(mode.auto_hangup_s, self._spawn_hangup)

    def _send_response(self, status: int, *, with_sdp: bool = False) -> None:
        """A provisional or 2xx response to the INVITE, with Contact and Record-Route (12.1.1)."""
        assert isinstance(self.transaction, ServerTransaction)
        stack = self.phone.stack
        body = bytes(self.local_sdp) if with_sdp and self.local_sdp is not None else b""
        response = make_response(
            self.invite, status, to_tag=self.local_tag, body=body, content_type=SDP_TYPE
        )
        for record_route in self.invite.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", record_route)
        user = self.invite.uri.user
        response.headers.set("Contact", str(stack.contact(TRANSPORT, user, toward=self.peer)))
        if status >= 200:
            response.headers.set("Allow", ALLOW)
        else:
            self.progress.append(status)
        stack.send_response(self.transaction, response)

    def _send_final(self, status: int, reason: str | None = None) -> None:
        """A final non-2xx to the INVITE (RFC 3261 13.3.1.3)."""
        if not isinstance(self.transaction, ServerTransaction):
            return
        self.final_status = status
        response = make_response(self.invite, status, reason, to_tag=self.local_tag)
        self.phone.stack.send_response(self.transaction, response)

    def _on_cancel(self) -> None:
        """RFC 3261 9.2: the CANCEL is answered by the layer; the INVITE gets 487."""
        if self.state in (CALLING, EARLY):
            self._send_final(487)
            self._finish("cancelled")

    def _on_ack(self, ack: SipRequest) -> None:
        """The ACK for our 2xx (13.3.1.4); with a late offer it carries the answer."""
        if self._acked.done():
            return
        self._acked.set_result(None)
        if self.remote_sdp is None:
            try:
                sdp = _sdp_of(ack)
            except SdpParseError:
                sdp = None
            if sdp is not None:
                self._take_remote_sdp(sdp)

    def _on_ack_timeout(self) -> None:
        """RFC 3261 13.3.1.4: no ACK for our 2xx: end the dialog with BYE."""
        if self.state == ANSWERED:
            self._send_bye()

    # -- requests the peer sends in the dialog

    def _on_in_dialog(self, request: SipRequest, transaction: ServerTransaction) -> None:
        stack = self.phone.stack
        dialog = self.dialog
        if dialog is None or (self.state == ENDED and request.method != "BYE"):
            stack.send_response(transaction, make_response(request, 481))
            return
        if not dialog.check_remote_cseq(request):
            stack.send_response(transaction, make_response(request, 500))
            return
        method = request.method
        if method == "BYE":
            stack.send_response(transaction, make_response(request, 200))
            self._finish("bye-received")
        elif method == "INFO":
            self.received_infos.append(request)
            self._read_info_digit(request)
            stack.send_response(transaction, make_response(request, 200))
        elif method in ("INVITE", "UPDATE"):
            self._answer_offer(request, transaction)
        elif method == "OPTIONS":
            response = make_response(request, 200)
            response.headers.set("Allow", ALLOW)
            stack.send_response(transaction, response)
        else:
            response = make_response(request, 405)
            response.headers.set("Allow", ALLOW)
            stack.send_response(transaction, response)

    def _read_info_digit(self, request: SipRequest) -> None:
        try:
            info = parse_dtmf_info(request.headers.get("Content-Type"), request.body)
        except DtmfInfoError:
            return
        if info is not None:
            self.info_digits.append(info.digit)

    def _answer_offer(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A re-INVITE or UPDATE: a new offer gets our answer (RFC 3264 8, RFC 3311 5.2)."""
        assert self.dialog is not None
        stack = self.phone.stack
        self.dialog.update_from_request(request)
        try:
            offer = _sdp_of(request)
        except SdpParseError:
            stack.send_response(transaction, make_response(request, 400, "Bad SDP"))
            return
        body = b""
        if offer is not None:
            remote = remote_media(offer, self.codecs)
            answer = answer_sdp(
                offer, self.phone.host, self.media.port, self.codecs, self.phone.name
            )
            if remote is None or answer is None:
                stack.send_response(transaction, make_response(request, 488))
                return
            if self.local_sdp is not None:
                answer.origin = self.local_sdp.origin
                answer.origin.session_version += 1
            self.remote_sdp, self.local_sdp = offer, answer
            self.media.set_remote(remote)
            body = bytes(answer)
        elif request.method == "INVITE" and self.local_sdp is not None:
            body = bytes(self.local_sdp)
        response = make_response(request, 200, body=body, content_type=SDP_TYPE)
        response.headers.set("Contact", str(stack.contact(TRANSPORT, toward=self.peer)))
        stack.send_response(transaction, response)

    # -- media and script

    def _read_sdp(self, message: SipRequest | SipResponse) -> SessionDescription | None:
        try:
            return _sdp_of(message)
        except SdpParseError as exc:
            log.warning("%s: ignoring bad SDP: %s", self.phone.name, exc.reason)
            return None

    def _take_remote_sdp(self, sdp: SessionDescription) -> None:
        self.remote_sdp = sdp
        remote = remote_media(sdp, self.codecs)
        if remote is not None:
            self.media.set_remote(remote)

    def _start_media(self) -> None:
        """Start the RTP sender and schedule the script's signalling steps."""
        if self.media.started or self.state == ENDED:
            return
        media_t0 = self.media.start(self._plan, self.sent_log)
        for step in self._plan.signalling:
            delay = media_t0 + step.at - time.monotonic()
            self._later(delay, lambda step=step: self._run_step(step))

    def _run_step(self, step: Digit | Hangup) -> None:
        if isinstance(step, Hangup):
            self.sent_log.append((time.monotonic(), step.describe()))
            self._spawn_hangup()
        elif self.state == ANSWERED:
            self.sent_log.append((time.monotonic(), step.describe()))
            self._spawn(self.send_digit_info(step.digit))
        else:
            self.sent_log.append((time.monotonic(), f"{step.describe()} not sent: no dialog"))

    def _spawn_hangup(self) -> None:
        self._spawn(self.hangup())

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(max(0.0, delay), callback))

    # -- state

    def _set_answered(self) -> None:
        self.state = ANSWERED
        self.answered_at = time.monotonic()
        if not self.answered.done():
            self.answered.set_result(None)

    def _finish(self, reason: str) -> None:
        """End the call: stop media and timers, settle the futures (``reason`` on ``ended``)."""
        if self.state == ENDED:
            return
        self.state = ENDED
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.media.close()
        if not self.answered.done():
            self.answered.set_exception(CallNotAnswered(reason))
            self.answered.add_done_callback(_mark_retrieved)
        if not self.ended.done():
            self.ended.set_result(reason)
        self.phone._forget_later(self)

    def _abandon(self) -> None:
        """End the call at once because the phone closes; BYE or CANCEL without waiting."""
        if self.state == ANSWERED and self.dialog is not None:
            self._send_bye()
        elif self.direction == "outgoing" and self.state != ENDED:
            self._cancel_requested = True
            self._send_cancel_if_due()
            self._finish("cancelled")
        elif self.state != ENDED:
            self._send_final(480)
            self._finish("failed 480")
        for task in list(self._tasks):
            task.cancel()


class Phone:
    """A SIP phone on one UDP socket (see the module notes).

    Media sockets are bound per call on ``host``: any free port, or
    ``media_port`` when given (then one call at a time).
    """

    def __init__(self, host: str, sip_port: int, *, name: str = "phone", media_port: int = 0):
        self.host = host
        self.name = name
        self.media_port = media_port
        self.stack = SipStack(
            listen=[ListenAddress(TRANSPORT, host, sip_port)],
            advertised_host=host,
            user_agent=f"callgate-demo-phone ({name})",
            timers=TimerConfig(),
        )
        self.stack.set_handler(self._on_event)
        self.answer_mode = AnswerMode()
        self.incoming: list[PhoneCall] = []
        """Every call that reached this phone, answered or not, in arrival order."""
        self.outgoing: list[PhoneCall] = []
        self._queue: asyncio.Queue[PhoneCall] = asyncio.Queue()
        self._by_tag: dict[str, PhoneCall] = {}
        self._by_invite: dict[int, PhoneCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Phone {self.name} {self.host}>"

    @property
    def sip_port(self) -> int:
        return self.stack.transports.local_port(TRANSPORT)

    @property
    def address(self) -> Address:
        return (self.host, self.sip_port)

    async def start(self) -> None:
        await self.stack.start()

    async def close(self) -> None:
        """End every call still up (BYE or CANCEL, not waited for) and close the sockets."""
        for call in [*self.incoming, *self.outgoing]:
            call._abandon()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        await self.stack.close()

    async def __aenter__(self) -> Phone:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def next_incoming(self, timeout: float = 5.0) -> PhoneCall:
        """The next call that reaches this phone; TimeoutError when none does in time."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    # -- placing calls

    async def call(
        self,
        target: Address,
        *,
        to_user: str,
        from_user: str,
        script: AudioScript,
        headers: dict[str, str] | None = None,
        codecs: tuple[int, ...] = (0, 8),
    ) -> PhoneCall:
        """Send an INVITE to ``target`` (RFC 3261 8.1.1, 13.2.1) and return the call at once."""
        media = RtpEndpoint(self.host, self.media_port)
        await media.open()
        offer = offer_sdp(self.host, media.port, codecs, self.name)
        invite = self._build_invite(target, to_user, from_user, offer, headers or {})
        call = PhoneCall(
            self,
            direction="outgoing",
            invite=invite,
            peer=target,
            local_tag=invite.from_tag or "",
            script=script,
            codecs=codecs,
            media=media,
        )
        call.local_sdp = offer
        self.outgoing.append(call)
        self._by_tag[call.local_tag] = call
        transaction = self.stack.send_request(invite, target, TRANSPORT)
        transaction.user_data = (call._on_invite_response, call._on_invite_timeout)
        call.transaction = transaction
        return call

    def _build_invite(
        self,
        target: Address,
        to_user: str,
        from_user: str,
        offer: SessionDescription,
        headers: dict[str, str],
    ) -> SipRequest:
        """RFC 3261 8.1.1: Request-URI, To, From (with tag), Call-ID, CSeq, Max-Forwards,
        Via, Contact; the SDP offer as body (RFC 3264 5)."""
        host, port = target
        request_uri = SipUri("sip", to_user, None, host, port, {}, {})
        to = NameAddr(None, SipUri("sip", to_user, None, host, None, {}, {}), {})
        from_uri = SipUri("sip", from_user, None, self.host, None, {}, {})
        from_ = NameAddr(None, from_uri, {"tag": new_tag()})
        invite = SipRequest("INVITE", request_uri)
        fields = invite.headers
        fields.add("Via", str(self.stack.via(TRANSPORT, toward=target)))
        fields.add("Max-Forwards", "70")
        fields.add("From", str(from_))
        fields.add("To", str(to))
        fields.add("Call-ID", new_call_id(self.host))
        fields.add("CSeq", str(CSeq(1, "INVITE")))
        fields.add("Contact", str(self.stack.contact(TRANSPORT, from_user, toward=target)))
        fields.add("Allow", ALLOW)
        for name, value in headers.items():
            fields.add(name, value)
        fields.set("Content-Type", SDP_TYPE)
        invite.body = bytes(offer)
        return invite

    # -- events from the transaction layer

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.source, event.transaction)
        elif isinstance(event, ResponseReceived | TransactionTimeout):
            handlers: ResponseHandlers | None = event.transaction.user_data
            if handlers is None:
                return
            if isinstance(event, ResponseReceived):
                handlers[0](event.response)
            else:
                handlers[1]()
        elif isinstance(event, CancelReceived):
            call = self._by_invite.get(id(event.invite_transaction))
            if call is not None:
                call._on_cancel()
        elif isinstance(event, AckTimeout):
            call = self._by_invite.get(id(event.transaction))
            if call is not None:
                call._on_ack_timeout()

    def _on_request(
        self, request: SipRequest, source: Address, transaction: ServerTransaction | None
    ) -> None:
        to_tag = request.to_tag
        call = self._by_tag.get(to_tag) if to_tag else None
        if call is not None and call.call_id != request.call_id:
            call = None
        if request.method == "ACK":
            if call is not None:
                call._on_ack(request)
            return
        assert transaction is not None
        if to_tag is not None:
            if call is None:
                self._reply(transaction, request, 481)
            else:
                call._on_in_dialog(request, transaction)
        elif request.method == "INVITE":
            self._on_new_invite(request, source, transaction)
        elif request.method == "OPTIONS":
            response = make_response(request, 200, to_tag=new_tag())
            response.headers.set("Allow", ALLOW)
            self.stack.send_response(transaction, response)
        elif request.method in ("BYE", "INFO", "UPDATE", "PRACK"):
            self._reply(transaction, request, 481)
        else:
            self._reply(transaction, request, 405)

    def _reply(self, transaction: ServerTransaction, request: SipRequest, status: int) -> None:
        response = make_response(request, status, to_tag=new_tag())
        if status == 405:
            response.headers.set("Allow", ALLOW)
        self.stack.send_response(transaction, response)

    def _on_new_invite(
        self, request: SipRequest, source: Address, transaction: ServerTransaction
    ) -> None:
        mode = self.answer_mode
        try:
            request.from_tag  # noqa: B018
        except SipParseError:
            self._reply(transaction, request, 400)
            return
        call = PhoneCall(
            self,
            direction="incoming",
            invite=request,
            peer=source,
            local_tag=new_tag(),
            script=mode.script,
            codecs=mode.codecs,
        )
        self.incoming.append(call)
        self._by_tag[call.local_tag] = call
        self._by_invite[id(transaction)] = call
        self._queue.put_nowait(call)
        task = asyncio.ensure_future(call._answer(transaction, mode))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget_later(self, call: PhoneCall) -> None:
        """Drop an ended call's lookups after late requests in its dialog had their time."""
        loop = asyncio.get_running_loop()
        loop.call_later(TAG_LINGER_S, self._forget, call)

    def _forget(self, call: PhoneCall) -> None:
        if self._by_tag.get(call.local_tag) is call:
            del self._by_tag[call.local_tag]
        if call.transaction is not None:
            self._by_invite.pop(id(call.transaction), None)
