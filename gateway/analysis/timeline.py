"""Placing a party's RTP packets on a recording's sample clock.

A recording is one sample clock that starts when the recording starts; each
party's audio is a channel on it. :class:`ChannelTimeline` gives each RTP
packet of one party the sample index where its audio starts.

RFC 3550 5.1: the RTP timestamp is the sampling instant of the packet's
first octet, on a clock that advances monotonically and linearly (8,000 Hz
for PCMU/PCMA, RFC 3551 4.5.14), from a random initial value, modulo 2**32.
It keeps advancing while a sender sends nothing (silence suppression, hold),
so the difference of two timestamps of one SSRC is the true distance of
their audio, however the packets travelled. Hence:

- The first packet of an SSRC *anchors* the stream: its audio starts at its
  arrival, ``round(arrival_s * sample_rate)``.
- Every later packet of that SSRC starts at ``anchor + (timestamp - anchor
  timestamp)``, the difference taken modulo 2**32 as a signed 32-bit number,
  so a wrap of the timestamp is a step like any other. Network jitter does
  not move audio, a lost packet leaves its gap (silence in the recording),
  and a pause leaves silence of its true length. The reference is moved to
  the furthest packet as the stream goes (exact integer steps, so nothing
  changes), which keeps the signed differences small on calls of any length.

The timestamp says *where* relative to the anchor, never *when* the anchor
was; so the position a timestamp predicts is checked against arrival, the
way RFC 3550 A.8 reads the relative transit time ``D = (R_j - R_i) - (S_j -
S_i)``: for one sender it only wanders by the jitter. A ``D`` larger than
``max_drift_s`` is not jitter: the sender jumped its timestamp (a new media
source behind the same SSRC, a clock reset) or its clock drifted from ours
over a long call. The packet then re-anchors the stream at its arrival. The
stream also re-anchors when the SSRC changes (RFC 3550 8.2: a new SSRC is a
new timestamp space, unrelated to the old one).

A timestamp that went backwards by more than ``max_backward_s`` (a few
packets) from the furthest packet seen is either a packet reordered that far
or a sender whose timestamp jumped back. One packet cannot tell the two
apart, so, as RFC 3550 A.1 does with a sequence number that jumps, the
packet is held on probation: it is placed by its timestamp (right for a
late packet; a recorder drops it when its place is already written), and
the jump is taken, re-anchoring at that packet's arrival, only when the next
packet continues from it (starts where it ends, give or take
``max_backward_s`` of lost packets). A stray late packet so never moves the
stream. A burst of packets all reordered that far looks like a jump and
re-anchors; the drift check bounds what that can cost.

Positions are never negative: audio that would start before the recording
is placed at 0 (the recorder keeps what it still can).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_MAX_BACKWARD_S", "DEFAULT_MAX_DRIFT_S", "ChannelTimeline"]

DEFAULT_MAX_DRIFT_S: Final = 1.0
"""Largest gap between timestamp-predicted and arrival position still taken as jitter."""

DEFAULT_MAX_BACKWARD_S: Final = 0.1
"""Largest backward timestamp step still taken as reordering (five 20 ms packets)."""

_TIMESTAMP_MASK: Final = 0xFFFFFFFF
_HALF_TIMESTAMP_SPACE: Final = 0x80000000


def timestamp_delta(timestamp: int, reference: int) -> int:
    """``timestamp - reference`` modulo 2**32 as a signed 32-bit number (RFC 3550 5.1)."""
    return ((timestamp - reference + _HALF_TIMESTAMP_SPACE) & _TIMESTAMP_MASK) - (
        _HALF_TIMESTAMP_SPACE
    )


class ChannelTimeline:
    """One party's RTP packets mapped to sample positions of the recording.

    ``reanchors`` counts the times the stream was re-anchored after its first
    packet (SSRC changes, timestamp jumps, clock drift).
    """

    __slots__ = (
        "_head_pos",
        "_head_ts",
        "_max_backward",
        "_max_drift",
        "_probation_end_pos",
        "_probation_end_ts",
        "_ssrc",
        "reanchors",
        "sample_rate",
    )

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        max_drift_s: float = DEFAULT_MAX_DRIFT_S,
        max_backward_s: float = DEFAULT_MAX_BACKWARD_S,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if max_drift_s <= 0 or max_backward_s < 0:
            raise ValueError("max_drift_s must be positive and max_backward_s not negative")
        self.sample_rate = sample_rate
        self._max_drift = round(max_drift_s * sample_rate)
        self._max_backward = round(max_backward_s * sample_rate)
        self._ssrc: int | None = None
        self._head_ts = 0
        self._head_pos = 0
        self._probation_end_ts: int | None = None
        self._probation_end_pos = 0
        self.reanchors = 0

    @property
    def ssrc(self) -> int | None:
        """The SSRC the stream is anchored on, or None before its first packet."""
        return self._ssrc

    def position(self, ssrc: int, timestamp: int, arrival_s: float, samples: int) -> int:
        """The sample index, from the recording's start, where this packet's audio starts.

        ``arrival_s`` is the packet's arrival in seconds since the recording
        started; ``samples`` is how many samples the packet carries.
        """
        arrival_pos = round(arrival_s * self.sample_rate)
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self.reanchors += 1
            self._ssrc = ssrc
            return self._anchor(timestamp, arrival_pos)
        delta = timestamp_delta(timestamp, self._head_ts)
        position = self._head_pos + delta
        if abs(position - arrival_pos) > self._max_drift:
            self.reanchors += 1
            return self._anchor(timestamp, arrival_pos)
        if delta < -self._max_backward:
            return self._backward(timestamp, arrival_pos, position, samples)
        self._probation_end_ts = None
        if delta > 0:
            self._head_ts = timestamp & _TIMESTAMP_MASK
            self._head_pos = position
        return position if position > 0 else 0

    def _anchor(self, timestamp: int, arrival_pos: int) -> int:
        position = arrival_pos if arrival_pos > 0 else 0
        self._head_ts = timestamp & _TIMESTAMP_MASK
        self._head_pos = position
        self._probation_end_ts = None
        return position

    def _backward(self, timestamp: int, arrival_pos: int, position: int, samples: int) -> int:
        """A packet far behind the stream's head: reordered, or the first after a jump back."""
        suspect_end = self._probation_end_ts
        if suspect_end is not None:
            step = timestamp_delta(timestamp, suspect_end)
            if 0 <= step <= self._max_backward:
                # it continues the packet on probation: the timestamp jumped back there
                self.reanchors += 1
                self._head_ts = timestamp & _TIMESTAMP_MASK
                self._head_pos = self._probation_end_pos + step
                self._probation_end_ts = None
                return self._head_pos
        self._probation_end_ts = (timestamp + samples) & _TIMESTAMP_MASK
        self._probation_end_pos = (arrival_pos if arrival_pos > 0 else 0) + samples
        return position if position > 0 else 0
