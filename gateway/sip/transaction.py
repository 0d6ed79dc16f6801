"""The SIP transaction layer (RFC 3261 17, with the RFC 6026 Accepted states).

Sans-IO: parsed messages, their source address and the current time
(monotonic seconds) go in through :meth:`TransactionLayer.receive`,
:meth:`TransactionLayer.send_request`, :meth:`TransactionLayer.send_response`
and :meth:`TransactionLayer.tick`; events come out. :class:`Send` events
are for the transport glue, every other event is for the transaction user
(TU). Retransmissions and timeouts happen in :meth:`TransactionLayer.tick`;
:meth:`TransactionLayer.next_deadline` says when it must next be called.

Beyond RFC 3261 17 the layer carries the few pieces of the UA core that
are pure retransmission bookkeeping, so the TU sees every message once:
the 100 Trying for a new INVITE (17.2.1), the answer to CANCEL (9.2), the
UAS's 2xx retransmissions until the ACK (13.3.1.4) and the UAC's ACK
re-sent on each 2xx retransmission (13.2.2.4).

A final response, and an ACK, is only ever sent again as it was: the layer
keeps it as its bytes, not as a parsed message (nor in an object of its own:
plain bytes are no work for the collector), and a
transaction lets go of its request once it has its final response. Transactions
outlive their calls by up to 64*T1 (Timers J, L, M, D and the ACK memory):
at a few hundred calls a second, parsed messages kept that long were most of
the process's objects, and every pass of Python's cyclic collector walked
them all, stalling the event loop.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from dataclasses import dataclass
from typing import Any, TypeAlias

from gateway.sip.errors import SipParseError
from gateway.sip.headers import MAGIC_COOKIE, CSeq, Via
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.random_ids import random_hex
from gateway.sip.routing import response_destination
from gateway.sip.timers import TimerConfig

Address = tuple[str, int]
SipMessage: TypeAlias = SipRequest | SipResponse

DEFAULT_TIMERS = TimerConfig()

_INVITE = "INVITE"
_ACK = "ACK"
_CANCEL = "CANCEL"


def new_branch() -> str:
    """A fresh Via branch with the RFC 3261 magic cookie (8.1.1.7)."""
    return MAGIC_COOKIE + random_hex(10)


def new_tag() -> str:
    """A fresh From/To tag: at least 32 bits of randomness (19.3)."""
    return random_hex(6)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID, ``random@host`` (8.1.1.4)."""
    return f"{random_hex(12)}@{host}"


class TransactionState(enum.Enum):
    """States of the four transaction machines (RFC 3261 17, RFC 6026 7)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# ---------------------------------------------------------------- transactions


class ServerTransaction:
    """A request received and the responses sent to it (RFC 3261 17.2)."""

    __slots__ = (
        "_accept_base",
        "_accepted_keys",
        "_timers",
        "acked",
        "dest",
        "interval",
        "key",
        "last_response",
        "last_to_tag",
        "method",
        "reliable",
        "request",
        "source",
        "state",
        "user_data",
    )

    def __init__(
        self, request: SipRequest, key: tuple, source: Address, dest: Address, reliable: bool
    ) -> None:
        self.request: SipRequest | None = request
        """The request; None once a final response has been sent."""
        self.method = request.method
        self.key = key
        self.source = source
        self.dest = dest
        """Where responses go (RFC 3261 18.2.2, RFC 3581 4)."""
        self.reliable = reliable
        self.state = (
            TransactionState.PROCEEDING if self.method == _INVITE else TransactionState.TRYING
        )
        self.last_response: SipResponse | bytes | None = None
        """The last response sent; a final one as its bytes."""
        self.last_to_tag: str | None = None
        """The To tag of the last response sent."""
        self.acked = False
        """For an INVITE answered 2xx: whether its ACK has arrived."""
        self.interval = 0.0
        self.user_data: Any = None
        self._timers: dict[str, int] = {}  # timer name -> its order in the layer's heap
        # tuples, not lists or sets: a tuple of strings and numbers leaves the cyclic
        # collector's lists, and a completed transaction lingers for up to 64*T1
        self._accepted_keys: tuple[tuple, ...] = ()
        self._accept_base: tuple | None = None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.state.value} {self.key!r}>"


class ClientTransaction:
    """A request sent and the responses received for it (RFC 3261 17.1)."""

    __slots__ = (
        "_answered_tags",
        "_invite_key",
        "_seen",
        "_timers",
        "ack",
        "dest",
        "interval",
        "key",
        "method",
        "reliable",
        "request",
        "state",
        "user_data",
    )

    def __init__(self, request: SipRequest, key: tuple, dest: Address, reliable: bool) -> None:
        self.request: SipRequest | None = request
        """The request; None once a final response has come (nothing resends it then)."""
        self.method = request.method
        self.key = key
        self.dest = dest
        self.reliable = reliable
        self.state = TransactionState.CALLING if self.method == _INVITE else TransactionState.TRYING
        self.ack: bytes | None = None
        """The ACK this INVITE transaction sent for a non-2xx final response (17.1.1.3)."""
        self.interval = 0.0
        self.user_data: Any = None
        self._timers: dict[str, int] = {}  # timer name -> its order in the layer's heap
        # made on first use: most transactions never see a provisional or a second 2xx;
        # the To tags answered are a tuple (see ServerTransaction), the provisional
        # responses seen are let go with the final response
        self._seen: set[tuple] | None = None
        self._answered_tags: tuple[str | None, ...] = ()
        self._invite_key: tuple | None = (
            (request.call_id, request.cseq.seq) if self.method == _INVITE else None
        )

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.state.value} {self.key!r}>"


class _AckRecord:
    """An ACK for a 2xx the TU sent, kept to answer 2xx retransmissions (13.2.2.4)."""

    __slots__ = ("_timers", "ack", "dest", "key", "reliable")

    def __init__(self, ack: bytes, dest: Address, reliable: bool, key: tuple) -> None:
        self.ack = ack
        self.dest = dest
        self.reliable = reliable
        self.key = key
        self._timers: dict[str, int] = {}  # timer name -> its order in the layer's heap


_TimerOwner: TypeAlias = ServerTransaction | ClientTransaction | _AckRecord


# ---------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Send:
    """A message for the transport: serialize it (``bytes()``) and send it to ``dest``."""

    message: SipRequest | SipResponse | bytes
    dest: Address
    reliable: bool


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU.

    ``transaction`` is None only for an ACK to a 2xx (not part of any
    transaction, RFC 3261 17.2.1) and for an ACK that matches nothing.
    """

    request: SipRequest
    source: Address
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU; each distinct response goes up once."""

    response: SipResponse
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F fired before a final response: the TU treats it as 408 (8.1.3.1)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A 2xx was retransmitted for 64*T1 with no ACK (13.3.1.4): the TU should BYE."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE (9.2).

    The layer has already answered the CANCEL with 200; the TU must answer
    the INVITE with 487.
    """

    cancel: SipRequest
    invite_transaction: ServerTransaction


Event: TypeAlias = (
    Send | RequestReceived | ResponseReceived | TransactionTimeout | AckTimeout | CancelReceived
)


# ------------------------------------------------------------ message helpers


def _invalid(message: SipMessage, reason: str) -> SipParseError:
    """A message transaction matching cannot use: it cannot be answered either."""
    return SipParseError(f"{reason} in {_first_line(message)}")


def _first_line(message: SipMessage) -> str:
    if isinstance(message, SipRequest):
        return f"{message.method} request"
    return f"{message.status} response"


_UNUSABLE = (ValueError, IndexError, KeyError, TypeError, AttributeError)


def _header(message: SipMessage, attribute: str, header: str) -> Any:
    """A parsed header the transaction layer needs, or a SipParseError naming it."""
    try:
        value = getattr(message, attribute)
    except SipParseError:
        raise
    except _UNUSABLE as exc:
        raise _invalid(message, f"unusable {header} header: {exc}") from exc
    if value is None or value == "":
        raise _invalid(message, f"missing {header} header")
    return value


def _top_via(message: SipMessage) -> Via:
    return _header(message, "top_via", "Via")


def _cseq(message: SipMessage) -> CSeq:
    return _header(message, "cseq", "CSeq")


def _call_id(message: SipMessage) -> str:
    return _header(message, "call_id", "Call-ID")


def _tag(message: SipMessage, header: str) -> str | None:
    name_addr = _header(message, "from_" if header == "From" else "to", header)
    return name_addr.tag


def _has_cookie(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE)


def _sent_by(via: Via) -> tuple[str, int]:
    """The sent-by of a Via with its default port filled in (RFC 3261 18.2.2)."""
    port = via.port or (5061 if via.transport.upper() == "TLS" else 5060)
    return via.host.lower(), port


def _via_identity(via: Via) -> tuple:
    """A Via as compared for RFC 2543 matching, without what the server stamped on it."""
    params = tuple(
        sorted(
            (name.lower(), value or "")
            for name, value in via.params.items()
            if name.lower() not in ("received", "rport")
        )
    )
    return (via.transport.upper(), *_sent_by(via), params)


def _server_key(request: SipRequest, method: str) -> tuple:
    """RFC 3261 17.2.3: what identifies the server transaction of ``request``.

    With a magic-cookie branch: branch, sent-by and method. Without (an
    RFC 2543 peer): Request-URI, From tag, Call-ID, CSeq number, top Via
    and method. The To tag, also named there, is checked separately for ACK.
    The method is always last so that dropping it gives the key CANCEL
    matching uses.
    """
    via = _top_via(request)
    cseq = _cseq(request)
    call_id = _call_id(request)
    from_tag = _tag(request, "From")
    _tag(request, "To")
    if _has_cookie(via.branch):
        return ("3261", via.branch, *_sent_by(via), method)
    return ("2543", str(request.uri), from_tag, call_id, cseq.seq, _via_identity(via), method)


def _fingerprint(response: SipResponse) -> tuple:
    """What makes two responses to one request the same response (for retransmissions)."""
    return (
        response.status,
        response.to_tag,
        response.headers.get("RSeq"),
        response.body,
    )


def _copy_required(source: SipRequest, name: str, target: SipRequest) -> None:
    value = source.headers.get(name)
    if value is None:
        raise ValueError(f"the request has no {name} header")
    target.headers.add(name, value)


def build_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE we sent (RFC 3261 9.1).

    Same Request-URI, Call-ID, To, From and CSeq number (method CANCEL), a
    single Via equal to the INVITE's top Via (so it carries the same branch
    and reaches the same server transaction), the INVITE's Route headers
    and Max-Forwards 70.
    """
    if invite.method != _INVITE:
        raise ValueError(f"only an INVITE can be cancelled, not {invite.method}")
    cancel = SipRequest(_CANCEL, invite.uri)
    headers = cancel.headers
    headers.add("Via", str(invite.top_via))
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    _copy_required(invite, "From", cancel)
    _copy_required(invite, "To", cancel)
    _copy_required(invite, "Call-ID", cancel)
    headers.add("CSeq", str(CSeq(invite.cseq.seq, _CANCEL)))
    return cancel


def build_non2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK an INVITE client transaction sends for a 300-699 (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID and From as the INVITE, its CSeq number with
    method ACK, the To of the response (with its tag), only the INVITE's top
    Via, and the INVITE's Route headers.
    """
    ack = SipRequest(_ACK, invite.uri)
    headers = ack.headers
    headers.add("Via", str(invite.top_via))
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    _copy_required(invite, "From", ack)
    to = response.headers.get("To")
    if to is None:
        raise _invalid(response, "missing To header")
    headers.add("To", to)
    _copy_required(invite, "Call-ID", ack)
    headers.add("CSeq", str(CSeq(invite.cseq.seq, _ACK)))
    return ack


# ----------------------------------------------------------------------- layer


class TransactionLayer:
    """Every open client and server transaction of one SIP endpoint, and their timers."""

    def __init__(self, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._servers: dict[tuple, ServerTransaction] = {}
        # server transactions by key without method: what a CANCEL can match (9.2)
        self._cancellable: dict[tuple, ServerTransaction] = {}
        # INVITE server transactions that sent a 2xx, by (Call-ID, CSeq, From tag, To tag):
        # the ACK for a 2xx carries a new branch and is matched by its dialog (13.3.1.4)
        self._accepted: dict[tuple, ServerTransaction] = {}
        self._clients: dict[tuple, ClientTransaction] = {}
        # INVITE client transactions by (Call-ID, CSeq number), for 2xx from other forks
        self._invites: dict[tuple, ClientTransaction] = {}
        # ACKs for 2xx the TU sent, by (Call-ID, CSeq number, To tag)
        self._acks: dict[tuple, _AckRecord] = {}
        # the timer heap holds (deadline, order, name): numbers and a string, which the
        # cyclic collector stops walking, and no reference to the owner, so a timer that
        # was cancelled holds nothing alive until its deadline; the owners of the timers
        # still armed are found by order in _armed
        self._heap: list[tuple[float, int, str]] = []
        self._armed: dict[int, _TimerOwner] = {}
        self._order = itertools.count()

    # ------------------------------------------------------------ inspection

    @property
    def server_count(self) -> int:
        """Open server transactions (terminated ones are removed)."""
        return len(self._servers)

    @property
    def client_count(self) -> int:
        """Open client transactions (terminated ones are removed)."""
        return len(self._clients)

    @property
    def ack_count(self) -> int:
        """ACKs for 2xx still remembered for re-sending."""
        return len(self._acks)

    # --------------------------------------------------------------- inbound

    def receive(
        self, message: SipMessage, source: Address, now: float, reliable: bool = False
    ) -> list[Event]:
        """Take one received message; return what to send and what the TU must handle.

        Raises :class:`SipParseError` when the message lacks what transaction
        matching needs (top Via, CSeq, Call-ID, From, To); no state changes
        then.
        """
        if isinstance(message, SipRequest):
            return self._receive_request(message, source, now, reliable)
        return self._receive_response(message, now)

    def _receive_request(
        self, request: SipRequest, source: Address, now: float, reliable: bool
    ) -> list[Event]:
        method = request.method
        key = _server_key(request, _INVITE if method == _ACK else method)
        if method == _ACK:
            return self._receive_ack(request, key, source, now)
        transaction = self._servers.get(key)
        if transaction is not None:
            return self._request_retransmitted(transaction)
        if method == _CANCEL:
            return self._receive_cancel(request, key, source, now, reliable)
        transaction = self._new_server(request, key, source, reliable)
        events: list[Event] = []
        if method == _INVITE:
            # 17.2.1: the server transaction answers 100 Trying; we do so at once
            events += self.send_response(transaction, make_response(request, 100), now)
        events.append(RequestReceived(request, source, transaction))
        return events

    def _new_server(
        self, request: SipRequest, key: tuple, source: Address, reliable: bool
    ) -> ServerTransaction:
        dest = source if reliable else response_destination(request.top_via, source)
        transaction = ServerTransaction(request, key, source, dest, reliable)
        self._servers[key] = transaction
        if transaction.method != _CANCEL:
            self._cancellable[key[:-1]] = transaction
        return transaction

    def _request_retransmitted(self, transaction: ServerTransaction) -> list[Event]:
        """17.2.1, 17.2.2: a retransmitted request gets the last response again."""
        state = transaction.state
        response = transaction.last_response
        if response is None or state in (
            TransactionState.CONFIRMED,
            TransactionState.TERMINATED,
        ):
            return []
        if state is TransactionState.ACCEPTED and transaction.acked:
            return []  # RFC 6026 7.1: absorbed
        return [Send(response, transaction.dest, transaction.reliable)]

    def _receive_ack(self, ack: SipRequest, key: tuple, source: Address, now: float) -> list[Event]:
        transaction = self._servers.get(key)
        if transaction is not None and self._ack_matches(transaction, ack):
            state = transaction.state
            if state is TransactionState.COMPLETED:
                # 17.2.1: the ACK for a non-2xx final ends retransmissions; timer I absorbs
                # further ACKs
                transaction.state = TransactionState.CONFIRMED
                self._cancel(transaction, "G")
                self._cancel(transaction, "H")
                self._linger(
                    transaction,
                    "I",
                    self.timers.for_transport(self.timers.timer_i, transaction.reliable),
                    now,
                )
                return []
            if state is TransactionState.ACCEPTED:
                return self._ack_for_2xx(transaction, ack, source)
            return []
        dialog_key = (_call_id(ack), _cseq(ack).seq, _tag(ack, "From"), _tag(ack, "To"))
        accepted = self._accepted.get(dialog_key)
        if accepted is not None:
            return self._ack_for_2xx(accepted, ack, source)
        return [RequestReceived(ack, source, None)]

    @staticmethod
    def _ack_matches(transaction: ServerTransaction, ack: SipRequest) -> bool:
        """17.2.3: an RFC 2543 ACK must also carry the To tag of the response sent."""
        if transaction.method != _INVITE:
            return False
        if transaction.key[0] != "2543" or transaction.last_response is None:
            return True
        return ack.to_tag == transaction.last_to_tag

    def _ack_for_2xx(
        self, transaction: ServerTransaction, ack: SipRequest, source: Address
    ) -> list[Event]:
        """13.3.1.4: the ACK stops the 2xx retransmissions and goes to the TU, once."""
        if transaction.acked:
            return []
        transaction.acked = True
        self._cancel(transaction, "2xx")
        return [RequestReceived(ack, source, None)]

    def _receive_cancel(
        self, cancel: SipRequest, key: tuple, source: Address, now: float, reliable: bool
    ) -> list[Event]:
        """9.2: CANCEL is answered here; a pending INVITE is reported to the TU."""
        target = self._cancellable.get(key[:-1])
        transaction = self._new_server(cancel, key, source, reliable)
        if target is None:
            return self.send_response(
                transaction, make_response(cancel, 481, to_tag=new_tag()), now
            )
        to_tag = target.last_to_tag
        events = self.send_response(
            transaction, make_response(cancel, 200, to_tag=to_tag or new_tag()), now
        )
        if target.method == _INVITE and target.state is TransactionState.PROCEEDING:
            events.append(CancelReceived(cancel, target))
        return events

    def _receive_response(self, response: SipResponse, now: float) -> list[Event]:
        via = _top_via(response)
        cseq = _cseq(response)
        _call_id(response)
        _tag(response, "To")
        transaction = self._clients.get((via.branch, cseq.method))
        if transaction is None:
            return self._unmatched_response(response, cseq, now)
        if transaction.method == _INVITE:
            return self._invite_response(transaction, response, now)
        return self._non_invite_response(transaction, response, now)

    def _unmatched_response(self, response: SipResponse, cseq: CSeq, now: float) -> list[Event]:
        """A response no client transaction matches (17.1.3): only 2xx to INVITE matter."""
        if cseq.method != _INVITE or not 200 <= response.status < 300:
            return []
        ack_key = (response.call_id, cseq.seq, response.to_tag)
        record = self._acks.get(ack_key)
        if record is not None:
            return [Send(record.ack, record.dest, record.reliable)]
        transaction = self._invites.get((response.call_id, cseq.seq))
        if transaction is not None:
            return self._invite_response(transaction, response, now)
        return []

    def _invite_response(
        self, transaction: ClientTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        """17.1.1.2 with RFC 6026 7.2: the INVITE client transaction."""
        status = response.status
        state = transaction.state
        pending = state in (TransactionState.CALLING, TransactionState.PROCEEDING)
        if status < 200:
            if not pending:
                return []
            transaction.state = TransactionState.PROCEEDING
            self._cancel(transaction, "A")
            self._cancel(transaction, "B")
            return self._provisional_up(transaction, response)
        if status < 300:
            to_tag = response.to_tag
            if pending:
                transaction.state = TransactionState.ACCEPTED
                transaction.request = None
                transaction._seen = None
                for timer in ("A", "B", "cancelled"):
                    self._cancel(transaction, timer)
                self._set(transaction, "M", now + self.timers.timer_m)
            elif state is not TransactionState.ACCEPTED:
                return []  # a 2xx after a non-2xx final: nothing left to deliver it to
            answered = transaction._answered_tags
            if to_tag in answered:
                return self._resend_ack(response)
            transaction._answered_tags = (*answered, to_tag)
            return [ResponseReceived(response, transaction)]
        if pending:
            transaction.state = TransactionState.COMPLETED
            for timer in ("A", "B", "cancelled"):
                self._cancel(transaction, timer)
            assert transaction.request is not None  # let go of only here
            ack = bytes(build_non2xx_ack(transaction.request, response))
            transaction.ack = ack
            transaction.request = None
            transaction._seen = None
            events: list[Event] = [
                Send(ack, transaction.dest, transaction.reliable),
                ResponseReceived(response, transaction),
            ]
            self._linger(transaction, "D", self.timers.timer_d(transaction.reliable), now)
            return events
        if state is TransactionState.COMPLETED and transaction.ack is not None:
            return [Send(transaction.ack, transaction.dest, transaction.reliable)]
        return []

    def _non_invite_response(
        self, transaction: ClientTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        """17.1.2.2: the non-INVITE client transaction."""
        if transaction.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return []
        if response.status < 200:
            transaction.state = TransactionState.PROCEEDING
            return self._provisional_up(transaction, response)
        transaction.state = TransactionState.COMPLETED
        transaction.request = None
        transaction._seen = None
        self._cancel(transaction, "E")
        self._cancel(transaction, "F")
        self._linger(
            transaction,
            "K",
            self.timers.for_transport(self.timers.timer_k, transaction.reliable),
            now,
        )
        return [ResponseReceived(response, transaction)]

    @staticmethod
    def _provisional_up(transaction: ClientTransaction, response: SipResponse) -> list[Event]:
        fingerprint = _fingerprint(response)
        seen = transaction._seen
        if seen is None:
            seen = transaction._seen = set()
        elif fingerprint in seen:
            return []
        seen.add(fingerprint)
        return [ResponseReceived(response, transaction)]

    def _resend_ack(self, response: SipResponse) -> list[Event]:
        """13.2.2.4: a retransmitted 2xx gets the ACK the TU sent for it."""
        record = self._acks.get((response.call_id, response.cseq.seq, response.to_tag))
        if record is None:
            return []
        return [Send(record.ack, record.dest, record.reliable)]

    # -------------------------------------------------------------- outbound

    def send_request(
        self, request: SipRequest, dest: Address, now: float, reliable: bool = False
    ) -> tuple[ClientTransaction, list[Event]]:
        """Start a client transaction for ``request`` (17.1.1.2, 17.1.2.2).

        The request must carry its top Via with a magic-cookie branch
        (:func:`new_branch`). ACK is not a transaction: use :meth:`send_ack`.
        """
        method = request.method
        if method == _ACK:
            raise ValueError("an ACK is not a transaction: use send_ack")
        via = request.top_via
        if via is None or not _has_cookie(via.branch):
            raise ValueError(f"the {method} needs a top Via with a {MAGIC_COOKIE} branch")
        if request.cseq.method != method:
            raise ValueError(f"CSeq method {request.cseq.method} does not match {method}")
        key = (via.branch, method)
        if key in self._clients:
            raise ValueError(f"a {method} transaction with branch {via.branch} is already open")
        transaction = ClientTransaction(request, key, dest, reliable)
        self._clients[key] = transaction
        timers = self.timers
        if method == _CANCEL:
            # 9.1: with no final response 64*T1 after the CANCEL, the INVITE counts as
            # cancelled (Timer B stopped at its first provisional: nothing else ends it)
            invite = self._clients.get((via.branch, _INVITE))
            if invite is not None and invite.state is TransactionState.PROCEEDING:
                self._set(invite, "cancelled", now + timers.cancel_wait)
        if method == _INVITE:
            invite_key = transaction._invite_key
            assert invite_key is not None
            self._invites[invite_key] = transaction
            if not reliable:
                transaction.interval = timers.timer_a
                self._set(transaction, "A", now + timers.timer_a)
            self._set(transaction, "B", now + timers.timer_b)
        else:
            if not reliable:
                transaction.interval = timers.timer_e
                self._set(transaction, "E", now + timers.timer_e)
            self._set(transaction, "F", now + timers.timer_f)
        return transaction, [Send(request, dest, reliable)]

    def send_response(
        self, transaction: ServerTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        """Send a response through its server transaction (17.2.1, 17.2.2, RFC 6026 7.1).

        A response the transaction can no longer carry (a second final, or
        anything after termination) is dropped and nothing is sent.
        """
        status = response.status
        state = transaction.state
        timers = self.timers
        if transaction.method != _INVITE:
            if state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
                return []
            if status < 200:
                transaction.last_to_tag = response.to_tag
                transaction.last_response = response
                transaction.state = TransactionState.PROCEEDING
                return [Send(response, transaction.dest, transaction.reliable)]
            return self._send_final(transaction, response, TransactionState.COMPLETED, now)
        if state is TransactionState.ACCEPTED and 200 <= status < 300:
            # RFC 6026 7.1: the TU's 2xx goes out
            self._index_accepted(transaction, response)
            return self._send_final(transaction, response, TransactionState.ACCEPTED, now)
        if state is not TransactionState.PROCEEDING:
            return []
        if status < 200:
            transaction.last_to_tag = response.to_tag
            transaction.last_response = response
            return [Send(response, transaction.dest, transaction.reliable)]
        if status < 300:
            # 13.3.1.4: the 2xx is retransmitted until the ACK; RFC 6026 Accepted state
            self._index_accepted(transaction, response)
            transaction.interval = timers.t1
            self._set(transaction, "2xx", now + timers.t1)
            self._set(transaction, "L", now + timers.timer_l)
            return self._send_final(transaction, response, TransactionState.ACCEPTED, now)
        send = self._send_final(transaction, response, TransactionState.COMPLETED, now)
        if not transaction.reliable:
            transaction.interval = timers.timer_g
            self._set(transaction, "G", now + timers.timer_g)
        self._set(transaction, "H", now + timers.timer_h)
        return send

    def _send_final(
        self,
        transaction: ServerTransaction,
        response: SipResponse,
        state: TransactionState,
        now: float,
    ) -> list[Event]:
        """Send a final response, kept as its bytes to be sent again; a non-INVITE
        transaction then waits out Timer J (17.2.2)."""
        to_tag = response.to_tag  # read first: a bad To leaves the transaction as it was
        data = bytes(response)
        transaction.last_response = data
        transaction.last_to_tag = to_tag
        transaction.state = state
        transaction.request = None
        send: list[Event] = [Send(data, transaction.dest, transaction.reliable)]
        if transaction.method != _INVITE:
            timers = self.timers
            self._linger(
                transaction, "J", timers.for_transport(timers.timer_j, transaction.reliable), now
            )
        return send

    def _index_accepted(self, transaction: ServerTransaction, response: SipResponse) -> None:
        base = transaction._accept_base
        if base is None:
            request = transaction.request
            assert request is not None  # the first 2xx: the request is still there
            base = transaction._accept_base = (request.call_id, request.cseq.seq, request.from_tag)
        key = (*base, response.to_tag)
        if key not in self._accepted:
            self._accepted[key] = transaction
            transaction._accepted_keys = (*transaction._accepted_keys, key)

    def send_ack(
        self, ack: SipRequest, dest: Address, now: float, reliable: bool = False
    ) -> list[Event]:
        """Send the TU's ACK for a 2xx and keep it for 64*T1 (13.2.2.4).

        Retransmissions of that 2xx (same Call-ID, CSeq number and To tag)
        get this ACK again without reaching the TU.
        """
        if ack.method != _ACK:
            raise ValueError(f"send_ack takes an ACK, not {ack.method}")
        key = (ack.call_id, ack.cseq.seq, ack.to_tag)
        previous = self._acks.get(key)
        if previous is not None:
            self._disarm(previous)
        record = _AckRecord(bytes(ack), dest, reliable, key)
        self._acks[key] = record
        self._set(record, "expire", now + self.timers.ack_memory)
        return [Send(record.ack, dest, reliable)]

    def send_stateless(
        self, message: SipMessage, dest: Address, reliable: bool = False
    ) -> list[Event]:
        """Send outside any transaction (a reply to a malformed request, for instance)."""
        return [Send(message, dest, reliable)]

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or None when no timer is running."""
        heap, armed = self._heap, self._armed
        while heap:
            deadline, order, _ = heap[0]
            if order in armed:
                return deadline
            heapq.heappop(heap)
        return None

    def tick(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``, in deadline order."""
        events: list[Event] = []
        heap, armed = self._heap, self._armed
        while heap and heap[0][0] <= now:
            _, order, name = heapq.heappop(heap)
            owner = armed.pop(order, None)
            if owner is None:
                continue  # cancelled or re-armed
            del owner._timers[name]
            if isinstance(owner, ServerTransaction):
                events += self._server_timer(owner, name, now)
            elif isinstance(owner, ClientTransaction):
                events += self._client_timer(owner, name, now)
            else:
                self._forget_ack(owner)
        return events

    def _server_timer(self, transaction: ServerTransaction, name: str, now: float) -> list[Event]:
        timers = self.timers
        if name in ("G", "2xx"):
            # 17.2.1 timer G and 13.3.1.4: double the interval up to T2
            transaction.interval = timers.next_interval(transaction.interval)
            self._set(transaction, name, now + transaction.interval)
            assert transaction.last_response is not None
            return [Send(transaction.last_response, transaction.dest, transaction.reliable)]
        events: list[Event] = []
        if name == "L" and not transaction.acked:
            events.append(AckTimeout(transaction))
        # H (no ACK for a non-2xx), I, J and L end the transaction
        self._terminate_server(transaction)
        return events

    def _client_timer(self, transaction: ClientTransaction, name: str, now: float) -> list[Event]:
        timers = self.timers
        if name == "A":
            # 17.1.1.2: timer A doubles with no cap while Calling
            transaction.interval *= 2
            self._set(transaction, "A", now + transaction.interval)
            assert transaction.request is not None  # Calling: no final response yet
            return [Send(transaction.request, transaction.dest, transaction.reliable)]
        if name == "E":
            # 17.1.2.2: doubling up to T2 while Trying, T2 once Proceeding
            if transaction.state is TransactionState.PROCEEDING:
                transaction.interval = timers.t2
            else:
                transaction.interval = timers.next_interval(transaction.interval)
            self._set(transaction, "E", now + transaction.interval)
            assert transaction.request is not None  # Trying/Proceeding: no final response yet
            return [Send(transaction.request, transaction.dest, transaction.reliable)]
        events: list[Event] = []
        if name in ("B", "F", "cancelled"):
            events.append(TransactionTimeout(transaction))
        # B, F time out, and a cancelled INVITE with no final response (9.1); D, K, M end
        # the transaction
        self._terminate_client(transaction)
        return events

    def _set(self, owner: _TimerOwner, name: str, deadline: float) -> None:
        self._cancel(owner, name)  # re-armed: the earlier entry goes stale
        order = next(self._order)
        owner._timers[name] = order
        self._armed[order] = owner
        heapq.heappush(self._heap, (deadline, order, name))

    def _cancel(self, owner: _TimerOwner, name: str) -> None:
        order = owner._timers.pop(name, None)
        if order is not None:
            self._armed.pop(order, None)

    def _disarm(self, owner: _TimerOwner) -> None:
        """Cancel every timer of ``owner``."""
        armed = self._armed
        for order in owner._timers.values():
            armed.pop(order, None)
        owner._timers.clear()

    def _linger(
        self,
        transaction: ServerTransaction | ClientTransaction,
        name: str,
        duration: float,
        now: float,
    ) -> None:
        """Start a wait that ends the transaction, or end it now when the wait is zero."""
        if duration > 0:
            self._set(transaction, name, now + duration)
        elif isinstance(transaction, ServerTransaction):
            self._terminate_server(transaction)
        else:
            self._terminate_client(transaction)

    # ------------------------------------------------------------ termination

    def _terminate_server(self, transaction: ServerTransaction) -> None:
        transaction.state = TransactionState.TERMINATED
        self._disarm(transaction)
        key = transaction.key
        if self._servers.get(key) is transaction:
            del self._servers[key]
        if self._cancellable.get(key[:-1]) is transaction:
            del self._cancellable[key[:-1]]
        for accepted_key in transaction._accepted_keys:
            if self._accepted.get(accepted_key) is transaction:
                del self._accepted[accepted_key]
        transaction._accepted_keys = ()

    def _terminate_client(self, transaction: ClientTransaction) -> None:
        transaction.state = TransactionState.TERMINATED
        self._disarm(transaction)
        if self._clients.get(transaction.key) is transaction:
            del self._clients[transaction.key]
        invite_key = transaction._invite_key
        if invite_key is not None and self._invites.get(invite_key) is transaction:
            del self._invites[invite_key]

    def _forget_ack(self, record: _AckRecord) -> None:
        if self._acks.get(record.key) is record:
            del self._acks[record.key]
