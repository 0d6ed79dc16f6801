"""The SIP stack glue: transports + the sans-IO transaction layer + one timer.

Bytes from :mod:`gateway.net.transports` are parsed, stamped with
``received``/``rport`` (RFC 3261 18.2.1, RFC 3581 4) and handed to the
:class:`~gateway.sip.transaction.TransactionLayer`; the events it returns are
either sent (``Send``) or passed to the transaction user (the B2BUA). The
layer's timers are driven by a single ``loop.call_at`` re-armed to
``next_deadline()`` after every interaction, so there is one timer for the
whole stack however many transactions are open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.net.transports import Address, ListenAddress, Transports
from gateway.sip.errors import SipParseError
from gateway.sip.headers import Via
from gateway.sip.ip import ip_literal
from gateway.sip.message import SipRequest, SipResponse, make_response, parse_message
from gateway.sip.routing import add_received, response_destination
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import (
    ClientTransaction,
    Event,
    Send,
    ServerTransaction,
    TransactionLayer,
    new_branch,
    new_tag,
)
from gateway.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], None]


@dataclass(slots=True)
class StackCounters:
    """Message counters for metrics and tests."""

    received: int = 0
    sent: int = 0
    malformed: int = 0
    malformed_answered: int = 0


class SipStack:
    """Runs the transaction layer over real sockets for one transaction user."""

    def __init__(
        self,
        *,
        listen: list[ListenAddress],
        advertised_host: str | None,
        user_agent: str,
        timers: TimerConfig,
        max_message_bytes: int = 65535,
    ) -> None:
        self._listen = listen
        self.advertised_host = advertised_host or listen[0].host
        self.user_agent = user_agent
        self.layer = TransactionLayer(timers)
        self.transports = Transports(self._on_message, max_message_bytes=max_message_bytes)
        self.counters = StackCounters()
        self._handler: EventHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def set_handler(self, handler: EventHandler) -> None:
        """The transaction user that receives every non-``Send`` event."""
        self._handler = handler

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transports.listen(self._listen)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transports.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- identity of this gateway in messages --------------------------------

    def local_host(self, toward: Address | None = None) -> str:
        """The host this gateway names itself by to the peer at ``toward``.

        The advertised host, unless it is an IP address of the other family than
        the peer's: an IPv6 peer cannot reach an IPv4 Contact (RFC 3261 12.1.1:
        the Contact is where the peer sends its in-dialog requests), so a listen
        address of the peer's family is named instead, when there is one.
        """
        if toward is None:
            return self.advertised_host
        wanted = _ip_version(toward[0])
        if wanted is None or _ip_version(self.advertised_host) in (None, wanted):
            return self.advertised_host
        for bound in self.transports.bound:
            if _ip_version(bound.host) == wanted and not _is_unspecified(bound.host):
                return bound.host
        return self.advertised_host

    def _local_port(self, transport: str, host: str) -> int:
        """The port of the ``transport`` listener on ``host`` (listeners may differ by family)."""
        for bound in self.transports.bound:
            if bound.transport == transport and bound.host == host:
                return bound.port
        return self.transports.local_port(transport)

    def via(self, transport: str, *, toward: Address | None = None) -> Via:
        """A fresh top Via for a request we originate (RFC 3261 8.1.1.7)."""
        host = self.local_host(toward)
        return Via(
            transport=transport.upper(),
            host=host,
            port=self._local_port(transport, host),
            params={"branch": new_branch(), "rport": None},
        )

    def contact(
        self, transport: str, user: str | None = None, *, toward: Address | None = None
    ) -> NameAddr:
        """Our Contact: where in-dialog requests from the peer at ``toward`` reach this
        gateway (RFC 3261 8.1.1.8)."""
        params: dict[str, str | None] = {}
        if transport != "udp":
            params["transport"] = transport
        host = self.local_host(toward)
        uri = SipUri(
            scheme="sip",
            user=user,
            password=None,
            host=host,
            port=self._local_port(transport, host),
            params=params,
            headers={},
        )
        return NameAddr(display_name=None, uri=uri, params={})

    # -- inbound --------------------------------------------------------------

    def _on_message(self, data: bytes, source: Address, transport: str) -> None:
        self.counters.received += 1
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._answer_malformed(exc, source, transport)
            return
        if isinstance(message, SipRequest):
            try:
                vias = message.vias
            except SipParseError as exc:
                self._answer_malformed(exc, source, transport)
                return
            stamped = add_received(vias[0], source)
            if stamped is not vias[0]:
                message.headers.set("Via", str(stamped))
                for extra in vias[1:]:
                    message.headers.add("Via", str(extra))
        try:
            events = self.layer.receive(message, source, self.now(), reliable=transport != "udp")
        except SipParseError as exc:
            if exc.partial is None and isinstance(message, SipRequest):
                exc.partial = message
            self._answer_malformed(exc, source, transport)
            return
        self._dispatch(events)

    def _answer_malformed(self, exc: SipParseError, source: Address, transport: str) -> None:
        """RFC 3261 21.4.1: a request we can answer gets 400 with the reason; else drop."""
        self.counters.malformed += 1
        request = exc.partial
        if request is None or request.method == "ACK":
            log.debug("dropped malformed message from %s:%s: %s", *source, exc.reason)
            return
        try:
            status = exc.status
            response = make_response(request, status, exc.reason[:120], to_tag=new_tag())
            dest = response_destination(request.top_via, source)
        except (SipParseError, ValueError, IndexError, KeyError) as inner:
            log.debug("dropped malformed request from %s:%s: %s (%s)", *source, exc.reason, inner)
            return
        self.counters.malformed_answered += 1
        log.debug("answered malformed request from %s:%s with %d: %s", *source, status, exc.reason)
        self.transports.send(bytes(response), dest, transport)

    # -- outbound -------------------------------------------------------------

    def send_request(self, request: SipRequest, dest: Address, transport: str) -> ClientTransaction:
        request.headers.set("User-Agent", self.user_agent)
        transaction, events = self.layer.send_request(
            request, dest, self.now(), reliable=transport != "udp"
        )
        self._dispatch(events)
        return transaction

    def send_response(self, transaction: ServerTransaction, response: SipResponse) -> None:
        if "Server" not in response.headers:
            response.headers.set("Server", self.user_agent)
        self._dispatch(self.layer.send_response(transaction, response, self.now()))

    def send_ack(self, ack: SipRequest, dest: Address, transport: str) -> None:
        self._dispatch(self.layer.send_ack(ack, dest, self.now(), reliable=transport != "udp"))

    # -- events and timers ----------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        handler = self._handler
        for event in events:
            if type(event) is Send:
                self.counters.sent += 1
                self.transports.send(
                    bytes(event.message), event.dest, "tcp" if event.reliable else "udp"
                )
            elif handler is not None:
                try:
                    handler(event)
                except Exception:
                    log.exception("error handling %s", type(event).__name__)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # the armed timer fires first and re-arms then
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._dispatch(self.layer.tick(self.now()))


def _ip_version(host: str) -> int | None:
    """4 or 6 for an IP literal (brackets allowed), None for a host name."""
    try:
        return ip_literal(host.strip("[]")).version
    except ValueError:
        return None


def _is_unspecified(host: str) -> bool:
    return ip_literal(host.strip("[]")).is_unspecified
