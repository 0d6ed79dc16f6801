"""SDP session descriptions (RFC 4566) for the offer/answer model (RFC 3264).

Sans-IO: :meth:`SessionDescription.parse` turns a message body into
dataclasses, ``bytes()`` turns them back into a body with CRLF line ends in
the order RFC 4566 section 5 prescribes. :func:`rewrite_for_relay` produces
the description the gateway sends so that media flows through its relay
ports, and :func:`media_endpoints` reads where a party wants to receive media.

Text fields are decoded as UTF-8 with ``surrogateescape``: RFC 4566 5 lets
``a=charset`` select another character set, so bytes that are not UTF-8 are
kept and written back unchanged rather than rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mypy_extensions import mypyc_attr

from gateway.sip.random_ids import random_hex
from gateway.sip.rebuild import by_fields

__all__ = [
    "DIRECTIONS",
    "ICE_ATTRIBUTES",
    "Connection",
    "MediaDescription",
    "Origin",
    "SdpParseError",
    "SessionDescription",
    "media_endpoints",
    "new_origin",
    "rewrite_for_relay",
]

DIRECTIONS: tuple[str, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
"""Direction attributes (RFC 4566 6, RFC 3264 5.1); sendrecv is the default."""

ICE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "candidate",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "ice-pacing",
        "end-of-candidates",
        "remote-candidates",
    }
)
"""ICE attributes (RFC 8839 5, RFC 8840 8.2), dropped when the gateway anchors media."""

HOLD_ADDRESS = "0.0.0.0"
"""The connection address that puts a stream on hold (RFC 2543, RFC 3264 8.4)."""

HOLD_ADDRESSES: frozenset[str] = frozenset({HOLD_ADDRESS, "::"})
"""Unspecified addresses taken as hold: 0.0.0.0 and its IPv6 counterpart ::."""

TRICKLE_PLACEHOLDER_PORT = 9
"""Port of the trickle ICE placeholder (RFC 8840): 0.0.0.0 or :: port 9 is not hold."""

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"
_TRAILING_SPACE = " \t\r"
_FIELD_SPLIT = re.compile(r"[ \t]+")
_TYPE_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# RFC 4566 5: the order of session-level and media-level lines. "r=" shares
# "t="'s rank because repeat times follow the time they belong to.
_SESSION_RANK: dict[str, int] = {
    "v": 0, "o": 1, "s": 2, "i": 3, "u": 4, "e": 5, "p": 6, "c": 7, "b": 8,
    "t": 9, "r": 9, "z": 10, "k": 11, "a": 12,
}  # fmt: skip
_MEDIA_RANK: dict[str, int] = {"m": 0, "i": 1, "c": 2, "b": 3, "k": 4, "a": 5}
_SESSION_REPEATABLE = frozenset("epbtra")
_MEDIA_REPEATABLE = frozenset("ba")
_SESSION_REQUIRED: tuple[tuple[str, str], ...] = (
    ("v", "RFC 4566 5.1"),
    ("o", "RFC 4566 5.2"),
    ("s", "RFC 4566 5.3"),
)
_AFTER_SESSION_LINES = max(_SESSION_RANK.values()) + 1
_KNOWN_TYPES = frozenset(_SESSION_RANK) | frozenset(_MEDIA_RANK)
_DEFAULT_TIMING = "t=0 0"


class SdpParseError(ValueError):
    """A session description that does not follow RFC 4566.

    ``reason`` says what is wrong, on one line (it may end up in a SIP reason
    phrase); ``line`` is the 1-based number of the offending line, or None
    when the problem is the description as a whole (a required line missing).
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


# ---------------------------------------------------------------- helpers


def _fields(value: str) -> list[str]:
    """Space-separated fields, tolerating runs of spaces or tabs."""
    if "\t" in value:
        return [part for part in _FIELD_SPLIT.split(value) if part]
    return [part for part in value.split(" ") if part]  # the usual line: no regex needed


def _quote(value: str, limit: int = 40) -> str:
    """A short, single-line rendering of untrusted text for an error reason."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return repr(shown)


def _parse_uint(text: str, what: str, maximum: int | None = None) -> int:
    if not text.isascii() or not text.isdigit():
        raise SdpParseError(f"{what} is not a number: {_quote(text)}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise SdpParseError(f"{what} {number} is out of range (0-{maximum})")
    return number


def _parse_port(text: str, what: str = "port") -> int:
    return _parse_uint(text, what, 65535)


def _addrtype_for(address: str) -> str:
    """IP6 for an IPv6 literal, else IP4 (RFC 4566 5.7 addrtype)."""
    return "IP6" if ":" in address else "IP4"


def _line(type_letter: str, value: str) -> str:
    """One ``<type>=<value>`` line; refuses values that would break the framing."""
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{type_letter}= value contains a line break or NUL: {_quote(value)}")
    return f"{type_letter}={value}"


def _attribute_line(name: str, value: str | None) -> str:
    _check_attribute_name(name)
    return _line("a", name if value is None else f"{name}:{value}")


def _check_attribute_name(name: str) -> None:
    if not name or ":" in name or " " in name or "\t" in name:
        raise ValueError(f"invalid SDP attribute name: {_quote(name)}")


def _parse_attribute(value: str) -> tuple[str, str | None]:
    """``a=<attribute>`` or ``a=<attribute>:<value>`` (RFC 4566 5.13)."""
    name, colon, attribute_value = value.partition(":")
    if not name or " " in name or "\t" in name:
        raise SdpParseError(f"malformed attribute name: {_quote(value)}")
    return name, (attribute_value if colon else None)


def _direction_in(attributes: list[tuple[str, str | None]]) -> str | None:
    """The last direction attribute among ``attributes`` (RFC 4566 6), if any."""
    found: str | None = None
    for name, _ in attributes:
        lowered = name.lower()
        if lowered in DIRECTIONS:
            found = lowered
    return found


def _parse_rtcp(value: str) -> tuple[int, str | None]:
    """``a=rtcp:<port> [<nettype> <addrtype> <connection-address>]`` (RFC 3605 2.1)."""
    parts = _fields(value)
    if len(parts) not in (1, 4):
        raise SdpParseError(f"malformed a=rtcp (RFC 3605 2.1): {_quote(value)}")
    port = _parse_port(parts[0], "a=rtcp port")
    return port, (parts[3] if len(parts) == 4 else None)


def _parse_rtpmap(value: str) -> tuple[str, tuple[str, int, int | None]]:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<parameters>]`` (RFC 4566 6)."""
    payload_type, _, mapping = value.strip(" \t").partition(" ")
    pieces = mapping.strip(" \t").split("/")
    if not payload_type or len(pieces) not in (2, 3) or not pieces[0]:
        raise SdpParseError(f"malformed a=rtpmap (RFC 4566 6): {_quote(value)}")
    clock_rate = _parse_uint(pieces[1], "a=rtpmap clock rate")
    channels: int | None = None
    if len(pieces) == 3:
        channels = _parse_uint(pieces[2], "a=rtpmap channel count")
    return payload_type, (pieces[0], clock_rate, channels)


def _check_known_attribute(name: str, value: str | None) -> None:
    """Reject, at parse time, malformed attributes this gateway relies on."""
    lowered = name.lower()
    if lowered == "rtcp":
        _parse_rtcp(value or "")
    elif lowered == "rtpmap":
        _parse_rtpmap(value or "")


def _attributes_named(attributes: list[tuple[str, str | None]], name: str) -> list[str]:
    wanted = name.lower()
    return [value or "" for key, value in attributes if key.lower() == wanted]


# --------------------------------------------------------------- o= and c=


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (RFC 4566 5.2).

    ``session_version`` goes up each time the description changes (RFC 3264 8).
    """

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __init__(
        self,
        username: str,
        session_id: str,
        session_version: int,
        nettype: str,
        addrtype: str,
        address: str,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.username = username
        self.session_id = session_id
        self.session_version = session_version
        self.nettype = nettype
        self.addrtype = addrtype
        self.address = address

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    def copy(self) -> Origin:
        """A copy (every field is immutable): compiled, where ``dataclasses.replace``
        walks the fields in Python."""
        return Origin(
            self.username,
            self.session_id,
            self.session_version,
            self.nettype,
            self.addrtype,
            self.address,
        )

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = _fields(value)
        if len(parts) != 6:
            raise SdpParseError(f"o= needs 6 fields (RFC 4566 5.2), got {len(parts)}")
        username, session_id, version, nettype, addrtype, address = parts
        session_version = _parse_uint(version, "o= session version")
        return cls(username, session_id, session_version, nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 4566 5.7).

    A multicast address may carry ``/<ttl>`` (IP4 only) and ``/<number of
    addresses>``; both are kept.
    """

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    num: int | None = None

    def __init__(
        self,
        address: str,
        addrtype: str = "IP4",
        nettype: str = "IN",
        ttl: int | None = None,
        num: int | None = None,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.address = address
        self.addrtype = addrtype
        self.nettype = nettype
        self.ttl = ttl
        self.num = num

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    def copy(self) -> Connection:
        """A copy (every field is immutable; see :meth:`Origin.copy`)."""
        return Connection(self.address, self.addrtype, self.nettype, self.ttl, self.num)

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = _fields(value)
        if len(parts) != 3:
            raise SdpParseError(f"c= needs 3 fields (RFC 4566 5.7), got {len(parts)}")
        nettype, addrtype, connection_address = parts
        address, *suffixes = connection_address.split("/")
        if not address:
            raise SdpParseError(f"c= has an empty address: {_quote(connection_address)}")
        ttl: int | None = None
        num: int | None = None
        if addrtype.upper() == "IP6":
            if len(suffixes) > 1:
                raise SdpParseError(f"IP6 c= takes no TTL (RFC 4566 5.7): {_quote(value)}")
            if suffixes:
                num = _parse_uint(suffixes[0], "c= number of addresses")
        else:
            if len(suffixes) > 2:
                raise SdpParseError(f"malformed c= address (RFC 4566 5.7): {_quote(value)}")
            if suffixes:
                ttl = _parse_uint(suffixes[0], "c= TTL")
            if len(suffixes) == 2:
                num = _parse_uint(suffixes[1], "c= number of addresses")
        return cls(address, addrtype, nettype, ttl, num)

    def __str__(self) -> str:
        text = f"{self.nettype} {self.addrtype} {self.address}"
        if self.ttl is not None:
            text += f"/{self.ttl}"
        if self.num is not None:
            text += f"/{self.num}"
        return text


# --------------------------------------------------------------------- m=


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass
class MediaDescription:
    """One media section: the ``m=`` line and the lines up to the next ``m=`` (RFC 4566 5.14).

    ``attributes`` keeps every ``a=`` line in order with its name as written;
    lookups by name are case-insensitive. ``other_lines`` keeps lines with
    type letters RFC 4566 does not define, as (letter, value).
    """

    kind: str
    port: int
    port_count: int | None
    proto: str
    formats: list[str]
    info: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def __init__(
        self,
        kind: str,
        port: int,
        port_count: int | None,
        proto: str,
        formats: list[str],
        info: str | None = None,
        connection: Connection | None = None,
        bandwidths: list[str] | None = None,
        key: str | None = None,
        attributes: list[tuple[str, str | None]] | None = None,
        other_lines: list[tuple[str, str]] | None = None,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.kind = kind
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.formats = formats
        self.info = info
        self.connection = connection
        self.bandwidths = [] if bandwidths is None else bandwidths
        self.key = key
        self.attributes = [] if attributes is None else attributes
        self.other_lines = [] if other_lines is None else other_lines

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    def copy(self) -> MediaDescription:
        """A deep copy (see :meth:`SessionDescription.copy`)."""
        return MediaDescription(
            self.kind,
            self.port,
            self.port_count,
            self.proto,
            list(self.formats),
            self.info,
            self.connection.copy() if self.connection is not None else None,
            list(self.bandwidths),
            self.key,
            list(self.attributes),
            list(self.other_lines),
        )

    @classmethod
    def parse(cls, value: str) -> MediaDescription:
        """The media section opened by ``m=<media> <port>[/<count>] <proto> <fmt> ...``."""
        parts = _fields(value)
        if len(parts) < 3:
            raise SdpParseError(f"m= needs media, port and proto (RFC 4566 5.14): {_quote(value)}")
        kind, port_text, proto, *formats = parts
        port_part, slash, count_part = port_text.partition("/")
        port = _parse_port(port_part, "m= port")
        port_count: int | None = None
        if slash:
            port_count = _parse_uint(count_part, "m= number of ports")
            if port_count == 0:
                raise SdpParseError("m= number of ports must be at least 1 (RFC 4566 5.14)")
        return cls(kind, port, port_count, proto, formats)

    # -- attributes

    def get_attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>``; "" for a flag; None when absent."""
        values = self.get_attributes(name)
        return values[0] if values else None

    def get_attributes(self, name: str) -> list[str]:
        """Values of every ``a=<name>``, in order ("" for flags)."""
        return _attributes_named(self.attributes, name)

    def has_attribute(self, name: str) -> bool:
        """True when at least one ``a=<name>`` is present (case-insensitive)."""
        wanted = name.lower()
        return any(key.lower() == wanted for key, _ in self.attributes)

    def remove_attributes(self, *names: str) -> None:
        """Drop every attribute whose name is one of ``names`` (case-insensitive)."""
        unwanted = {name.lower() for name in names}
        self.attributes = [item for item in self.attributes if item[0].lower() not in unwanted]

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=<name>`` or ``a=<name>:<value>``."""
        _check_attribute_name(name)
        self.attributes.append((name, value))

    def _replace_attributes(self, names: set[str], replacement: tuple[str, str | None]) -> None:
        """Put ``replacement`` where the first of ``names`` was (else at the end), drop the rest."""
        kept: list[tuple[str, str | None]] = []
        placed = False
        for item in self.attributes:
            if item[0].lower() in names:
                if not placed:
                    kept.append(replacement)
                    placed = True
                continue
            kept.append(item)
        if not placed:
            kept.append(replacement)
        self.attributes = kept

    # -- direction (RFC 4566 6, RFC 3264 5.1)

    @property
    def direction(self) -> str:
        """sendrecv, sendonly, recvonly or inactive; sendrecv when none is given."""
        return _direction_in(self.attributes) or "sendrecv"

    def set_direction(self, value: str) -> None:
        """Replace the direction attribute (or add one) with ``value``."""
        if value not in DIRECTIONS:
            raise ValueError(f"not an SDP direction: {value!r}")
        self._replace_attributes(set(DIRECTIONS), (value, None))

    # -- RTCP (RFC 3605, RFC 5761)

    @property
    def rtcp_mux(self) -> bool:
        """True when ``a=rtcp-mux`` asks for RTP and RTCP on one port (RFC 5761 5.1.1)."""
        return self.has_attribute("rtcp-mux")

    @property
    def rtcp(self) -> tuple[int, str | None] | None:
        """``a=rtcp`` as (port, connection address or None) (RFC 3605 2.1); None if absent."""
        value = self.get_attribute("rtcp")
        return None if value is None else _parse_rtcp(value)

    def set_rtcp(self, port: int | None, address: str | None = None) -> None:
        """Set ``a=rtcp:<port>[ IN <addrtype> <address>]``; ``port=None`` removes it."""
        if port is None:
            self.remove_attributes("rtcp")
            return
        if not 0 <= port <= 65535:
            raise ValueError(f"RTCP port out of range: {port}")
        value = str(port)
        if address is not None:
            value += f" IN {_addrtype_for(address)} {address}"
        self._replace_attributes({"rtcp"}, ("rtcp", value))

    # -- codecs (RFC 4566 6)

    @property
    def rtpmap(self) -> dict[str, tuple[str, int, int | None]]:
        """Payload type -> (encoding name, clock rate, channels or None); first mapping wins."""
        mapping: dict[str, tuple[str, int, int | None]] = {}
        for value in self.get_attributes("rtpmap"):
            payload_type, entry = _parse_rtpmap(value)
            mapping.setdefault(payload_type, entry)
        return mapping

    @property
    def fmtp(self) -> dict[str, str]:
        """Payload type -> format parameters (``a=fmtp:<format> <params>``)."""
        parameters: dict[str, str] = {}
        for value in self.get_attributes("fmtp"):
            payload_type, _, params = value.strip(" \t").partition(" ")
            if payload_type:
                parameters.setdefault(payload_type, params.strip(" \t"))
        return parameters

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds; None when absent or not a number."""
        value = self.get_attribute("ptime")
        if value is None:
            return None
        try:
            return int(float(value.strip(" \t")))
        except (ValueError, OverflowError):
            return None

    @property
    def is_rejected(self) -> bool:
        """Port 0 rejects or disables the stream (RFC 3264 6, 8.2)."""
        return self.port == 0

    # -- serialization

    def lines(self) -> list[str]:
        """This section's lines in RFC 4566 5 order: m i c b k (others) a."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [_line("m", " ".join([self.kind, port, self.proto, *self.formats]))]
        if self.info is not None:
            lines.append(_line("i", self.info))
        if self.connection is not None:
            lines.append(_line("c", str(self.connection)))
        lines.extend(_line("b", bandwidth) for bandwidth in self.bandwidths)
        if self.key is not None:
            lines.append(_line("k", self.key))
        lines.extend(_line(letter, value) for letter, value in self.other_lines)
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        return lines

    def __bytes__(self) -> bytes:
        return "".join(line + "\r\n" for line in self.lines()).encode(_ENCODING, _ERRORS)


# --------------------------------------------------------------- session


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass(kw_only=True)
class SessionDescription:
    """A whole session description (RFC 4566 5).

    ``timing`` holds the ``t=`` and ``r=`` lines verbatim, type letter
    included (``"t=0 0"``). ``other_lines`` keeps session-level lines with
    type letters RFC 4566 does not define, as (letter, value).
    """

    version: int = 0
    origin: Origin
    session_name: str
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    timing: list[str] = field(default_factory=lambda: [_DEFAULT_TIMING])
    time_zones: str | None = None
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def __init__(
        self,
        *,
        version: int = 0,
        origin: Origin,
        session_name: str,
        info: str | None = None,
        uri: str | None = None,
        emails: list[str] | None = None,
        phones: list[str] | None = None,
        connection: Connection | None = None,
        bandwidths: list[str] | None = None,
        timing: list[str] | None = None,
        time_zones: str | None = None,
        key: str | None = None,
        attributes: list[tuple[str, str | None]] | None = None,
        other_lines: list[tuple[str, str]] | None = None,
        media: list[MediaDescription] | None = None,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.version = version
        self.origin = origin
        self.session_name = session_name
        self.info = info
        self.uri = uri
        self.emails = [] if emails is None else emails
        self.phones = [] if phones is None else phones
        self.connection = connection
        self.bandwidths = [] if bandwidths is None else bandwidths
        self.timing = [_DEFAULT_TIMING] if timing is None else timing
        self.time_zones = time_zones
        self.key = key
        self.attributes = [] if attributes is None else attributes
        self.other_lines = [] if other_lines is None else other_lines
        self.media = [] if media is None else media

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    @classmethod
    def parse(cls, data: object) -> SessionDescription:
        """Parse a description; SdpParseError (with the line number) when malformed.

        ``data`` is bytes-like or text; anything else is an SdpParseError too (a
        caller hands over a message body as it came).

        Lines may end in CRLF or bare LF and carry trailing blanks; blank lines
        are skipped. A missing ``t=`` line is taken as ``t=0 0``.
        """
        return _Parser(data).parse()

    # -- offer/answer views

    def get_attribute(self, name: str) -> str | None:
        """The value of the first session-level ``a=<name>``; None when absent."""
        values = _attributes_named(self.attributes, name)
        return values[0] if values else None

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, if any (RFC 4566 6)."""
        return _direction_in(self.attributes)

    def direction_for(self, media_index: int) -> str:
        """Media-level direction, else session-level, else sendrecv (RFC 4566 6)."""
        media = self.media[media_index]
        return _direction_in(media.attributes) or self.direction or "sendrecv"

    def connection_for(self, media_index: int) -> Connection | None:
        """Media-level ``c=`` wins over the session-level one (RFC 4566 5.7)."""
        media = self.media[media_index]
        return media.connection if media.connection is not None else self.connection

    def is_hold(self, media_index: int) -> bool:
        """True when the stream is put on hold.

        Hold is a sendonly or inactive direction (RFC 3264 8.4) or the
        connection address 0.0.0.0 (RFC 2543, RFC 3264 8.4), or its IPv6
        counterpart ::. The trickle ICE placeholder (that address with port 9
        and ICE credentials, RFC 8840) is not hold.
        """
        if self.direction_for(media_index) in ("sendonly", "inactive"):
            return True
        return _hold_connection(self, media_index) is not None

    # -- serialization

    def lines(self) -> list[str]:
        """All lines in RFC 4566 5 order: v o s i u e p c b t r z k (others) a, then media."""
        lines = [
            _line("v", str(self.version)),
            _line("o", str(self.origin)),
            _line("s", self.session_name or " "),
        ]
        if self.info is not None:
            lines.append(_line("i", self.info))
        if self.uri is not None:
            lines.append(_line("u", self.uri))
        lines.extend(_line("e", email) for email in self.emails)
        lines.extend(_line("p", phone) for phone in self.phones)
        if self.connection is not None:
            lines.append(_line("c", str(self.connection)))
        lines.extend(_line("b", bandwidth) for bandwidth in self.bandwidths)
        for timing in self.timing or [_DEFAULT_TIMING]:
            letter, _, value = timing.partition("=")
            lines.append(_line(letter, value))
        if self.time_zones is not None:
            lines.append(_line("z", self.time_zones))
        if self.key is not None:
            lines.append(_line("k", self.key))
        lines.extend(_line(letter, value) for letter, value in self.other_lines)
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        for media in self.media:
            lines.extend(media.lines())
        return lines

    def __bytes__(self) -> bytes:
        return "".join(line + "\r\n" for line in self.lines()).encode(_ENCODING, _ERRORS)

    def copy(self) -> SessionDescription:
        """A deep copy: changing it leaves this description untouched.

        Every field is a string, a number, a tuple of them, a list of those or
        an Origin/Connection, so copying the containers is a full copy, about
        ten times cheaper than ``copy.deepcopy`` on the call path.
        """
        return SessionDescription(
            version=self.version,
            origin=self.origin.copy(),
            session_name=self.session_name,
            info=self.info,
            uri=self.uri,
            emails=list(self.emails),
            phones=list(self.phones),
            connection=self.connection.copy() if self.connection is not None else None,
            bandwidths=list(self.bandwidths),
            timing=list(self.timing),
            time_zones=self.time_zones,
            key=self.key,
            attributes=list(self.attributes),
            other_lines=list(self.other_lines),
            media=[media.copy() for media in self.media],
        )


def _hold_connection(sdp: SessionDescription, media_index: int) -> Connection | None:
    """The stream's connection when it is an unspecified (hold) address, else None.

    The trickle ICE placeholder (port 9 with ICE credentials, RFC 8840) is not hold.
    """
    connection = sdp.connection_for(media_index)
    if connection is None or connection.address not in HOLD_ADDRESSES:
        return None
    media = sdp.media[media_index]
    has_ice = media.has_attribute("ice-ufrag") or sdp.get_attribute("ice-ufrag") is not None
    if has_ice and media.port == TRICKLE_PLACEHOLDER_PORT:
        return None
    return connection


# ----------------------------------------------------------------- parser


class _Parser:
    """Line-by-line parser enforcing RFC 4566 5's order of known lines."""

    def __init__(self, data: object) -> None:
        self._data = data
        self._seen: set[str] = set()
        self._session_seen: set[str] = set()
        self._rank = -1
        self._previous = ""
        self._origin: Origin | None = None
        self._session_name: str | None = None
        self._session = SessionDescription(
            origin=Origin("-", "0", 0, "IN", "IP4", "0.0.0.0"), session_name="", timing=[]
        )
        self._media: MediaDescription | None = None
        self._number = 0
        self._media_lines: list[int] = []

    def parse(self) -> SessionDescription:
        data = self._data
        if isinstance(data, bytes | bytearray | memoryview):
            text = bytes(data).decode(_ENCODING, _ERRORS)
        elif isinstance(data, str):
            text = data
        else:
            raise SdpParseError(f"a description is bytes or text, not {type(data).__name__}")
        saw_line = False
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.rstrip(_TRAILING_SPACE)
            if not line:
                continue
            try:
                if not saw_line and not line.startswith("v="):
                    raise SdpParseError("a description starts with v= (RFC 4566 5.1)")
                saw_line = True
                self._number = number
                self._parse_line(line)
            except SdpParseError as exc:
                if exc.line is not None:
                    raise
                raise SdpParseError(exc.reason, number) from exc
        if not saw_line:
            raise SdpParseError("empty session description")
        self._check_required(_AFTER_SESSION_LINES)
        self._check_media_connections()
        session = self._session
        if self._origin is None or self._session_name is None:  # pragma: no cover
            raise SdpParseError("missing o= or s= line (RFC 4566 5)")
        session.origin = self._origin
        session.session_name = self._session_name
        if not session.timing:
            session.timing.append(_DEFAULT_TIMING)
        return session

    def _parse_line(self, line: str) -> None:
        if len(line) < 2 or line[1] != "=" or line[0] not in _TYPE_LETTERS:
            raise SdpParseError(f"not a <type>=<value> line (RFC 4566 5): {_quote(line)}")
        if "\r" in line or "\x00" in line:
            raise SdpParseError(f"line contains a bare CR or NUL: {_quote(line)}")
        letter, value = line[0], line[2:]
        if letter == "m":
            self._open_media(value)
        elif letter not in _KNOWN_TYPES:
            target = self._media if self._media is not None else self._session
            target.other_lines.append((letter, value))
        elif self._media is None:
            self._session_line(letter, value)
        else:
            self._media_line(self._media, letter, value)

    # -- session level

    def _check_order(self, letter: str, rank: int, repeatable: frozenset[str], where: str) -> None:
        if rank < self._rank:
            raise SdpParseError(f"{letter}= is out of order {where} (RFC 4566 5)")
        if letter in self._seen and letter not in repeatable:
            raise SdpParseError(f"more than one {letter}= line {where} (RFC 4566 5)")

    def _check_required(self, rank: int) -> None:
        """Every required line ranked before ``rank`` has been seen (RFC 4566 5)."""
        for letter, section in _SESSION_REQUIRED:
            if _SESSION_RANK[letter] < rank and letter not in self._session_seen:
                raise SdpParseError(f"missing {letter}= line ({section})")

    def _session_line(self, letter: str, value: str) -> None:
        rank = _SESSION_RANK[letter]
        self._check_order(letter, rank, _SESSION_REPEATABLE, "at session level")
        self._check_required(rank)
        if letter == "r" and self._previous not in ("t", "r"):
            raise SdpParseError("r= must follow a t= line (RFC 4566 5.10)")
        session = self._session
        if letter == "v":
            if value != "0":
                raise SdpParseError(f"unsupported SDP version {_quote(value)} (RFC 4566 5.1)")
            session.version = 0
        elif letter == "o":
            self._origin = Origin.parse(value)
        elif letter == "s":
            self._session_name = value
        elif letter == "i":
            session.info = value
        elif letter == "u":
            session.uri = value
        elif letter == "e":
            session.emails.append(value)
        elif letter == "p":
            session.phones.append(value)
        elif letter == "c":
            session.connection = Connection.parse(value)
        elif letter == "b":
            session.bandwidths.append(_checked_bandwidth(value))
        elif letter == "t":
            session.timing.append(_line("t", _checked_timing(value)))
        elif letter == "r":
            session.timing.append(_line("r", _checked_repeat(value)))
        elif letter == "z":
            session.time_zones = value
        elif letter == "k":
            session.key = value
        else:  # "a"
            self._add_attribute(session.attributes, value)
        self._seen.add(letter)
        self._session_seen.add(letter)
        self._rank = rank
        self._previous = letter

    # -- media level

    def _open_media(self, value: str) -> None:
        self._check_required(_AFTER_SESSION_LINES)
        media = MediaDescription.parse(value)
        self._session.media.append(media)
        self._media_lines.append(self._number)
        self._media = media
        self._seen = {"m"}
        self._rank = _MEDIA_RANK["m"]
        self._previous = "m"

    def _media_line(self, media: MediaDescription, letter: str, value: str) -> None:
        rank = _MEDIA_RANK.get(letter)
        if rank is None:
            raise SdpParseError(f"{letter}= is not allowed in a media section (RFC 4566 5)")
        self._check_order(letter, rank, _MEDIA_REPEATABLE, "in a media section")
        if letter == "i":
            media.info = value
        elif letter == "c":
            media.connection = Connection.parse(value)
        elif letter == "b":
            media.bandwidths.append(_checked_bandwidth(value))
        elif letter == "k":
            media.key = value
        else:  # "a"
            self._add_attribute(media.attributes, value)
        self._seen.add(letter)
        self._rank = rank
        self._previous = letter

    def _add_attribute(self, attributes: list[tuple[str, str | None]], value: str) -> None:
        name, attribute_value = _parse_attribute(value)
        _check_known_attribute(name, attribute_value)
        attributes.append((name, attribute_value))

    def _check_media_connections(self) -> None:
        """Every stream in use needs a c= line, its own or the session's (RFC 4566 5.7)."""
        if self._session.connection is not None:
            return
        for media, number in zip(self._session.media, self._media_lines, strict=True):
            if media.connection is None and not media.is_rejected:
                raise SdpParseError(
                    f"{media.kind} stream has no c= line and the session has none (RFC 4566 5.7)",
                    number,
                )


def _checked_bandwidth(value: str) -> str:
    """``b=<bwtype>:<bandwidth>`` (RFC 4566 5.8), kept verbatim."""
    bwtype, colon, bandwidth = value.partition(":")
    if not colon or not bwtype or not bandwidth:
        raise SdpParseError(f"malformed b= (RFC 4566 5.8): {_quote(value)}")
    return value


def _checked_timing(value: str) -> str:
    """``t=<start-time> <stop-time>`` (RFC 4566 5.9), kept verbatim."""
    parts = _fields(value)
    if len(parts) != 2:
        raise SdpParseError(f"t= needs a start and a stop time (RFC 4566 5.9): {_quote(value)}")
    for part in parts:
        _parse_uint(part, "t= time")
    return value


def _checked_repeat(value: str) -> str:
    """``r=<repeat interval> <active duration> <offsets>`` (RFC 4566 5.10), kept verbatim."""
    if len(_fields(value)) < 3:
        raise SdpParseError(
            f"r= needs interval, duration and offsets (RFC 4566 5.10): {_quote(value)}"
        )
    return value


# ------------------------------------------------------------ relay views


def rewrite_for_relay(
    sdp: SessionDescription,
    *,
    address: str,
    ports: list[tuple[int, int | None]],
    origin: Origin,
) -> SessionDescription:
    """The description the gateway sends so that media flows through its relay.

    ``ports[i]`` is the (RTP, RTCP or None) pair the relay listens on for
    media section ``i``; extra entries are ignored. ``sdp`` is not modified.

    - ``o=`` becomes a copy of ``origin``: each leg has its own origin, whose
      version the caller bumps when the description changes (RFC 3264 8).
    - The session-level ``c=`` becomes ``address``; media-level ``c=`` lines go,
      except that a stream held with 0.0.0.0 (or ::) keeps it media-level
      (RFC 3264 8.4). Direction attributes are kept, so hold stays hold.
    - A rejected stream (port 0, RFC 3264 6) stays at port 0, as does a stream
      whose relay port is 0; ``a=rtcp`` goes from both.
    - Otherwise the port becomes ``ports[i][0]``; ``a=rtcp`` becomes
      ``ports[i][1]`` (RFC 3605) unless that is None or the stream multiplexes
      RTCP (RFC 5761), in which case it is removed.
    - ICE attributes go (RFC 8839 5): the gateway anchors the media itself.
    - Everything else (codecs, fmtp, ptime, crypto, ...) is kept.
    """
    if len(ports) < len(sdp.media):
        raise ValueError(f"{len(sdp.media)} media sections but only {len(ports)} relay ports")
    rewritten = sdp.copy()
    rewritten.origin = origin.copy()
    rewritten.connection = Connection(address, _addrtype_for(address))
    rewritten.attributes = [
        item for item in rewritten.attributes if item[0].lower() not in ICE_ATTRIBUTES
    ]
    for index, media in enumerate(rewritten.media):
        rtp_port, rtcp_port = ports[index]
        hold = _hold_connection(sdp, index)
        media.remove_attributes(*ICE_ATTRIBUTES)
        media.connection = None if hold is None else Connection(hold.address, hold.addrtype)
        if media.is_rejected or rtp_port == 0:
            media.port = 0
            media.port_count = None
            media.set_rtcp(None)
            continue
        if not 0 < rtp_port <= 65535:
            raise ValueError(f"relay RTP port out of range: {rtp_port}")
        media.port = rtp_port
        media.port_count = None
        media.set_rtcp(None if media.rtcp_mux else rtcp_port)
    return rewritten


def media_endpoints(sdp: SessionDescription) -> list[tuple[str, int, int | None, bool]]:
    """Where a party receives each stream: (address, RTP port, RTCP port, rtcp-mux).

    The RTCP port is ``a=rtcp``'s (RFC 3605), else the RTP port + 1 (RFC 3550
    11); it is None when RTCP shares the RTP port (``a=rtcp-mux``, RFC 5761)
    or the stream is rejected (port 0). A stream without any ``c=`` (only
    possible when rejected) reports 0.0.0.0.
    """
    endpoints: list[tuple[str, int, int | None, bool]] = []
    for index, media in enumerate(sdp.media):
        connection = sdp.connection_for(index)
        address = connection.address if connection is not None else HOLD_ADDRESS
        mux = media.rtcp_mux
        rtcp_port: int | None = None
        if not mux and not media.is_rejected:
            rtcp = media.rtcp
            if rtcp is not None:
                rtcp_port = rtcp[0]
            elif media.port < 65535:
                rtcp_port = media.port + 1
        endpoints.append((address, media.port, rtcp_port, mux))
    return endpoints


def new_origin(address: str, username: str = "callgate") -> Origin:
    """A fresh ``o=`` for one leg: random session id, version 1 (RFC 4566 5.2).

    The id stays below 2**31 so that peers storing it in 32 bits cope.
    """
    session_id = int(random_hex(4), 16) % (2**31 - 1) + 1
    return Origin(username, str(session_id), 1, "IN", _addrtype_for(address), address)
