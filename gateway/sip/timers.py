"""SIP transaction timer values (RFC 3261 17 and Table 4, RFC 6026 8).

Every timer is derived from three base values: T1 (round-trip estimate),
T2 (the cap on non-INVITE request and INVITE response retransmission
intervals) and T4 (how long a message may stay in the network). The values
a timer has only on unreliable transports (D, I, J, K) are zero on reliable
ones (RFC 3261 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

TIMER_D_UNRELIABLE = 32.0
"""RFC 3261 17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports."""


@dataclass(frozen=True)
class TimerConfig:
    """Base timer values in seconds, with every derived timer of RFC 3261 Table 4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0):
            raise ValueError(
                f"invalid SIP timers: need 0 < T1 <= T2 and T4 > 0 "
                f"(T1={self.t1}, T2={self.t2}, T4={self.t4})"
            )

    @property
    def timer_a(self) -> float:
        """INVITE request retransmit interval, initial value (17.1.1.2); doubles each time."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout (17.1.1.2)."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmissions in an INVITE client's Completed state."""
        return 0.0 if reliable else max(TIMER_D_UNRELIABLE, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmit interval, initial value (17.1.2.2)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout (17.1.2.2)."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """INVITE final response retransmit interval, initial value (17.2.1)."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for the ACK to a non-2xx final response (17.2.1)."""
        return 64 * self.t1

    @property
    def timer_i(self) -> float:
        """Wait time for ACK retransmissions, unreliable transports (17.2.1); 0 if reliable."""
        return self.t4

    @property
    def timer_j(self) -> float:
        """Wait time for non-INVITE request retransmissions, unreliable (17.2.2); 0 if reliable."""
        return 64 * self.t1

    @property
    def timer_k(self) -> float:
        """Wait time for response retransmissions, unreliable (17.1.2.2); 0 if reliable."""
        return self.t4

    @property
    def timer_l(self) -> float:
        """INVITE server transaction's Accepted state lifetime (RFC 6026 8.7)."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """INVITE client transaction's Accepted state lifetime (RFC 6026 8.4)."""
        return 64 * self.t1

    @property
    def cancel_wait(self) -> float:
        """How long a cancelled INVITE waits for its final response before it is taken as
        cancelled and its client transaction ended (RFC 3261 9.1)."""
        return 64 * self.t1

    @property
    def ack_wait(self) -> float:
        """How long a UAS retransmits a 2xx waiting for its ACK (RFC 3261 13.3.1.4)."""
        return 64 * self.t1

    @property
    def ack_memory(self) -> float:
        """How long a UAC re-sends its ACK on 2xx retransmissions (RFC 3261 13.2.2.4)."""
        return 64 * self.t1

    def next_interval(self, interval: float) -> float:
        """The doubled retransmit interval, capped at T2 (17.1.2.2, 17.2.1, 13.3.1.4)."""
        return min(2 * interval, self.t2)

    def for_transport(self, unreliable_value: float, reliable: bool) -> float:
        """A Completed-state wait (I, J, K) that is zero on reliable transports."""
        return 0.0 if reliable else unreliable_value
