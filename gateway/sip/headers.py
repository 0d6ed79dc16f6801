"""Structured header values: Via (RFC 3261 20.42, RFC 3581) and CSeq (RFC 3261 20.16)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mypy_extensions import mypyc_attr

from gateway.sip.errors import SipParseError
from gateway.sip.rebuild import by_fields
from gateway.sip.uri import (
    format_host,
    format_params,
    is_token,
    parse_hostport,
    parse_params,
    split_header_list,
)

_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
# The common shape of a Via, parsed in one linear match; the rest takes the full path.
_FAST_VIA_RE = re.compile(
    rf"SIP/2\.0/([{_TOKEN_CHARS}]++) ([A-Za-z0-9\-_.]++)(?::([0-9]{{1,5}}))?"
    rf"((?:;[{_TOKEN_CHARS}]++(?:=[{_TOKEN_CHARS}\[\]:]++)?)*+)"
)

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 8.1.1.7: branch prefix of RFC 3261-compliant transactions."""

MAX_CSEQ = 2**31 - 1
"""RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31."""


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass(slots=True)
class Via:
    """One Via header value: ``SIP/2.0/transport host[:port] *(;param)`` (RFC 3261 20.42).

    ``transport`` is upper-case, ``host`` an IPv6 address without brackets.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse one via-parm (RFC 3261 25.1), tolerating LWS around '/' and ':'."""
        match = _FAST_VIA_RE.fullmatch(value)
        if match is not None:
            transport, host, port_text, param_text = match.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if port > 65535:
                    raise SipParseError("Bad Via header")
            params: dict[str, str | None] = {}
            if param_text:
                for piece in param_text[1:].split(";"):
                    name, eq, param_value = piece.partition("=")
                    params[name.lower()] = param_value if eq else None
            rport = params.get("rport")
            if rport is not None and not (
                len(rport) <= 5 and rport.isdigit() and int(rport) < 65536
            ):
                raise SipParseError("Bad Via header")
            return cls(transport.upper(), host, port, params)
        return cls._parse_full(value)

    @classmethod
    def _parse_full(cls, value: str) -> Via:
        try:
            protocol, version, rest = value.split("/", 2)
        except ValueError:
            raise SipParseError("Bad Via header") from None
        # sent-protocol = protocol-name SLASH protocol-version SLASH transport (RFC 3261
        # 25.1): any tokens; str() always writes SIP/2.0, the only version spoken here.
        if not is_token(protocol.strip()) or not is_token(version.strip()):
            raise SipParseError("Bad Via header")
        parts = rest.split(None, 1)
        if len(parts) != 2 or not is_token(parts[0]):
            raise SipParseError("Bad Via header")
        transport = parts[0]
        sent_by, has_params, param_text = parts[1].partition(";")
        sent_by = sent_by.strip()
        if " " in sent_by or "\t" in sent_by:
            # COLON = SWS ":" SWS: the port separator may carry whitespace.
            colon = sent_by.rfind(":")
            if colon > 0:
                sent_by = sent_by[:colon].rstrip() + ":" + sent_by[colon + 1 :].lstrip()
        try:
            host, port = parse_hostport(sent_by)
            params = parse_params(param_text) if has_params else {}
        except SipParseError:
            raise SipParseError("Bad Via header") from None
        rport = params.get("rport")
        if rport is not None and not (
            rport.isascii() and rport.isdigit() and len(rport) <= 5 and int(rport) < 65536
        ):
            raise SipParseError("Bad Via header")
        return cls(transport.upper(), host, port, params)

    def __str__(self) -> str:
        text = f"SIP/2.0/{self.transport} {format_host(self.host)}"
        if self.port is not None:
            text += f":{self.port}"
        if self.params:
            text += format_params(self.params)
        return text

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 8.1.1.7)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 18.2.1)."""
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """Whether ``rport`` is present, with or without a value (RFC 3581 3)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The ``rport`` value, None when absent or present without a value (RFC 3581 4)."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter (RFC 3261 18.2.2)."""
        return self.params.get("maddr")


def parse_via_list(value: str) -> list[Via]:
    """Every Via of one (possibly comma-joined) Via header value (RFC 3261 7.3.1)."""
    elements = split_header_list(value)
    if not elements:
        raise SipParseError("Bad Via header")
    return [Via.parse(element) for element in elements]


@mypyc_attr(acyclic=True)  # see gateway.compiled
@dataclass(slots=True)
class CSeq:
    """``CSeq: seq method`` (RFC 3261 20.16); ``seq`` is below 2**31 (8.1.1.5)."""

    seq: int
    method: str

    def __init__(self, seq: int, method: str) -> None:
        # written out: mypyc compiles it, where the one @dataclass writes runs as Python
        if not 0 <= seq <= MAX_CSEQ:
            raise ValueError(f"CSeq number {seq} outside 0..2**31-1")
        self.seq = seq
        self.method = method

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)  # copy and pickle (gateway.sip.rebuild)

    @classmethod
    def parse(cls, value: str) -> CSeq:
        parts = value.split()
        if len(parts) != 2:
            raise SipParseError("Bad CSeq header")
        number, method = parts
        if not number.isascii() or not number.isdigit() or not is_token(method):
            raise SipParseError("Bad CSeq header")
        seq = int(number) if len(number.lstrip("0")) <= 10 else MAX_CSEQ + 1
        if seq > MAX_CSEQ:
            raise SipParseError("Bad CSeq header")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
