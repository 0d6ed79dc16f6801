"""Dialog state (RFC 3261 12): identifiers, route set, remote target, CSeq.

A dialog is created from the request and response that establish it
(12.1.1 for the UAS, 12.1.2 for the UAC) and builds every later request
in it (12.2.1.1), including loose and strict routing through its route set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq, Via
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.uri import NameAddr, SipUri

MAX_FORWARDS = 70

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})
"""Requests whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311 5.1, RFC 6665)."""

_NO_CSEQ_INCREMENT = frozenset({"ACK", "CANCEL"})
"""ACK and CANCEL reuse the CSeq number of the request they belong to (9.1, 13.2.2.4)."""

_NOT_IN_REQUEST_URI = frozenset({"method"})
"""URI parameters RFC 3261 Table 1 (19.1.1) forbids in a Request-URI."""


def _without_tag(name_addr: NameAddr) -> NameAddr:
    params = {key: value for key, value in name_addr.params.items() if key.lower() != "tag"}
    return NameAddr(name_addr.display_name, name_addr.uri, params)


def _is_loose(route: NameAddr) -> bool:
    """RFC 3261 19.1.1: a route with the ``lr`` parameter is a loose router."""
    return any(key.lower() == "lr" for key in route.uri.params)


def _as_request_uri(uri: SipUri) -> SipUri:
    """A URI with what a Request-URI may not carry removed (12.2.1.1, 19.1.1 Table 1)."""
    params = {
        key: value for key, value in uri.params.items() if key.lower() not in _NOT_IN_REQUEST_URI
    }
    return SipUri(uri.scheme, uri.user, uri.password, uri.host, uri.port, params, {})


def _required(value: object, what: str) -> None:
    if value is None or value == "":
        raise SipParseError(f"cannot build a dialog: missing {what}")


@dataclass
class Dialog:
    """One peer-to-peer SIP relationship as one of its ends sees it (RFC 3261 12)."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: NameAddr
    """Our From in requests we send, without the tag (kept in ``local_tag``)."""
    remote_uri: NameAddr
    """The peer's address for the To of requests we send, without the tag."""
    remote_target: SipUri
    """Where requests go, from the peer's Contact (12.1.1, 12.1.2)."""
    route_set: list[NameAddr] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None
    secure: bool = False

    # ---------------------------------------------------------------- creation

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAC holds after a 1xx (with To tag) or 2xx to ``request`` (12.1.2).

        Route set: the response's Record-Route in reverse order. Remote
        target: the response's Contact (the Request-URI if it has none).
        Remote tag: the response's To tag.
        """
        _required(request.call_id, "Call-ID")
        local_tag = request.from_tag
        _required(local_tag, "From tag")
        contacts = response.contacts
        remote_target = contacts[0].uri if contacts else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,  # type: ignore[arg-type]
            remote_tag=response.to_tag,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            remote_target=remote_target,
            route_set=list(reversed(response.record_routes)),
            local_cseq=request.cseq.seq,
            remote_cseq=None,
            secure=request.uri.scheme.lower() == "sips",
        )

    @classmethod
    def from_uas(cls, request: SipRequest, local_tag: str) -> Dialog:
        """The dialog a UAS holds when it answers ``request`` with ``local_tag`` (12.1.1).

        Route set: the request's Record-Route in order. Remote target: the
        request's Contact (the From URI if it has none). Remote CSeq: the
        request's. The local CSeq starts empty, here 0, so our first request
        in the dialog carries 1.
        """
        _required(request.call_id, "Call-ID")
        contacts = request.contacts
        remote_target = contacts[0].uri if contacts else request.from_.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=remote_target,
            route_set=request.record_routes,
            local_cseq=0,
            remote_cseq=request.cseq.seq,
            secure=request.uri.scheme.lower() == "sips",
        )

    # ---------------------------------------------------------------- identity

    @property
    def id(self) -> tuple[str, str, str | None]:
        """Call-ID, local tag, remote tag (12)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_hop(self) -> SipUri:
        """Where the next request in the dialog is sent: first route, else remote target."""
        if self.route_set:
            return self.route_set[0].uri
        return self.remote_target

    # --------------------------------------------------------------- requests

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        contact: NameAddr | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """A request within the dialog (12.2.1.1).

        Loose routing (first route has ``lr``): Request-URI is the remote
        target, Route is the route set. Strict routing: Request-URI is the
        first route's URI (minus what a Request-URI may not carry), Route is
        the rest of the route set followed by the remote target. The CSeq
        number increases by one, except for ACK and CANCEL which reuse it.
        """
        method = method.upper()
        if method not in _NO_CSEQ_INCREMENT:
            self.local_cseq += 1
        return self._build(
            method,
            self.local_cseq,
            via=via,
            contact=contact,
            body=body,
            content_type=content_type,
            extra_headers=extra_headers,
        )

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: Via,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """The ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (13.2.2.4)."""
        return self._build("ACK", invite_cseq, via=via, body=body, content_type=content_type)

    def _build(
        self,
        method: str,
        cseq: int,
        *,
        via: Via,
        contact: NameAddr | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        request_uri, routes = self._request_uri_and_routes()
        request = SipRequest(method, request_uri)
        headers = request.headers
        headers.add("Via", str(via))
        headers.add("Max-Forwards", str(MAX_FORWARDS))
        for route in routes:
            headers.add("Route", str(route))
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        headers.add("To", str(to))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(cseq, method)))
        if contact is not None:
            headers.add("Contact", str(contact))
        for name, value in extra_headers:
            headers.add(name, value)
        if body:
            if content_type:
                headers.set("Content-Type", content_type)
            request.body = body
        return request

    def _request_uri_and_routes(self) -> tuple[SipUri, list[NameAddr]]:
        """12.2.1.1: loose or strict routing, by the first route's ``lr`` parameter."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if _is_loose(first):
            return self.remote_target, list(self.route_set)
        target = NameAddr(None, self.remote_target, {})
        return _as_request_uri(first.uri), [*self.route_set[1:], target]

    # ------------------------------------------------------ incoming requests

    def check_remote_cseq(self, request: SipRequest) -> bool:
        """12.2.2: False for a request older than the last one (the TU answers 500).

        An in-order request moves the remote CSeq forward. ACK and CANCEL
        reuse the number of the request they belong to and always pass.
        """
        if request.method in _NO_CSEQ_INCREMENT:
            return True
        seq = request.cseq.seq
        if self.remote_cseq is not None and seq < self.remote_cseq:
            return False
        self.remote_cseq = seq
        return True

    def update_from_request(self, request: SipRequest) -> None:
        """12.2.2: a target refresh request's Contact replaces the remote target."""
        if request.method not in TARGET_REFRESH_METHODS:
            return
        contacts = request.contacts
        if contacts:
            self.update_remote_target(contacts[0])

    def update_from_response(self, response: SipResponse) -> None:
        """12.2.1.2: a 2xx to our target refresh request replaces the remote target."""
        if not 200 <= response.status < 300:
            return
        if response.cseq.method not in TARGET_REFRESH_METHODS:
            return
        contacts = response.contacts
        if contacts:
            self.update_remote_target(contacts[0])

    def update_remote_target(self, contact: NameAddr | SipUri) -> None:
        """Replace the remote target with a Contact (12.2.1.2, 12.2.2)."""
        self.remote_target = contact.uri if isinstance(contact, NameAddr) else contact
