"""A raw SIP test client over UDP or TCP, for hand-crafted and deliberately broken messages.

sipp only sends what a scenario's template yields; edge tests need bytes the
gateway must refuse (a broken CSeq, a wrong SIP-Version, garbage). A
:class:`RequestSpec` renders a well-formed request (RFC 3261 7.1, 8.1.1) that a
test may then damage with :func:`mutate`; a :class:`SipClient` sends bytes from
a chosen loopback address (the address decides which tenant peer, if any, the
gateway sees) and reads what comes back. Replies are read with a small parser
of their own, independent of the gateway's, so the gateway's parser is never
its own judge.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Address = tuple[str, int]
Transport = Literal["udp", "tcp"]

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7: every branch starts with it
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.I | re.M)
_COMPACT_NAMES = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
}


def new_branch() -> str:
    return MAGIC_COOKIE + uuid.uuid4().hex[:16]


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def host_in_uri(host: str) -> str:
    """An IPv6 literal in brackets, as URIs and Via sent-by need it (RFC 3261 25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def mutate(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with its first ``old`` replaced by ``new``; ``old`` must be there."""
    if old not in data:
        raise ValueError(f"{old!r} is not in the message")
    return data.replace(old, new, 1)


@dataclass(frozen=True)
class SipReply:
    """A SIP response as received: start line, headers in order, body."""

    raw: bytes
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive, compact forms included)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    def first(self, name: str) -> str | None:
        values = self.header(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        return self.first("call-id")

    @property
    def to_tag(self) -> str | None:
        to = self.first("to") or ""
        match = re.search(r";\s*tag=([^;>\s]+)", to.rsplit(">", 1)[-1])
        return match.group(1) if match else None

    def listed(self, name: str) -> set[str]:
        """The comma-separated items of every ``name`` header, upper-cased (Allow, Supported)."""
        return {
            item.strip().upper()
            for value in self.header(name)
            for item in value.split(",")
            if item.strip()
        }


def parse_reply(data: bytes) -> SipReply:
    """Read a response (RFC 3261 7.2); ValueError when ``data`` is not one."""
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # RFC 3261 7.3.1 folding
            name, value = headers.pop()
            headers.append((name, f"{value} {line.strip()}"))
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line!r}")
        key = name.strip().lower()
        headers.append((_COMPACT_NAMES.get(key, key), value.strip()))
    return SipReply(data, int(code), reason.strip(), tuple(headers), body)


@dataclass(frozen=True)
class RequestSpec:
    """A well-formed SIP request (RFC 3261 8.1.1) that renders to bytes.

    ``via_host``/``via_port`` are the sender's own address (the sent-by of the
    Via, with ``rport`` so answers come back to the socket that sent it, RFC
    3581). ``headers`` are added after the mandatory ones, in order.
    """

    method: str
    uri: str
    via_host: str
    via_port: int
    transport: Transport = "udp"
    branch: str = field(default_factory=new_branch)
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    from_uri: str = "sip:+12125550100@example.net"
    from_tag: str = field(default_factory=new_tag)
    to_uri: str = "sip:+18005550199@example.com"
    to_tag: str | None = None
    cseq: int = 1
    max_forwards: int | None = 70
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    content_type: str | None = None
    version: str = SIP_VERSION

    @property
    def via(self) -> str:
        sent_by = f"{host_in_uri(self.via_host)}:{self.via_port}"
        return f"SIP/2.0/{self.transport.upper()} {sent_by};branch={self.branch};rport"

    def render(self) -> bytes:
        to = f"<{self.to_uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{self.method} {self.uri} {self.version}",
            f"Via: {self.via}",
            f"From: <{self.from_uri}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {self.method}",
        ]
        if self.max_forwards is not None:
            lines.append(f"Max-Forwards: {self.max_forwards}")
        if self.method in ("INVITE", "SUBSCRIBE", "REFER", "UPDATE"):
            lines.append(f"Contact: <sip:caller@{host_in_uri(self.via_host)}:{self.via_port}>")
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body:
            lines.append(f"Content-Type: {self.content_type or 'application/sdp'}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def ack_for(self, reply: SipReply) -> bytes:
        """The ACK for a non-2xx final response to this INVITE (RFC 3261 17.1.1.3):
        same Request-URI, Via branch, From, Call-ID and CSeq number; To from the response."""
        ack = replace(
            self,
            method="ACK",
            to_tag=reply.to_tag,
            headers=(),
            body=b"",
            content_type=None,
        )
        return ack.render()


def ack_from_reply(reply: SipReply, uri: str) -> bytes:
    """The ACK for a non-2xx final response to an INVITE, built from what the response
    echoes (RFC 3261 17.1.1.3: the request's top Via, From, Call-ID and CSeq number;
    To with the response's tag), for requests the sender no longer has at hand."""
    cseq_number = (reply.first("cseq") or "1").split()[0]
    return (
        f"ACK {uri} SIP/2.0\r\n"
        f"Via: {reply.first('via')}\r\n"
        f"From: {reply.first('from')}\r\n"
        f"To: {reply.first('to')}\r\n"
        f"Call-ID: {reply.call_id}\r\n"
        f"CSeq: {cseq_number} ACK\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def sdp_offer(media_host: str, media_port: int, version: int = 1) -> bytes:
    """A PCMU/telephone-event offer (RFC 4566, RFC 3264 5)."""
    kind = "IP6" if ":" in media_host else "IP4"
    return (
        "v=0\r\n"
        f"o=edge 4242 {version} IN {kind} {media_host}\r\n"
        "s=callgate edge test\r\n"
        f"c=IN {kind} {media_host}\r\n"
        "t=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n"
    ).encode()


class ReplyTimeout(AssertionError):
    """No (matching) reply arrived in time."""


class SipClient:
    """One socket bound on ``local_host``, talking to ``remote`` over UDP or TCP.

    UDP: each datagram is one message. TCP: the client connects at once and
    cuts the stream by Content-Length (RFC 3261 18.3).
    """

    def __init__(
        self,
        local_host: str,
        remote: Address,
        transport: Transport = "udp",
        *,
        local_port: int = 0,
    ) -> None:
        self.remote = remote
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self._socket = socket.socket(family_of(local_host), kind)
        self._buffer = b""
        self._eof = False
        try:
            self._socket.bind((local_host, local_port))
            if transport == "tcp":
                self._socket.settimeout(5)
                self._socket.connect(remote)
            self._socket.setblocking(False)
        except BaseException:
            self._socket.close()
            raise

    @property
    def local_address(self) -> Address:
        host, port = self._socket.getsockname()[:2]
        return host, port

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def spec(self, method: str, uri: str, **fields: Any) -> RequestSpec:
        """A request whose Via names this client's socket (``fields``: RequestSpec's)."""
        host, port = self.local_address
        return RequestSpec(
            method, uri, via_host=host, via_port=port, transport=self.transport, **fields
        )

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self._socket.sendto(data, self.remote)
        else:
            self._socket.sendall(data)

    def receive(self, timeout: float = 2.0) -> bytes | None:
        """The next message, or None when none arrives within ``timeout`` (or TCP closed)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.transport == "tcp":
                message = self._cut_stream()
                if message is not None:
                    return message
                if self._eof:
                    return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self._socket], [], [], remaining)
            if not readable:
                return None
            if self.transport == "udp":
                return self._socket.recv(65535)
            chunk = b""
            with contextlib.suppress(ConnectionResetError):
                chunk = self._socket.recv(65535)
            if not chunk:
                self._eof = True
            self._buffer += chunk

    def _cut_stream(self) -> bytes | None:
        buffer = self._buffer.lstrip(b"\r\n")
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = buffer
            return None
        match = _CONTENT_LENGTH.search(buffer[:end])
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(buffer) < total:
            self._buffer = buffer
            return None
        self._buffer = buffer[total:]
        return buffer[:total]

    def reply_to(self, call_id: str, *, final: bool = True, timeout: float = 5.0) -> SipReply:
        """The next response for ``call_id`` (a final one when ``final``); others are skipped."""
        deadline = time.monotonic() + timeout
        skipped: list[bytes] = []
        while True:
            data = self.receive(max(0.0, deadline - time.monotonic()))
            if data is None:
                raise ReplyTimeout(
                    f"no {'final ' if final else ''}response for Call-ID {call_id} from "
                    f"{self.remote} within {timeout} s; skipped {len(skipped)}: "
                    f"{[m[:60] for m in skipped[-5:]]}"
                )
            try:
                reply = parse_reply(data)
            except ValueError:
                skipped.append(data)
                continue
            if reply.call_id != call_id or (final and reply.status < 200):
                skipped.append(data)
                continue
            return reply

    def request(self, data: bytes, call_id: str, *, timeout: float = 5.0) -> SipReply:
        """Send ``data`` and return the final response for ``call_id``."""
        self.send(data)
        return self.reply_to(call_id, timeout=timeout)

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """TCP: whether the other end closed the connection within ``timeout``."""
        if self.transport != "tcp":
            raise ValueError("only a TCP connection can be closed by the peer")
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self.receive(max(0.0, deadline - time.monotonic()))
        return self._eof


def free_port(host: str) -> int:
    """A port free for UDP and TCP on ``host`` (IPv4 or IPv6) at the time of the call."""
    for _ in range(100):
        with socket.socket(family_of(host), socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        with socket.socket(family_of(host), socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host}")


def ipv6_loopback_available() -> bool:
    """Whether ::1 can be bound here (containers often run without IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
