"""DTMF digits carried in SIP INFO requests.

RFC 6086 frames INFO (and its Info Packages); the DTMF bodies phones send
are de-facto formats without a standard of their own:

- ``application/dtmf-relay``: ``key=value`` lines, CRLF or LF terminated,
  keys case-insensitive, blanks around ``=``. ``Signal`` is the digit
  (0-9, ``*``, ``#``, A-D in either case; some phones send 10 for ``*`` and
  11 for ``#``, the RFC 4733 event codes), ``Duration`` the tone length in
  milliseconds. Other keys are ignored.
- ``application/dtmf``: the body is the digit, blanks around it allowed.

Content-type parameters are ignored and the media type is matched without
regard to case (RFC 3261 20.15, RFC 2045 5.1). A hook flash (``Signal=!``)
is not a digit and is reported as an error like any other unusable body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DTMF_CONTENT_TYPES",
    "DTMF_RELAY",
    "DTMF_TEXT",
    "DtmfInfo",
    "DtmfInfoError",
    "parse_dtmf_info",
]

DTMF_RELAY: Final = "application/dtmf-relay"
DTMF_TEXT: Final = "application/dtmf"
DTMF_CONTENT_TYPES: Final = frozenset({DTMF_RELAY, DTMF_TEXT})

_DIGITS: Final = "0123456789*#ABCD"
_EVENT_CODE_DIGITS: Final = {"10": "*", "11": "#"}
_MAX_DURATION_DIGITS: Final = 9
_BLANKS: Final = " \t"
_LINE_BREAK: Final = re.compile(r"\r?\n")


class DtmfInfoError(ValueError):
    """An INFO body of a DTMF content type that holds no usable digit; the message says why."""


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    """One key press reported by INFO; ``duration_ms`` when the body gave one."""

    digit: str
    duration_ms: int | None = None


def _media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lowercased, without parameters."""
    return content_type.partition(";")[0].strip(_BLANKS).lower()


def parse_dtmf_info(content_type: str | None, body: bytes) -> DtmfInfo | None:
    """The key press in an INFO body; None when ``content_type`` is not a DTMF one.

    Raises DtmfInfoError for a DTMF content type whose body holds no digit.
    """
    if content_type is None:
        return None
    kind = _media_type(content_type)
    if kind not in DTMF_CONTENT_TYPES:
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfInfoError(f"{kind} body is not ASCII text") from None
    if kind == DTMF_TEXT:
        return DtmfInfo(_signal(text.strip(_BLANKS + "\r\n")))
    return _parse_relay(text)


def _parse_relay(text: str) -> DtmfInfo:
    """An ``application/dtmf-relay`` body."""
    fields: dict[str, str] = {}
    for line in _LINE_BREAK.split(text):
        if not line.strip(_BLANKS):
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise DtmfInfoError(f"dtmf-relay line without '=': {line[:40]!r}")
        key = key.strip(_BLANKS).lower()
        if key in fields:
            raise DtmfInfoError(f"dtmf-relay body repeats {key!r}")
        fields[key] = value.strip(_BLANKS)
    signal = fields.get("signal")
    if signal is None:
        raise DtmfInfoError("dtmf-relay body has no Signal line")
    duration = fields.get("duration")
    return DtmfInfo(_signal(signal), None if duration is None else _duration(duration))


def _signal(value: str) -> str:
    """The digit of a Signal value (or of an ``application/dtmf`` body)."""
    digit = _EVENT_CODE_DIGITS.get(value, value.upper())
    if len(digit) != 1 or digit not in _DIGITS:
        raise DtmfInfoError(f"{value[:20]!r} is not a DTMF digit")
    return digit


def _duration(value: str) -> int:
    """A Duration value: whole milliseconds."""
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_DURATION_DIGITS:
        raise DtmfInfoError(f"Duration {value[:20]!r} is not a whole number of milliseconds")
    return int(value)
