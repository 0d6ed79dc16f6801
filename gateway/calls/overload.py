"""Local overload control: shed new calls before the event loop falls behind.

Every SIP message and RTP packet of this gateway waits for one event loop.
Offered more calls than that loop can carry, a B2BUA does not slow down
gracefully: answers leave later than T1 (RFC 3261 17.1.1.2), both peers
retransmit, the retransmissions cost more work, and within seconds nearly
every call fails (at 110 % of capacity the call-rate benchmark saw 78 % of
calls fail). RFC 6357 (3, 5.1) describes the way out: the server measures
its own load and rejects what it cannot carry, early and cheaply, so the
calls it admits keep their timing.

Two measures of load are used. The first is how long SIP messages waited
in the socket's queue before they were read (the kernel stamps each
datagram's arrival, :mod:`gateway.net.udp_endpoint`): once every message
read for ``sustain_s`` has waited longer than the target, an INVITE that did
too is refused. That wait is the delay peers see, and it grows first: the
loop reads a bounded batch per socket per turn, so a queue of SIP messages
builds while the loop's turns stay short. Refusing costs a fraction of what
a call costs, so the queue drains and settles near the target while
admitted calls go on. A stall (a collector pause, a slow start-up step)
also leaves a queue of late messages, but one that is read within a few
milliseconds once the loop runs again: shorter than ``sustain_s``, so it
refuses nothing.

The second, for what the wait cannot see (TCP, long collector pauses, turns
of the loop made long by the relay), is the event loop's lag: a timer asks
to run every ``interval`` and the lag is how late it ran.
:class:`AdmissionControl` turns lag samples into the share of new calls to
refuse: it rises at ``rise_per_s`` while samples are over the
target and falls at ``fall_per_s`` while they are under it (slower, so load
returns gradually), in proportion to the time each sample covers (the
interval and the lag itself: a loop a second behind has been overloaded for
that second). One late sample (a collector pause, a slow start-up step)
changes nothing: the share rises only once ``sustain`` samples in a row
were over the target. Admission is deterministic, not random: a
credit of ``1 - shed share`` accrues per new call and a call is admitted
for each whole credit, so at a shed share of 0.25 exactly one call in four
is refused.

Only new calls (initial INVITEs) are refused, with 503 and Retry-After
(RFC 3261 21.5.4): requests within admitted calls always go through.
This module is sans-IO; the glue that samples the loop lives with the call
manager.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_INTERVAL_S = 0.02
"""How often the loop's lag is sampled."""


@dataclass(frozen=True, slots=True)
class OverloadLimits:
    """How the controller reacts; ``target_lag_s`` of 0 turns shedding off."""

    target_lag_s: float = 0.25
    rise_per_s: float = 2.5
    """Shed share added per second over the target (none to all calls in 0.4 s)."""
    fall_per_s: float = 0.5
    """Shed share taken off per second under the target (all to none in 2 s)."""
    interval_s: float = SAMPLE_INTERVAL_S
    """How often the lag is sampled."""
    sustain_s: float = 0.2
    """How long every message read must have been late before INVITEs are refused: longer
    than the queue a collector pause of the middle generation leaves (up to about 0.25 s
    at 420 calls/s) takes to read, far shorter than the seconds retransmissions take to
    pile up."""
    sustain: int = 2
    """Samples in a row over the target before the shed share rises."""
    retry_after_s: int = 2
    """Retry-After of the 503 a shed call gets."""

    def __post_init__(self) -> None:
        if self.target_lag_s < 0:
            raise ValueError(f"target lag must not be negative, got {self.target_lag_s}")
        if self.rise_per_s <= 0 or self.fall_per_s <= 0 or self.interval_s <= 0:
            raise ValueError("rise, fall and interval must be positive")
        if self.sustain_s < 0:
            raise ValueError(f"sustain_s must not be negative, got {self.sustain_s}")
        if self.sustain < 1:
            raise ValueError(f"sustain must be at least 1 sample, got {self.sustain}")
        if self.retry_after_s < 0:
            raise ValueError(f"Retry-After must not be negative, got {self.retry_after_s}")

    @property
    def enabled(self) -> bool:
        return self.target_lag_s > 0


class AdmissionControl:
    """Lag samples in, admit/refuse decisions for new calls out."""

    __slots__ = (
        "_credit",
        "_streak",
        "admitted",
        "last_lag_s",
        "limits",
        "max_lag_s",
        "shed",
        "shed_share",
    )

    def __init__(self, limits: OverloadLimits | None = None) -> None:
        self.limits = limits or OverloadLimits()
        self.shed_share = 0.0
        """Share of new calls refused now, 0 to 1."""
        self.last_lag_s = 0.0
        self.max_lag_s = 0.0
        """Largest lag seen since start."""
        self.admitted = 0
        self.shed = 0
        """New calls refused since start."""
        self._credit = 0.0
        self._streak = 0
        """Samples in a row over the target."""

    def observe(self, lag_s: float) -> None:
        """One lag sample: how late the loop ran a timer, in seconds."""
        self.last_lag_s = lag_s
        if lag_s > self.max_lag_s:
            self.max_lag_s = lag_s
        limits = self.limits
        if not limits.enabled:
            return
        covered_s = limits.interval_s + lag_s
        if lag_s > limits.target_lag_s:
            self._streak += 1
            if self._streak >= limits.sustain:
                self.shed_share = min(1.0, self.shed_share + limits.rise_per_s * covered_s)
            return
        self._streak = 0
        if self.shed_share > 0.0:
            self.shed_share = max(0.0, self.shed_share - limits.fall_per_s * covered_s)

    def admit(self, waited_s: float = 0.0, late_for_s: float = 0.0) -> bool:
        """Whether to take the new call now offered (False: answer it 503).

        ``waited_s`` is how long its INVITE waited to be read (0 when unknown)
        and ``late_for_s`` how long every message read has waited over the
        target: when both are over their limits, the call is refused whatever
        the shed share.
        """
        limits = self.limits
        if limits.enabled and waited_s > limits.target_lag_s and late_for_s >= limits.sustain_s:
            self.shed += 1
            return False
        share = self.shed_share
        if share <= 0.0:
            self._credit = 0.0
            self.admitted += 1
            return True
        self._credit += 1.0 - share
        if self._credit >= 1.0:
            self._credit -= 1.0
            self.admitted += 1
            return True
        self.shed += 1
        return False
