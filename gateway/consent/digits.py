"""One key press counted once, whichever DTMF paths report it.

A party's key press can reach the gateway three ways: RFC 4733
telephone-events in RTP (``"rfc4733"``), SIP INFO bodies (``"info"``, RFC
6086 framing) and tones in the audio (``"inband"``, ITU-T Q.23/Q.24). Many
phones use more than one at once: RFC 4733 events while the tones also stay
in the audio, or INFO as well as RFC 4733. :class:`DigitMerger` decides
which reports are new presses.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DTMF_METHODS", "DigitMerger", "KeyPress"]

DTMF_METHODS: Final = frozenset({"rfc4733", "info", "inband"})
_DIGITS: Final = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class KeyPress:
    """An accepted key press: who pressed which key, the path that reported it first,
    and when (seconds, on the caller's clock)."""

    party: str
    digit: str
    method: str
    at: float


@dataclass(slots=True)
class _Accepted:
    press: KeyPress
    methods: set[str] = field(default_factory=set)


class DigitMerger:
    """Merges the DTMF reports of all paths into key presses.

    Rules:

    - Each path already reports a press once (the RFC 4733 receiver by
      event timestamp, the in-band detector by tone, INFO by request), so a
      second report from the SAME method is always a new press.
    - A report of the same digit by the same party from a DIFFERENT method,
      within ``window_s`` (either side) of a press accepted from another
      method, is that press reported again, and is not a new press. Each
      accepted press absorbs at most one report per method; when several
      could, the one closest in time does.
    - Anything else is a new press.

    The last ``history`` accepted presses are kept, in ``presses``; older ones
    no longer absorb reports.
    """

    def __init__(self, window_s: float = 0.5, history: int = 64) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if history < 1:
            raise ValueError(f"history must keep at least one press, got {history}")
        self.window_s = window_s
        self._accepted: deque[_Accepted] = deque(maxlen=history)

    @property
    def presses(self) -> list[KeyPress]:
        """The accepted presses still remembered, oldest first."""
        return [accepted.press for accepted in self._accepted]

    def accept(self, party: str, digit: str, method: str, at: float) -> bool:
        """True when this report is a new key press (and records it), False when it is a
        press already accepted from another method."""
        if method not in DTMF_METHODS:
            raise ValueError(f"unknown DTMF method {method!r}, expected one of {DTMF_METHODS}")
        if len(digit) != 1 or digit not in _DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF digit (one of {_DIGITS})")
        same = self._same_press(party, digit, method, at)
        if same is not None:
            same.methods.add(method)
            return False
        self._accepted.append(_Accepted(KeyPress(party, digit, method, at), {method}))
        return True

    def _same_press(self, party: str, digit: str, method: str, at: float) -> _Accepted | None:
        """The accepted press this report repeats: the closest in time within the window
        of those with the same party and digit that ``method`` has not reported yet."""
        closest: _Accepted | None = None
        closest_distance = 0.0
        for accepted in reversed(self._accepted):
            press = accepted.press
            if press.party != party or press.digit != digit or method in accepted.methods:
                continue
            distance = abs(at - press.at)
            if distance <= self.window_s and (closest is None or distance < closest_distance):
                closest = accepted
                closest_distance = distance
        return closest
