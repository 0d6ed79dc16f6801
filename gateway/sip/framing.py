"""Message framing on stream transports (RFC 3261 18.3) with CRLF keep-alives (RFC 5626 4.4.1)."""

from __future__ import annotations

import re

from gateway.sip.errors import SipParseError

DEFAULT_MAX_MESSAGE_BYTES = 65536

_CONTENT_LENGTH_RE = re.compile(
    rb"^(?:content-length|l)[ \t]*:([^\r\n]*)", re.IGNORECASE | re.MULTILINE
)
_FOLD_RE = re.compile(rb"\r?\n[ \t]+")


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole SIP messages.

    RFC 3261 18.3: on a stream, Content-Length is mandatory and says where
    the body ends. Between messages, CRLFs are keep-alives: each CRLFCRLF is
    a ping (counted in ``pings_received``; the owner answers with one CRLF),
    a lone CRLF is a pong. A message without Content-Length, with a bad one,
    or larger than ``max_message_bytes`` raises SipParseError; the stream
    cannot be resynchronised after that, so every later ``feed`` raises too.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.pings_received = 0
        self._buffer = bytearray()
        self._scanned = 0  # how far the buffer is known to hold no end of headers
        self._expected: int | None = None  # size of the message in progress, once known
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received octets; return every message they complete, in order."""
        if self._failed is not None:
            raise SipParseError(f"Stream unusable after framing error: {self._failed}")
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        try:
            while buffer:
                if not self._skip_keepalives():
                    break
                message = self._next_message()
                if message is None:
                    break
                messages.append(message)
        except SipParseError as exc:
            self._failed = exc.reason
            buffer.clear()
            raise
        return messages

    def _skip_keepalives(self) -> bool:
        """Drop leading CRLFs, counting pings; False when nothing but keep-alive octets is left.

        A trailing lone CRLF (or CR) is kept until the next octets show whether
        it was a pong or the first half of a ping.
        """
        buffer = self._buffer
        length = len(buffer)
        index = 0
        crlfs = 0
        last_crlf = 0
        while index < length:
            octet = buffer[index]
            if octet == 13 and index + 1 < length and buffer[index + 1] == 10:
                crlfs += 1
                last_crlf = index
                index += 2
            elif octet == 10:
                index += 1
            else:
                break
        if index == 0:
            return buffer[0] != 13 or length > 1
        complete = index < length and not (buffer[index] == 13 and index + 1 == length)
        if not complete and crlfs % 2 == 1:
            index = last_crlf
            crlfs -= 1
        self.pings_received += crlfs // 2
        del buffer[:index]
        self._scanned = 0
        return complete

    def _next_message(self) -> bytes | None:
        buffer = self._buffer
        if self._expected is not None:
            return self._take(self._expected)
        limit = self.max_message_bytes
        start = max(0, self._scanned - 3)
        blank_crlf = buffer.find(b"\n\r\n", start)
        blank_lf = buffer.find(b"\n\n", start, blank_crlf if blank_crlf >= 0 else len(buffer))
        if blank_lf >= 0:
            head_end, body_start = blank_lf, blank_lf + 2
        elif blank_crlf >= 0:
            head_end, body_start = blank_crlf, blank_crlf + 3
        else:
            if len(buffer) > limit:
                raise SipParseError("Message Too Large")
            self._scanned = len(buffer)
            return None
        head = bytes(buffer[:head_end])
        length = _content_length(head)
        total = body_start + length
        if total > limit:
            raise SipParseError("Message Too Large")
        return self._take(total)

    def _take(self, total: int) -> bytes | None:
        """The first ``total`` octets as a message, or None (remembering ``total``) until then."""
        buffer = self._buffer
        if len(buffer) < total:
            self._expected = total
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        self._scanned = 0
        self._expected = None
        return message


def _content_length(head: bytes) -> int:
    """The one Content-Length of a header block (RFC 3261 18.3: mandatory on streams)."""
    if b"\n " in head or b"\n\t" in head:
        head = _FOLD_RE.sub(b" ", head)
    values = {match.group(1).strip(b" \t") for match in _CONTENT_LENGTH_RE.finditer(head)}
    if not values:
        raise SipParseError("Missing Content-Length header")
    if len(values) > 1:
        raise SipParseError("Multiple Content-Length headers")
    value = values.pop()
    if not value.isdigit() or len(value.lstrip(b"0")) > 10:
        raise SipParseError("Bad Content-Length header")
    return int(value)
