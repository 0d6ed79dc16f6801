"""SIP requests and responses: parsing, header access and serialization (RFC 3261 7, 18.3, 20).

``parse_message`` reads one datagram. Structured header values (Via, From,
To, CSeq, Contact, Route, Record-Route, Max-Forwards) are validated when a
message is parsed, so their properties cannot fail afterwards. Properties
are derived from the current header text on every access (through a
bounded cache of parsed values), so they follow header edits, and each
access returns fresh objects that are the caller's to change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq, Via, parse_via_list
from gateway.sip.uri import NameAddr, SipUri, is_token, split_header_list

SIP_VERSION = "SIP/2.0"

REASON_PHRASES: dict[int, str] = {
    # RFC 3261 21.1 and extensions
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",  # RFC 6228
    # RFC 3261 21.2
    200: "OK",
    202: "Accepted",  # RFC 6665 (deprecated)
    204: "No Notification",  # RFC 5839
    # RFC 3261 21.3
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    # RFC 3261 21.4
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",  # RFC 3903
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",  # RFC 4412
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",  # RFC 4028
    423: "Interval Too Brief",
    424: "Bad Location Information",  # RFC 6442
    428: "Use Identity Header",  # RFC 8224
    429: "Provide Referrer Identity",  # RFC 3892
    430: "Flow Failed",  # RFC 5626
    433: "Anonymity Disallowed",  # RFC 5079
    436: "Bad Identity Info",  # RFC 8224
    437: "Unsupported Credential",  # RFC 8224
    438: "Invalid Identity Header",  # RFC 8224
    439: "First Hop Lacks Outbound Support",  # RFC 5626
    440: "Max-Breadth Exceeded",  # RFC 5393
    469: "Bad Info Package",  # RFC 6086
    470: "Consent Needed",  # RFC 5360
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",  # RFC 6665
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",  # RFC 3329
    # RFC 3261 21.5
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",  # RFC 8599
    580: "Precondition Failure",  # RFC 3312
    # RFC 3261 21.6
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",  # RFC 8197
    608: "Rejected",  # RFC 8688
}

# -- header names ------------------------------------------------------------------

COMPACT_FORMS: dict[str, str] = {
    # RFC 3261 7.3.3 and the IANA SIP header registry
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
    "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events", "Answer-Mode",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Transfer-Encoding", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info",
    "Event", "Expires", "Feature-Caps", "Flow-Timer", "From", "Geolocation", "History-Info",
    "Identity", "Identity-Info", "In-Reply-To", "Info-Package", "Join", "Max-Breadth",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Access-Network-Info", "P-Asserted-Identity", "P-Called-Party-ID", "P-Charging-Vector",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Recv-Info",
    "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Resource-Priority", "Retry-After", "Route", "RSeq",
    "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
    "Supported", "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent",
    "User-to-User", "Via", "Warning", "WWW-Authenticate",
)  # fmt: skip

# Any spelling seen on the wire -> (canonical name, lowercase key).
_NAMES: dict[str, tuple[str, str]] = {}
for _name in _KNOWN_NAMES:
    _NAMES[_name] = _NAMES[_name.lower()] = (_name, _name.lower())
for _short, _full in COMPACT_FORMS.items():
    _NAMES[_short] = _NAMES[_short.upper()] = (_full, _full.lower())

# Headers whose grammar is a comma-separated list (RFC 3261 7.3.1, 25.1 "1#").
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
        "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events", "Call-Info",
        "Contact", "Content-Encoding", "Content-Language", "Diversion", "Error-Info",
        "History-Info", "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
        "Proxy-Require", "Reason", "Record-Route", "Recv-Info", "Reject-Contact",
        "Remote-Party-ID", "Request-Disposition", "Require", "Resource-Priority", "Route",
        "Security-Client", "Security-Server", "Security-Verify", "Service-Route", "Supported",
        "Unsupported", "Via", "Warning",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """The full, conventionally capitalised form of a header name (RFC 3261 7.3.3)."""
    entry = _NAMES.get(name) or _NAMES.get(name.lower())
    return entry[0] if entry is not None else name


def _known(name: str) -> tuple[str, str] | None:
    """(canonical name, lowercase key) of a header name the table holds, else None."""
    entry = _NAMES.get(name)
    return entry if entry is not None else _NAMES.get(name.lower())


def _lookup(name: str) -> tuple[str, str]:
    """(canonical name, lowercase key) of a header name."""
    entry = _known(name)
    return entry if entry is not None else (name, name.lower())


def _checked_name(name: str) -> tuple[str, str]:
    entry = _known(name)
    if entry is not None:
        return entry
    if not is_token(name):  # a name the table lacks must be a token (RFC 3261 7.3.1)
        raise ValueError(f"invalid header name {name!r}")
    return name, name.lower()


def _checked_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("header value contains CR or LF")
    return value.strip(" \t")


class Headers:
    """An ordered, case-insensitive multimap of header fields (RFC 3261 7.3).

    Names are stored in their canonical full form (compact forms expanded).
    """

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str, str]] = []
        if items is not None:
            for name, value in items:
                self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str, str]]) -> Headers:
        headers = cls()
        headers._items = items
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name``."""
        key = _lookup(name)[1]
        for item_key, _, value in self._items:
            if item_key == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma-joined list values split (RFC 3261 7.3.1).

        Headers whose grammar is not a list (WWW-Authenticate, Authorization,
        Date, ...) are returned one value per field, never split.
        """
        key = _lookup(name)[1]
        values = [value for item_key, _, value in self._items if item_key == key]
        if key not in LIST_HEADERS:
            return values
        return [element for value in values for element in split_header_list(value)]

    def raw_values(self, name: str) -> list[str]:
        """Every field value of ``name`` as received, one per header line, never split."""
        key = _lookup(name)[1]
        return [value for item_key, _, value in self._items if item_key == key]

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, where the first one was."""
        canonical, key = _checked_name(name)
        new_item = (key, canonical, _checked_value(value))
        items = self._items
        kept = []
        placed = False
        for item in items:
            if item[0] == key:
                if not placed:
                    kept.append(new_item)
                    placed = True
            else:
                kept.append(item)
        if not placed:
            kept.append(new_item)
        self._items = kept

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        canonical, key = _checked_name(name)
        self._items.append((key, canonical, _checked_value(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of the same name, or at the top."""
        canonical, key = _checked_name(name)
        new_item = (key, canonical, _checked_value(value))
        for index, item in enumerate(self._items):
            if item[0] == key:
                self._items.insert(index, new_item)
                return
        self._items.insert(0, new_item)

    def remove(self, name: str) -> None:
        """Remove every field called ``name``."""
        key = _lookup(name)[1]
        self._items = [item for item in self._items if item[0] != key]

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        key = _lookup(name)[1]
        return sum(1 for item in self._items if item[0] == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _lookup(name)[1]
        return any(item[0] == key for item in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` for every field, in order."""
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# -- parsed header values -----------------------------------------------------------

_T = TypeVar("_T")


class _ParseCache(Generic[_T]):
    """Parsed header values by their text (RFC 3261 parsing is pure).

    The cached objects are never handed out: callers get copies, so what
    they change never leaks into another message. Bounded in entry count
    and entry length.
    """

    def __init__(self, parse: Callable[[str], _T], size: int = 1024, longest: int = 512) -> None:
        self._parse = parse
        self._size = size
        self._longest = longest
        self._entries: dict[str, _T] = {}

    def __call__(self, text: str) -> _T:
        entry = self._entries.get(text)
        if entry is None:
            entry = self._parse(text)
            if len(text) <= self._longest:
                if len(self._entries) >= self._size:
                    self._entries.clear()
                self._entries[text] = entry
        return entry


_name_addrs: _ParseCache[NameAddr] = _ParseCache(NameAddr.parse)
_via_lists: _ParseCache[list[Via]] = _ParseCache(parse_via_list)
_cseqs: _ParseCache[CSeq] = _ParseCache(CSeq.parse)


def _copy_via(via: Via) -> Via:
    return Via(via.transport, via.host, via.port, dict(via.params))


def _copy_name_addr(address: NameAddr) -> NameAddr:
    uri = address.uri
    return NameAddr(
        address.display_name,
        SipUri(
            uri.scheme,
            uri.user,
            uri.password,
            uri.host,
            uri.port,
            dict(uri.params),
            dict(uri.headers),
        ),
        dict(address.params),
    )


def _cached_name_addr(value: str, name: str) -> NameAddr:
    """The shared parsed header: for reading only, never to be changed or handed out."""
    try:
        return _name_addrs(value)
    except SipParseError:
        raise SipParseError(f"Bad {name} header") from None


def _name_addr(value: str, name: str) -> NameAddr:
    return _copy_name_addr(_cached_name_addr(value, name))


def _parse_max_forwards(value: str) -> int:
    """RFC 3261 20.22: an integer 0-255."""
    if not value.isascii() or not value.isdigit() or len(value.lstrip("0")) > 3:
        raise SipParseError("Bad Max-Forwards header")
    hops = int(value)
    if hops > 255:
        raise SipParseError("Bad Max-Forwards header")
    return hops


# -- messages --------------------------------------------------------------------


class SipMessage:
    """What requests and responses share: headers, body and parsed header properties."""

    version = SIP_VERSION
    headers: Headers
    body: bytes

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """RFC 3261 20.8."""
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """RFC 3261 20.16."""
        parsed = _cseqs(self._required("CSeq"))  # the handlers ask for it again and again
        return CSeq(parsed.seq, parsed.method)

    @property
    def vias(self) -> list[Via]:
        """Every Via, top first, comma-joined values split (RFC 3261 20.42)."""
        vias = [_copy_via(via) for raw in self.headers.raw_values("Via") for via in _via_lists(raw)]
        if not vias:
            raise SipParseError("Missing Via header")
        return vias

    @property
    def top_via(self) -> Via:
        """The first Via: where responses go (RFC 3261 18.2.2)."""
        return _copy_via(_via_lists(self._required("Via"))[0])

    @property
    def from_(self) -> NameAddr:
        """RFC 3261 20.20."""
        return _name_addr(self._required("From"), "From")

    @property
    def to(self) -> NameAddr:
        """RFC 3261 20.39."""
        return _name_addr(self._required("To"), "To")

    @property
    def from_tag(self) -> str | None:
        """The From tag (RFC 3261 19.3), read without copying the whole header."""
        return _cached_name_addr(self._required("From"), "From").tag

    @property
    def to_tag(self) -> str | None:
        """The To tag (RFC 3261 19.3), read without copying the whole header."""
        return _cached_name_addr(self._required("To"), "To").tag

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact; the REGISTER wildcard ``*`` (RFC 3261 10.2.2) is left out."""
        return [
            _name_addr(element, "Contact")
            for element in self.headers.get_all("Contact")
            if element != "*"
        ]

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route, in order (RFC 3261 20.34)."""
        return [_name_addr(element, "Route") for element in self.headers.get_all("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route, in order (RFC 3261 20.30)."""
        return [
            _name_addr(element, "Record-Route") for element in self.headers.get_all("Record-Route")
        ]

    @property
    def max_forwards(self) -> int | None:
        """RFC 3261 20.22; None when absent (tolerated, RFC 3261 8.1.1.6 is a MUST on senders)."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else _parse_max_forwards(value)

    @property
    def content_type(self) -> str | None:
        """The media type, lowercased and without parameters (RFC 3261 20.15)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        media_type = value.partition(";")[0].strip().lower()
        return media_type or None

    def _serialize(self, start_line: str) -> bytes:
        """RFC 3261 7: start line, headers, CRLF, body; Content-Length always correct."""
        body = self.body
        lines = [start_line]
        length_written = False
        for key, name, value in self.headers._items:
            if key == "content-length":
                if length_written:
                    continue
                length_written = True
                lines.append(f"Content-Length: {len(body)}")
            else:
                lines.append(name + ": " + value)
        if not length_written:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


class SipRequest(SipMessage):
    """A SIP request (RFC 3261 7.1)."""

    def __init__(
        self,
        method: str,
        uri: SipUri,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response (RFC 3261 7.2)."""

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        if not 100 <= status <= 699:
            raise ValueError(f"status code {status} outside 100-699")
        if reason is None:
            reason = REASON_PHRASES.get(status, "")
        elif "\r" in reason or "\n" in reason:
            raise ValueError("reason phrase contains CR or LF")
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __bytes__(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


# -- parsing -----------------------------------------------------------------------

_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_PLACEHOLDER_HOST = "invalid"  # RFC 2606: a name that can never resolve
_EXACTLY_ONE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))
_AT_MOST_ONE = (
    ("max-forwards", "Max-Forwards"),
    ("content-length", "Content-Length"),
    ("content-type", "Content-Type"),
)


class _Invalid(Exception):
    """A reason to reject the message being parsed, and the status it calls for."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _split_head(data: bytes) -> tuple[list[str], int]:
    """Lines of the start line and headers (unfolded), and where the body starts.

    RFC 3261 7.5: CRLFs before the start line are skipped. LF-only line ends
    are tolerated. RFC 3261 7.3.1: a line starting with SP or HTAB continues
    the previous one.
    """
    length = len(data)
    start = length - len(data.lstrip(b"\r\n"))
    if start == length:
        raise SipParseError("Empty message")
    blank_crlf = data.find(b"\n\r\n", start)
    blank_lf = data.find(b"\n\n", start, blank_crlf if blank_crlf >= 0 else length)
    if blank_lf >= 0:
        head_end, body_start = blank_lf, blank_lf + 2
    elif blank_crlf >= 0:
        head_end, body_start = blank_crlf, blank_crlf + 3
    else:
        head_end = body_start = length
    text = data[start:head_end].decode("utf-8", "surrogateescape")
    if "\n " in text or "\n\t" in text:
        text = _FOLD_RE.sub(" ", text)
    return text.split("\n"), body_start


def _parse_header_lines(lines: list[str]) -> tuple[Headers, str | None]:
    """Header fields (RFC 3261 7.3) and the first syntax problem met, if any."""
    items: list[tuple[str, str, str]] = []
    problem = None
    names = _NAMES
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            if line.strip(" \t\r"):
                problem = problem or "Bad header line"
            continue
        entry = names.get(name)
        if entry is None:
            name = name.rstrip(" \t")
            entry = names.get(name) or names.get(name.lower())
            if entry is None:
                if not is_token(name):
                    problem = problem or "Bad header name"
                    continue
                entry = (name, name.lower())
        value = value.strip(" \t\r")
        if "\r" in value:
            problem = problem or "Bad header line"  # a bare CR is no line end (RFC 3261 7)
            continue
        items.append((entry[1], entry[0], value))
    return Headers._trusted(items), problem


def _check_call_id(value: str) -> None:
    """RFC 3261 25.1: Call-ID = word ["@" word], so no whitespace."""
    if not value or " " in value or "\t" in value:
        raise SipParseError("Bad Call-ID header")


def _check_addresses(value: str) -> None:
    for element in split_header_list(value):
        _name_addrs(element)


def _check_contacts(value: str) -> None:
    for element in split_header_list(value):
        if element != "*":  # RFC 3261 10.2.2: the REGISTER wildcard
            _name_addrs(element)


def _counted_only(value: str) -> None:
    """Checked elsewhere (Content-Length) or only counted (Content-Type)."""


# Per header key: the check its value must pass. Every key here is also counted.
_CHECKS: dict[str, Callable[[str], object]] = {
    "via": _via_lists,
    "from": _name_addrs,
    "to": _name_addrs,
    "call-id": _check_call_id,
    "cseq": _cseqs,
    "max-forwards": _parse_max_forwards,
    "contact": _check_contacts,
    "route": _check_addresses,
    "record-route": _check_addresses,
    "content-length": _counted_only,
    "content-type": _counted_only,
}


def _check_headers(items: list[tuple[str, str, str]], method: str | None) -> None:
    """Presence, multiplicity and syntax of what this layer relies on (RFC 3261 8.1.1, 20).

    Via, From, To, Call-ID and CSeq must be present; From, To, Call-ID, CSeq,
    Max-Forwards, Content-Length and Content-Type at most once (RFC 4475
    3.3.8 multi01, 3.3.9 mcl01); a request's CSeq method must be its method
    (RFC 3261 8.1.1.5, RFC 4475 3.1.2.17).
    """
    counts: dict[str, int] = {}
    checks = _CHECKS
    cseq: object = None
    for key, name, value in items:
        check = checks.get(key)
        if check is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        try:
            result = check(value)
        except SipParseError:
            raise _Invalid(f"Bad {name} header") from None
        if key == "cseq":
            cseq = result
    if "via" not in counts:
        raise _Invalid("Missing Via header")
    for key, name in _EXACTLY_ONE:
        count = counts.get(key, 0)
        if count == 0:
            raise _Invalid(f"Missing {name} header")
        if count > 1:
            raise _Invalid(f"Multiple {name} headers")
    for key, name in _AT_MOST_ONE:
        if counts.get(key, 0) > 1:
            raise _Invalid(f"Multiple {name} headers")
    if method is not None and isinstance(cseq, CSeq) and cseq.method != method:
        raise _Invalid("CSeq method does not match the request method")


def _body(data: bytes, body_start: int, headers: Headers) -> bytes:
    """The body by Content-Length, datagram rules (RFC 3261 18.3)."""
    value = headers.get("content-length")
    if value is None:
        return data[body_start:]
    if not value.isascii() or not value.isdigit() or len(value.lstrip("0")) > 10:
        raise _Invalid("Bad Content-Length header")
    length = int(value)
    if length > len(data) - body_start:
        raise _Invalid("Content-Length larger than message")
    return data[body_start : body_start + length]


def _answerable(request: SipRequest) -> bool:
    """Whether a response can be built and routed: top Via parses, From/To/Call-ID/CSeq exist."""
    headers = request.headers
    for key in ("from", "to", "call-id", "cseq"):
        if key not in headers:
            return False
    try:
        request.top_via  # noqa: B018
    except SipParseError:
        return False
    return True


def _parse_request(start_line: str, lines: list[str], data: bytes, body_start: int) -> SipRequest:
    parts = start_line.split(" ")
    method = parts[0]
    if not is_token(method):
        raise SipParseError("Bad Request-Line")
    headers, problem = _parse_header_lines(lines)
    uri: SipUri | None = None
    try:
        if len(parts) != 3:
            raise _Invalid("Bad Request-Line")
        version = parts[2]
        if version != SIP_VERSION and version.upper() != SIP_VERSION:
            if _VERSION_RE.fullmatch(version):
                raise _Invalid("SIP Version Not Supported", 505)
            raise _Invalid("Bad Request-Line")
        try:
            uri = SipUri.parse(parts[1])
        except SipParseError as exc:
            if exc.status == 416:
                raise _Invalid("Unsupported URI Scheme", 416) from None
            raise _Invalid("Bad Request-URI") from None
        if uri.headers:
            raise _Invalid("Bad Request-URI")  # RFC 3261 19.1.1 table: no headers here
        if problem is not None:
            raise _Invalid(problem)
        _check_headers(headers._items, method)
        body = _body(data, body_start, headers)
    except _Invalid as invalid:
        if uri is None:
            uri = SipUri("sip", None, None, _PLACEHOLDER_HOST, None)
        request = SipRequest(method, uri, headers)
        partial = request if _answerable(request) else None
        raise SipParseError(invalid.reason, partial, status=invalid.status) from None
    return SipRequest(method, uri, headers, body)


def _parse_response(start_line: str, lines: list[str], data: bytes, body_start: int) -> SipResponse:
    parts = start_line.split(" ", 2)
    version = parts[0]
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        if _VERSION_RE.fullmatch(version):
            raise SipParseError("SIP Version Not Supported", status=505)
        raise SipParseError("Bad Status-Line")
    code = parts[1] if len(parts) > 1 else ""
    if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] not in "123456":
        raise SipParseError("Bad Status-Line")
    reason = parts[2] if len(parts) > 2 else ""
    if "\r" in reason:
        raise SipParseError("Bad Status-Line")
    headers, problem = _parse_header_lines(lines)
    try:
        if problem is not None:
            raise _Invalid(problem)
        _check_headers(headers._items, None)
        body = _body(data, body_start, headers)
    except _Invalid as invalid:
        raise SipParseError(invalid.reason, status=invalid.status) from None
    return SipResponse(int(code), reason, headers, body)


def parse_message(data: bytes | bytearray | memoryview) -> SipRequest | SipResponse:
    """Parse one SIP message received as a datagram (RFC 3261 7, 18.3).

    Without Content-Length the body is the rest of the datagram; octets past
    Content-Length are discarded; a Content-Length beyond the datagram is an
    error. Raises SipParseError (with ``partial`` when the request can still
    be answered) for anything malformed.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    lines, body_start = _split_head(raw)
    start_line = lines[0]
    if start_line[-1:] == "\r":
        start_line = start_line[:-1]
    if start_line[:4].upper() == "SIP/":
        return _parse_response(start_line, lines, raw, body_start)
    return _parse_request(start_line, lines, raw, body_start)


# -- building responses ----------------------------------------------------------


def _to_with_tag(value: str, tag: str) -> str:
    try:
        to = NameAddr.parse(value)
    except SipParseError:
        return value
    return value if to.tag is not None else f"{value};tag={tag}"


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to ``request`` as RFC 3261 8.2.6 builds it.

    Copies every Via (in order), From, To, Call-ID and CSeq; adds
    ``;tag=to_tag`` to To when it has none and the status is not 100
    (8.2.6.2); copies Timestamp into a 100 (8.2.6.1). With a body, adds
    Content-Type (``application/sdp`` unless ``content_type`` says).
    """
    if to_tag is not None and not is_token(to_tag):
        raise ValueError(f"invalid tag {to_tag!r}")
    response = SipResponse(status, reason)
    source = request.headers
    items = response.headers._items
    for item in source._items:
        if item[0] == "via":
            items.append(item)
    for key in ("from", "to", "call-id", "cseq"):
        for item in source._items:
            if item[0] == key:
                if key == "to" and to_tag and status != 100:
                    item = (item[0], item[1], _to_with_tag(item[2], to_tag))
                items.append(item)
                break
    if status == 100:
        timestamp = source.get("timestamp")
        if timestamp is not None:
            items.append(("timestamp", "Timestamp", timestamp))
    if body:
        response.body = body
        items.append(("content-type", "Content-Type", content_type or "application/sdp"))
    return response
