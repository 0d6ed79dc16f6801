"""Multipart message bodies (RFC 2046 5.1, RFC 5621 for SIP).

SIP-T trunks send ``multipart/mixed`` INVITE bodies holding SDP beside an
ISUP part (RFC 3204). The gateway must rewrite the SDP part like any other
SDP, and carry every other part byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sip.errors import SipParseError

_CRLF = b"\r\n"


@dataclass(slots=True)
class BodyPart:
    """One part: its MIME headers (name, value) in order, and its bytes."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower-cased (default text/plain, RFC 2046 5.1)."""
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value.split(";", 1)[0].strip().lower()
        return "text/plain"

    def __bytes__(self) -> bytes:
        head = b"".join(f"{name}: {value}\r\n".encode() for name, value in self.headers)
        return head + _CRLF + self.body


@dataclass(slots=True)
class Multipart:
    """A parsed multipart body; serialising keeps boundary, preamble and epilogue."""

    boundary: str
    parts: list[BodyPart]
    preamble: bytes = b""
    epilogue: bytes = b""

    def __bytes__(self) -> bytes:
        delimiter = b"--" + self.boundary.encode()
        out = [self.preamble, delimiter]
        for part in self.parts:
            out += [_CRLF, bytes(part), _CRLF, delimiter]
        out += [b"--", _CRLF if not self.epilogue else _CRLF + self.epilogue]
        return b"".join(out)


def boundary_of(content_type: str) -> str | None:
    """The ``boundary`` parameter of a multipart Content-Type value (RFC 2046 5.1.1)."""
    media_type, _, params = content_type.partition(";")
    if not media_type.strip().lower().startswith("multipart/"):
        return None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def parse_multipart(content_type: str, body: bytes) -> Multipart:
    """Split ``body``; SipParseError when the boundary or the framing is wrong.

    Binary parts (ISUP) are kept byte for byte: line ends are never rewritten.
    A body framed with bare LF (tolerated as RFC 3261 7 tolerates it in
    headers) is read as such.
    """
    boundary = boundary_of(content_type)
    if boundary is None or not 1 <= len(boundary) <= 70:
        raise SipParseError("multipart body without a usable boundary")
    delimiter = b"--" + boundary.encode()
    first = body.find(delimiter)
    if first < 0:
        raise SipParseError("multipart body without its first boundary")
    after = body[first + len(delimiter) : first + len(delimiter) + 2]
    newline = _CRLF if after == _CRLF or b"\r\n" + delimiter in body else b"\n"
    if first == 0:
        preamble, rest = b"", body[len(delimiter) :]
    else:
        index = body.find(newline + delimiter)
        if index < 0:
            raise SipParseError("multipart body without its first boundary")
        preamble, rest = body[:index], body[index + len(newline) + len(delimiter) :]
    parts: list[BodyPart] = []
    while True:
        if rest.startswith(b"--"):
            epilogue = rest[2:]
            if epilogue.startswith(newline):
                epilogue = epilogue[len(newline) :]
            return Multipart(boundary, parts, preamble, epilogue)
        if not rest.startswith(newline):
            raise SipParseError("multipart boundary not followed by a line end")
        end = rest.find(newline + delimiter, len(newline))
        if end < 0:
            raise SipParseError("multipart body without its closing boundary")
        parts.append(_parse_part(rest[len(newline) : end], newline))
        rest = rest[end + len(newline) + len(delimiter) :]


def _parse_part(raw: bytes, newline: bytes) -> BodyPart:
    if raw.startswith(newline):
        return BodyPart([], raw[len(newline) :])
    head, separator, body = raw.partition(newline + newline)
    if not separator:
        raise SipParseError("multipart part without a blank line after its headers")
    headers: list[tuple[str, str]] = []
    for line in head.split(newline):
        if line[:1] in (b" ", b"\t") and headers:  # folded (RFC 5322 2.2.3)
            last_name, last_value = headers[-1]
            headers[-1] = (last_name, last_value + " " + line.strip().decode("utf-8", "replace"))
            continue
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not raw_name.strip():
            raise SipParseError("bad header line in a multipart part")
        header_name = raw_name.strip().decode("ascii", "replace")
        headers.append((header_name, raw_value.strip().decode("utf-8", "replace")))
    return BodyPart(headers, body)
