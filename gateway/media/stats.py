"""Per-side RTP statistics of one relayed stream: counters, loss and jitter.

Loss and jitter follow RFC 3550 appendix A: the extended highest sequence
number (A.1), cumulative packets lost (A.3) and the interarrival jitter
estimator (A.8). Only the 12-byte fixed header is read (RFC 3550 5.1).
:meth:`StreamStats.update` runs once per relayed packet, so it does the
least work that keeps the numbers exact.
"""

from __future__ import annotations

import struct
from typing import Any

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
"""Largest forward jump still taken as loss rather than a restart (RFC 3550 A.1)."""
MAX_MISORDER = 100
"""Largest backward step taken as reordering rather than a restart (RFC 3550 A.1)."""
DEFAULT_CLOCK_RATE = 8000
"""RTP clock of PCMU/PCMA and most narrowband codecs (RFC 3551 4.5)."""

_TIMESTAMP_SPACE = float(1 << 32)
_HALF_TIMESTAMP_SPACE = float(1 << 31)
_SEQ_TIMESTAMP_SSRC = struct.Struct("!HII")
"""Sequence number, timestamp and SSRC: octets 2-11 of the RTP header (RFC 3550 5.1)."""
STATE_FIELDS = (
    "packets_in",
    "bytes_in",
    "last_packet_at",
    "_ssrc",
    "_run_start",
    "_base_seq",
    "_max_seq",
    "_cycles",
    "_bad_seq",
    "_transit",
    "_not_received",
    "_expected_prior",
    "_received_prior",
    "jitter",
    "clock_rate",
)
"""What :meth:`StreamStats.update` reads and writes, in the order of a state tuple
(:meth:`StreamStats.export_state`): the native forwarder (:mod:`gateway.media.fastpath`)
carries on from it while it serves a party's packets, and gives it back."""
_NO_PACKET_YET = float("nan")


class StreamStats:
    """Counters of one side of a stream: what came from that party and what went to it.

    ``packets_in``/``bytes_in`` count RTP packets accepted from the party,
    ``packets_out``/``bytes_out`` RTP packets sent toward it, and
    ``dropped_foreign`` packets from a source other than the latched one.
    ``lost`` and ``jitter`` are per RFC 3550 A.3 and A.8, summed over the
    SSRCs the party used; ``jitter`` is in RTP timestamp units.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_max_seq",
        "_not_received",
        "_received_prior",
        "_run_start",
        "_ssrc",
        "_transit",
        "bytes_in",
        "bytes_out",
        "clock_rate",
        "dropped_foreign",
        "jitter",
        "last_packet_at",
        "packets_in",
        "packets_out",
    )

    def __init__(self, clock_rate: int = DEFAULT_CLOCK_RATE) -> None:
        if clock_rate <= 0:
            raise ValueError(f"RTP clock rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.dropped_foreign = 0
        self.jitter = 0.0
        self.last_packet_at: float | None = None
        self._ssrc = -1
        self._run_start = -1
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._transit = 0.0
        self._not_received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def update(self, packet: bytes, arrival: float) -> None:
        """Account for one RTP packet from the party, received at ``arrival`` seconds.

        ``packet`` must be at least 12 octets (struct.error otherwise); the
        caller has checked the version bits. Sequence tracking follows
        RFC 3550 A.1 without the probation of new sources: a jump of more
        than MAX_DROPOUT is taken as a restart only when the next packet
        continues from it, and the packet that made the jump is not counted
        as received.
        """
        seq, timestamp, ssrc = _SEQ_TIMESTAMP_SSRC.unpack_from(packet, 2)
        self.packets_in += 1
        self.bytes_in += len(packet)
        self.last_packet_at = arrival
        transit = arrival * self.clock_rate - timestamp
        if ssrc != self._ssrc:
            self._new_source(ssrc, seq)
            self._transit = transit
            return
        delta = (seq - self._max_seq) & 0xFFFF
        if delta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
        elif delta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                self._not_received += 1
                return
            self._restart(seq)
            self._transit = transit
            return
        d = transit - self._transit
        self._transit = transit
        if d < 0:
            d = -d
        if d > _HALF_TIMESTAMP_SPACE:  # the 32-bit timestamp wrapped between the two
            d %= _TIMESTAMP_SPACE
            if d > _HALF_TIMESTAMP_SPACE:
                d = _TIMESTAMP_SPACE - d
        self.jitter += (d - self.jitter) * 0.0625

    def export_state(self) -> tuple[Any, ...]:
        """The fields of :data:`STATE_FIELDS` as a tuple; no packet yet is NaN, not None."""
        state = [getattr(self, name) for name in STATE_FIELDS]
        if state[2] is None:
            state[2] = _NO_PACKET_YET
        return tuple(state)

    def import_state(self, state: tuple[Any, ...]) -> None:
        """Take the fields of :data:`STATE_FIELDS` from a tuple :meth:`export_state` made
        (and the native forwarder carried on); the other counters are left as they are."""
        if len(state) != len(STATE_FIELDS):
            raise ValueError(f"a state has {len(STATE_FIELDS)} fields, got {len(state)}")
        for name, value in zip(STATE_FIELDS, state, strict=True):
            setattr(self, name, value)
        if self.last_packet_at != self.last_packet_at:  # NaN: no packet yet
            self.last_packet_at = None

    def set_clock_rate(self, clock_rate: int) -> None:
        """Change the RTP clock (codec change): jitter is rescaled, tracking restarts."""
        if clock_rate <= 0:
            raise ValueError(f"RTP clock rate must be positive, got {clock_rate}")
        self.jitter *= clock_rate / self.clock_rate
        self.clock_rate = clock_rate
        self._ssrc = -1

    def _new_source(self, ssrc: int, seq: int) -> None:
        """A new SSRC (RFC 3550 8.2): its own sequence space, loss counted on from here."""
        self._ssrc = ssrc
        self._restart(seq)

    def _restart(self, seq: int) -> None:
        """init_seq of RFC 3550 A.1: close the current run of sequence numbers, start one.

        The packet being accounted (already in ``packets_in``) is the first of
        the new run.
        """
        if self._run_start >= 0:
            self._expected_prior += self._run_expected()
            self._received_prior += self.packets_in - 1 - self._run_start - self._not_received
        self._run_start = self.packets_in - 1
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._not_received = 0

    def _run_expected(self) -> int:
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def expected(self) -> int:
        """Packets expected from the extended sequence numbers seen (RFC 3550 A.3)."""
        if self._run_start < 0:
            return self._expected_prior
        return self._expected_prior + self._run_expected()

    @property
    def received(self) -> int:
        """Packets counted as received by the sequence tracking (RFC 3550 A.1, A.3)."""
        if self._run_start < 0:
            return self._received_prior
        return self._received_prior + self.packets_in - self._run_start - self._not_received

    @property
    def lost(self) -> int:
        """Cumulative packets lost, expected minus received (RFC 3550 A.3).

        Negative when duplicates arrived, as the RFC's cumulative count allows.
        """
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds at this stream's clock rate (RFC 3550 6.4.1)."""
        return self.jitter * 1000.0 / self.clock_rate

    def to_dict(self) -> dict[str, Any]:
        """The counters as a JSON-able dict (call records, the API)."""
        return {
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "lost": self.lost,
            "jitter_ms": round(self.jitter_ms, 3),
            "dropped_foreign": self.dropped_foreign,
        }

    def __repr__(self) -> str:
        return f"StreamStats({self.to_dict()!r})"
