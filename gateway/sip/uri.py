"""SIP/SIPS URIs (RFC 3261 19.1), tel URIs (RFC 3966) and name-addr values (RFC 3261 20.10).

Escaped characters (RFC 3261 19.1.2, 25.1 "escaped") are decoded when a URI
is parsed, so ``user``, ``password``, parameter names and values and header
values hold the characters they stand for; ``str()`` escapes again whatever
the grammar does not allow literally. Parameter names are lowercased (their
comparison is case-insensitive, RFC 3261 19.1.4).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from mypy_extensions import mypyc_attr

from gateway.sip.errors import SipParseError
from gateway.sip.rebuild import by_fields

# RFC 3261 25.1 character classes, as regex class bodies.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"

# Literal characters each URI part allows; '%' starts an escape (checked apart).
_USER_RE = re.compile(rf"[{_UNRESERVED}&=+$,;?/%]+")
_PASSWORD_RE = re.compile(rf"[{_UNRESERVED}&=+$,%]*")
_PARAM_RE = re.compile(rf"[{_UNRESERVED}\[\]/:&+$%]+")
_HNAME_RE = re.compile(rf"[{_UNRESERVED}\[\]/?:+$%]+")
_HVALUE_RE = re.compile(rf"[{_UNRESERVED}\[\]/?:+$%]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9\-_.]+")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 3966 3: global or local number digits, with visual separators.
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# The same sets without '%', for the no-escaping-needed fast path of str().
_USER_PLAIN_RE = re.compile(rf"[{_UNRESERVED}&=+$,;?/]+")
_PASSWORD_PLAIN_RE = re.compile(rf"[{_UNRESERVED}&=+$,]*")
_PARAM_PLAIN_RE = re.compile(rf"[{_UNRESERVED}\[\]/:&+$]+")
_HEADER_PLAIN_RE = re.compile(rf"[{_UNRESERVED}\[\]/?:+$]*")
# Characters quote() must leave alone beyond letters, digits and "_.-~".
_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"
_PARAM_SAFE = "!*'()[]/:&+$"
_HEADER_SAFE = "!*'()[]/?:+$"

# Header-field syntax shared with headers.py (RFC 3261 25.1).
TOKEN_RE = re.compile(rf"[{_TOKEN_CHARS}]+")


def is_token(text: str) -> bool:
    """Whether ``text`` is a token (RFC 3261 25.1). Letters and digits alone (methods,
    tags, most names) are one without the regular expression, which costs several
    times more and runs for many words of every message."""
    if text.isascii() and text.isalnum():
        return True
    return TOKEN_RE.fullmatch(text) is not None


# gen-value = token / host / quoted-string; host adds "[", "]" and ":" (IPv6).
_GEN_VALUE_RE = re.compile(rf"[{_TOKEN_CHARS}\[\]:]+")
_QUOTED_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL)
# Fast paths for the common shapes; anything they refuse goes through the full parser.
# Possessive quantifiers keep every one of them linear in the input length.
_FAST_SIP_URI = (
    r"([Ss][Ii][Pp][Ss]?):"
    rf"(?:([{_UNRESERVED}&=+$,;?/]++)@)?"
    r"([A-Za-z0-9\-_.]++)"
    r"(?::([0-9]{1,5}))?"
    rf"((?:;[{_UNRESERVED}\[\]/:&+$=]++)*+)"
)
_FAST_SIP_URI_RE = re.compile(_FAST_SIP_URI)
_FAST_NAME_ADDR_RE = re.compile(
    r"[ \t]*+"
    r'(?:"([^"\\\x00-\x1f\x7f]*+)"'
    rf"|([{_TOKEN_CHARS}]++(?:[ \t]++[{_TOKEN_CHARS}]++)*+))?"
    r"[ \t]*+<" + _FAST_SIP_URI + ">"
    rf"((?:[ \t]*+;[ \t]*+[{_TOKEN_CHARS}]++(?:[ \t]*+=[ \t]*+[{_TOKEN_CHARS}\[\]:]++)?)*+)"
    r"[ \t]*+"
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_LIST_SPECIAL_RE = re.compile(r'[",<]')
_PLAIN_DISPLAY_RE = re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]*')


def _decode(text: str) -> str:
    """Undo %HH escapes (RFC 3261 19.1.2); a '%' not followed by two hex digits is an error."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise SipParseError("Bad URI escape")
    return unquote(text, errors="surrogateescape")


def _encode(text: str, plain: re.Pattern[str], safe: str) -> str:
    """Escape what the grammar does not allow literally in one URI part."""
    if plain.fullmatch(text):
        return text
    return quote(text, safe=safe, errors="surrogateescape")


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise SipParseError("Bad URI port")
    port = int(text)
    if port > 65535:
        raise SipParseError("Bad URI port")
    return port


def parse_hostport(text: str) -> tuple[str, int | None]:
    """``host [":" port]`` (RFC 3261 25.1 hostport); IPv6 comes back without brackets."""
    if not text:
        raise SipParseError("Missing host")
    if text[0] == "[":
        end = text.find("]")
        host = text[1:end] if end > 0 else ""
        if not host or ":" not in host or not _IPV6_RE.fullmatch(host):
            raise SipParseError("Bad IPv6 reference")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError("Bad IPv6 reference") from None
        tail = text[end + 1 :]
        if not tail:
            return host, None
        if tail[0] != ":":
            raise SipParseError("Bad host")
        return host, _parse_port(tail[1:])
    colon = text.find(":")
    if colon >= 0:
        host, port = text[:colon], _parse_port(text[colon + 1 :])
    else:
        host, port = text, None
    if not _HOSTNAME_RE.fullmatch(host):
        raise SipParseError("Bad host")
    return host, port


def format_host(host: str) -> str:
    """A host as written in a URI or Via: IPv6 addresses in brackets (RFC 3261 25.1)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _parse_uri_params(text: str) -> dict[str, str | None]:
    """``uri-parameters`` after the first ';' (RFC 3261 19.1.1)."""
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not _PARAM_RE.fullmatch(name):
            raise SipParseError("Bad URI parameter")
        name = _decode(name).lower()
        if eq:
            if not _PARAM_RE.fullmatch(value):
                raise SipParseError("Bad URI parameter")
            params[name] = _decode(value)
        else:
            params[name] = None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    """``headers`` after '?' (RFC 3261 19.1.1): hname "=" hvalue joined by '&'."""
    headers: dict[str, str] = {}
    if not text:
        return headers
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if not eq or not _HNAME_RE.fullmatch(name) or not _HVALUE_RE.fullmatch(value):
            raise SipParseError("Bad URI header")
        headers[_decode(name)] = _decode(value)
    return headers


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass(slots=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI.

    For ``tel:`` URIs (RFC 3966) the telephone number is held in ``host``
    and ``user``, ``password`` and ``port`` are None.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __init__(
        self,
        scheme: str,
        user: str | None,
        password: str | None,
        host: str,
        port: int | None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        # (gateway.compiled); URIs are made dozens of times per call
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI (RFC 3261 19.1.1 / 25.1 SIP-URI, SIPS-URI; RFC 3966 telephone-uri).

        Other schemes raise SipParseError with status 416 (RFC 3261 8.2.2.1).
        """
        match = _FAST_SIP_URI_RE.fullmatch(text)
        if match is not None:
            return _fast_sip_uri(*match.groups())
        colon = text.find(":")
        if colon <= 0:
            raise SipParseError("Bad URI")
        scheme = text[:colon].lower()
        if scheme == "sip" or scheme == "sips":
            return _parse_sip(scheme, text[colon + 1 :])
        if scheme == "tel":
            return _parse_tel(text[colon + 1 :])
        if _SCHEME_RE.fullmatch(scheme):
            raise SipParseError("Unsupported URI Scheme", status=416)
        raise SipParseError("Bad URI")

    def __str__(self) -> str:
        if self.scheme == "tel":
            text = "tel:" + self.host
        else:
            text = self.scheme + ":"
            if self.user is not None:
                text += _encode(self.user, _USER_PLAIN_RE, _USER_SAFE)
                if self.password is not None:
                    text += ":" + _encode(self.password, _PASSWORD_PLAIN_RE, _PASSWORD_SAFE)
                text += "@"
            text += format_host(self.host)
            if self.port is not None:
                text += f":{self.port}"
        for name, value in self.params.items():
            text += ";" + _encode(name, _PARAM_PLAIN_RE, _PARAM_SAFE)
            if value is not None:
                text += "=" + _encode(value, _PARAM_PLAIN_RE, _PARAM_SAFE)
        if self.headers:
            text += "?" + "&".join(
                _encode(name, _HEADER_PLAIN_RE, _HEADER_SAFE)
                + "="
                + _encode(value, _HEADER_PLAIN_RE, _HEADER_SAFE)
                for name, value in self.headers.items()
            )
        return text

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lowercased (RFC 3261 19.1.1)."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def copy(self) -> SipUri:
        """An independent copy (parameter and header dicts are not shared)."""
        return SipUri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            dict(self.params),
            dict(self.headers),
        )

    def with_params(self, updates: dict[str, str | None]) -> SipUri:
        """A copy with ``updates`` merged into the parameters (names lowercased)."""
        params = dict(self.params)
        for name, value in updates.items():
            params[name.lower()] = value
        return SipUri(
            self.scheme, self.user, self.password, self.host, self.port, params, dict(self.headers)
        )

    def without_params(self, *names: str) -> SipUri:
        """A copy without the named parameters."""
        drop = {name.lower() for name in names}
        params = {k: v for k, v in self.params.items() if k not in drop}
        return SipUri(
            self.scheme, self.user, self.password, self.host, self.port, params, dict(self.headers)
        )


def _fast_sip_uri(
    scheme: str, user: str | None, host: str, port_text: str | None, param_text: str
) -> SipUri:
    """A SipUri from the groups of the fast-path pattern (no escapes, no IPv6, no headers)."""
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipParseError("Bad URI port")
    params: dict[str, str | None] = {}
    if param_text:
        for piece in param_text[1:].split(";"):
            name, eq, value = piece.partition("=")
            if not name or (eq and (not value or "=" in value)):
                raise SipParseError("Bad URI parameter")
            params[name.lower()] = value if eq else None
    return SipUri(scheme.lower(), user, None, host, port, params, {})


def _parse_sip(scheme: str, rest: str) -> SipUri:
    """The part of a SIP-URI after ``sip:`` (RFC 3261 25.1).

    '@' cannot appear unescaped anywhere but after the userinfo, so the first
    '@' ends it even when the user part holds ';', '?' or ',' (RFC 4475 3.1.1.2).
    """
    at = rest.find("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        user, has_password, password_text = rest[:at].partition(":")
        if not _USER_RE.fullmatch(user):
            raise SipParseError("Bad URI user")
        user = _decode(user)
        if has_password:
            if not _PASSWORD_RE.fullmatch(password_text):
                raise SipParseError("Bad URI password")
            password = _decode(password_text)
        rest = rest[at + 1 :]
    headers: dict[str, str] = {}
    question = rest.find("?")
    if question >= 0:
        headers = _parse_uri_headers(rest[question + 1 :])
        rest = rest[:question]
    params: dict[str, str | None] = {}
    semicolon = rest.find(";")
    if semicolon >= 0:
        params = _parse_uri_params(rest[semicolon + 1 :])
        rest = rest[:semicolon]
    host, port = parse_hostport(rest)
    return SipUri(scheme, user, password, host, port, params, headers)


def _parse_tel(rest: str) -> SipUri:
    """``telephone-subscriber`` of a tel URI (RFC 3966 3)."""
    number, has_params, param_text = rest.partition(";")
    if not _TEL_NUMBER_RE.fullmatch(number):
        raise SipParseError("Bad tel URI")
    params = _parse_uri_params(param_text) if has_params else {}
    return SipUri("tel", None, None, number, None, params, {})


# -- header-field syntax: quoted strings, parameters, lists ----------------------


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``start`` (RFC 3261 25.1 quoted-pair)."""
    index = start + 1
    quote_at = text.find('"', index)
    while quote_at >= 0:
        backslash = text.find("\\", index, quote_at)
        if backslash < 0:
            return quote_at + 1
        index = backslash + 2
        if index > quote_at:  # that quote was escaped
            quote_at = text.find('"', index)
    raise SipParseError("Unterminated quoted string")


def _unquote_display(text: str, start: int) -> tuple[str, int]:
    """The content of the quoted-string at ``start`` with quoted-pairs undone, and its end."""
    end = _quoted_end(text, start)
    inner = text[start + 1 : end - 1]
    if "\\" in inner:
        inner = _QUOTED_PAIR_RE.sub(r"\1", inner)
    return inner, end


def _quote_display(name: str) -> str:
    """A display name as a quoted-string, escaping '"', '\\' and controls (RFC 3261 25.1)."""
    if _PLAIN_DISPLAY_RE.fullmatch(name):
        return f'"{name}"'
    escaped = []
    for char in name:
        if char in "\r\n":
            continue
        if char in '"\\' or (char < " " and char != "\t") or char == "\x7f":
            escaped.append("\\")
        escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """``text.split(separator)`` that leaves quoted strings whole."""
    if '"' not in text:
        return text.split(separator)
    pieces = []
    start = index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index = _quoted_end(text, index)
            continue
        if char == separator:
            pieces.append(text[start:index])
            start = index + 1
        index += 1
    pieces.append(text[start:])
    return pieces


def parse_params(text: str) -> dict[str, str | None]:
    """Header parameters after the first ';' (RFC 3261 25.1 generic-param).

    ``name [ "=" gen-value ]`` separated by ';' with optional LWS around both.
    Names are lowercased; values are kept as written (quoted strings keep
    their quotes). Empty parameters (``;;``) are errors (RFC 4475 3.1.2.1).
    """
    params: dict[str, str | None] = {}
    for piece in _split_outside_quotes(text, ";"):
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError("Bad header parameter")
        if eq:
            value = value.strip()
            if value[:1] == '"':
                if not _QUOTED_STRING_RE.fullmatch(value):
                    raise SipParseError("Bad header parameter")
            elif not _GEN_VALUE_RE.fullmatch(value):
                raise SipParseError("Bad header parameter")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """``;name=value`` for each parameter, ``;name`` when it has no value."""
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params.items()
    )


def split_header_list(value: str) -> list[str]:
    """Split a comma-joined header value into its elements (RFC 3261 7.3.1).

    Commas inside quoted strings and inside ``<...>`` do not split. Elements
    are stripped; empty elements are dropped.
    """
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:
        return [piece for piece in (part.strip() for part in value.split(",")) if piece]
    elements = []
    start = 0
    search = _LIST_SPECIAL_RE.search
    match = search(value)
    while match is not None:
        index = match.start()
        char = value[index]
        if char == ",":
            piece = value[start:index].strip()
            if piece:
                elements.append(piece)
            start = index = index + 1
        elif char == '"':
            try:
                index = _quoted_end(value, index)
            except SipParseError:
                break
        else:
            close = value.find(">", index + 1)
            if close < 0:
                break
            index = close + 1
        match = search(value, index)
    piece = value[start:].strip()
    if piece:
        elements.append(piece)
    return elements


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass(slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value (RFC 3261 20.10, 25.1).

    ``params`` are the header parameters (``tag``, ``expires``, ``q``, ...),
    not the URI's own.
    """

    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    def __init__(
        self, display_name: str | None, uri: SipUri, params: dict[str, str | None] | None = None
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.display_name = display_name
        self.uri = uri
        self.params = {} if params is None else params

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3)."""
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with the ``tag`` parameter set."""
        return NameAddr(self.display_name, self.uri.copy(), {**self.params, "tag": tag})

    def copy(self) -> NameAddr:
        """An independent copy."""
        return NameAddr(self.display_name, self.uri.copy(), dict(self.params))

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)``.

        RFC 3261 20.10: without angle brackets, everything after the first
        ';' is a header parameter, not a URI parameter. Spaces just inside
        ``<`` and ``>`` are tolerated and not reproduced (RFC 4475 3.1.2.14).
        """
        match = _FAST_NAME_ADDR_RE.fullmatch(text)
        if match is not None:
            quoted, unquoted, scheme, user, host, port, uri_params, param_text = match.groups()
            params: dict[str, str | None] = {}
            if param_text:
                for piece in param_text.split(";")[1:]:
                    name, eq, value = piece.partition("=")
                    params[name.strip(" \t").lower()] = value.strip(" \t") if eq else None
            if unquoted is not None:
                quoted = " ".join(unquoted.split())
            return cls(quoted, _fast_sip_uri(scheme, user, host, port, uri_params), params)
        return cls._parse_full(text)

    @classmethod
    def _parse_full(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("Empty address")
        display_name: str | None = None
        if text[0] == '"':
            display_name, end = _unquote_display(text, 0)
            open_at = text.find("<", end)
            if open_at < 0 or (not text[end:open_at].isspace() and open_at != end):
                raise SipParseError("Bad display name")
        else:
            open_at = text.find("<")
            semicolon = text.find(";")
            if 0 <= semicolon < open_at:
                open_at = -1  # an addr-spec whose parameters hold a '<'
            elif open_at > 0:
                words = text[:open_at].split()
                for word in words:
                    if not is_token(word):
                        raise SipParseError("Bad display name")
                display_name = " ".join(words) if words else None
        if open_at >= 0:
            close_at = text.find(">", open_at + 1)
            if close_at < 0:
                raise SipParseError("Unbalanced <>")
            uri_text = text[open_at + 1 : close_at].strip()
            rest = text[close_at + 1 :].lstrip()
            if rest and rest[0] != ";":
                raise SipParseError("Bad address")
        else:
            semicolon = text.find(";")
            if semicolon >= 0:
                uri_text, rest = text[:semicolon].rstrip(), text[semicolon:]
            else:
                uri_text, rest = text, ""
            if ">" in uri_text:
                raise SipParseError("Unbalanced <>")
        if not uri_text or uri_text.find(" ") >= 0 or uri_text.find("\t") >= 0:
            raise SipParseError("Bad address")
        uri = SipUri.parse(uri_text)
        params = parse_params(rest[1:]) if rest else {}
        return cls(display_name, uri, params)

    def __str__(self) -> str:
        """Always the ``<...>`` form, so URI parameters and header parameters stay apart."""
        if self.display_name is not None:
            text = _quote_display(self.display_name) + " <" + str(self.uri) + ">"
        else:
            text = "<" + str(self.uri) + ">"
        if self.params:
            text += format_params(self.params)
        return text


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Every name-addr of a comma-joined header value (Contact, Route, Record-Route)."""
    return [NameAddr.parse(element) for element in split_header_list(value)]
