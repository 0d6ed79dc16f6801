"""DTMF key presses from RFC 4733 telephone-events, counted once per press.

Payload (RFC 4733 2.3): event code (8 bits), E (end) bit, R (reserved) bit,
volume (6 bits, -dBm0), duration (16 bits, timestamp units). Event codes
0-9 are the digits, 10 '*', 11 '#', 12-15 'A'-'D' (section 3.2, table 7);
16 (flash) and the other codes are not digits. Only the plain 4-octet format
is read: redundancy (RFC 2198, section 2.5.1.5's packing of events) arrives
under a payload type of its own, and octets after the first event are ignored.

A sender repeats an event's packets: every packet of one event carries the
event's start timestamp (2.5.1.1) and the final packet is sent three times
(2.5.1.4). :class:`TelephoneEventReceiver` therefore identifies a press by
(SSRC, RTP timestamp, event code) and reports its digit on the first packet
of it that arrives, marker bit or not: the marked first packet may be lost,
and of a short press only the end packets may arrive. An event longer than
the 16-bit duration goes on in a new segment with a new timestamp and no
marker bit (2.5.1.3); a new timestamp is such a continuation, not a second
press, when the same SSRC's segment of the same event before it has not
ended and the new timestamp is that segment's timestamp plus its duration,
within ``continuation_tolerance`` samples (the last packets of a segment
may be lost, so the duration seen may fall short).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DIGIT_EVENTS",
    "TelephoneEvent",
    "TelephoneEventError",
    "TelephoneEventReceiver",
    "event_digit",
    "parse_event",
]

DIGIT_EVENTS: Final = "0123456789*#ABCD"
"""The digit of each DTMF event code 0-15 (RFC 4733 3.2, table 7)."""

EVENT_PAYLOAD_SIZE: Final = 4
_EVENT: Final = struct.Struct("!BBH")
_END_BIT: Final = 0x80
_VOLUME_BITS: Final = 0x3F
_TIMESTAMP_MODULUS: Final = 1 << 32
_HALF_TIMESTAMP_RANGE: Final = 1 << 31


class TelephoneEventError(ValueError):
    """A payload that is not an RFC 4733 event (the message says why)."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One event report (RFC 4733 2.3); ``duration`` is in RTP timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """The DTMF digit of this event, None for flash and other non-digit events."""
        return event_digit(self.event)


def event_digit(event: int) -> str | None:
    """The digit of event code ``event`` (RFC 4733 3.2), None when it is not a digit."""
    return DIGIT_EVENTS[event] if 0 <= event < len(DIGIT_EVENTS) else None


def parse_event(payload: bytes) -> TelephoneEvent:
    """The first event of a telephone-event payload; octets after it are ignored."""
    if len(payload) < EVENT_PAYLOAD_SIZE:
        raise TelephoneEventError(
            f"{len(payload)} octets is shorter than a telephone-event ({EVENT_PAYLOAD_SIZE})"
        )
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(
        event=event, end=bool(flags & _END_BIT), volume=flags & _VOLUME_BITS, duration=duration
    )


@dataclass(slots=True)
class _Segment:
    """What the receiver remembers of one (SSRC, timestamp, event): one press or one
    segment of a long press."""

    ssrc: int
    timestamp: int
    event: int
    duration: int  # longest seen
    ended: bool


def _signed_difference(later: int, earlier: int) -> int:
    """``later - earlier`` of two 32-bit RTP timestamps, across wrap-around."""
    difference = (later - earlier) % _TIMESTAMP_MODULUS
    return difference - _TIMESTAMP_MODULUS if difference >= _HALF_TIMESTAMP_RANGE else difference


class TelephoneEventReceiver:
    """Turns a stream of telephone-event payloads into key presses, each reported once.

    See the module notes for how presses are told apart. The receiver keeps
    the last ``memory`` segments only, so its memory does not grow with the
    call; a press is reported again only if one of its packets arrives after
    ``memory`` newer segments, which no real reordering produces.

    Counters: ``presses`` (digits reported), ``malformed`` (payloads too short
    to parse) and ``last_digit``.
    """

    def __init__(self, memory: int = 16, continuation_tolerance: int = 1000) -> None:
        if memory < 1:
            raise ValueError(f"memory must hold at least one segment, got {memory}")
        if not 0 <= continuation_tolerance < _HALF_TIMESTAMP_RANGE:
            raise ValueError(f"continuation_tolerance out of range: {continuation_tolerance}")
        self._memory = memory
        self._tolerance = continuation_tolerance
        self._segments: OrderedDict[tuple[int, int, int], _Segment] = OrderedDict()
        self.presses = 0
        self.malformed = 0
        self.last_digit: str | None = None

    def feed(self, ssrc: int, timestamp: int, marker: bool, payload: bytes) -> str | None:
        """The digit when this packet is the first seen of a new key press, else None.

        A malformed (short) payload is counted in ``malformed`` and returns None.
        """
        if len(payload) < EVENT_PAYLOAD_SIZE:
            self.malformed += 1
            return None
        event, flags, duration = _EVENT.unpack_from(payload)
        if event >= len(DIGIT_EVENTS):
            return None
        ended = bool(flags & _END_BIT)
        key = (ssrc, timestamp, event)
        segment = self._segments.get(key)
        if segment is not None:
            if duration > segment.duration:
                segment.duration = duration
            segment.ended = segment.ended or ended
            return None
        continued = not marker and self._continues(ssrc, timestamp, event)
        self._remember(key, _Segment(ssrc, timestamp, event, duration, ended))
        if continued:
            return None
        digit = DIGIT_EVENTS[event]
        self.presses += 1
        self.last_digit = digit
        return digit

    def _continues(self, ssrc: int, timestamp: int, event: int) -> bool:
        """Whether a new timestamp starts the next segment of a long event (RFC 4733 2.5.1.3)."""
        for segment in self._segments.values():
            if segment.ssrc != ssrc or segment.event != event or segment.ended:
                continue
            gap = _signed_difference(timestamp, segment.timestamp + segment.duration)
            if -self._tolerance <= gap <= self._tolerance:
                return True
        return False

    def _remember(self, key: tuple[int, int, int], segment: _Segment) -> None:
        self._segments[key] = segment
        if len(self._segments) > self._memory:
            self._segments.popitem(last=False)
