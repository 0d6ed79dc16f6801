"""Random identifiers for SIP and SDP from one pooled read of the operating system's CSPRNG.

Tags must be cryptographically random (RFC 3261 19.3), branches and Call-IDs
unique (8.1.1.4, 8.1.1.7), SDP session ids unique (RFC 4566 5.2).
:mod:`secrets` gives that with one ``getrandom`` system call per identifier,
several per call; :class:`RandomHex` fetches :data:`RANDOM_CHUNK` bytes at a
time and hands each byte out once.
"""

from __future__ import annotations

import os
import threading


class RandomHex:
    """Hex digits from the operating system's CSPRNG, fetched :data:`RANDOM_CHUNK` bytes at a time.

    Each byte is handed out once, to one thread; a forked child starts with an
    empty pool, so it never repeats its parent's identifiers.
    """

    __slots__ = ("_digits", "_lock", "_next")

    def __init__(self) -> None:
        self._digits = ""
        self._next = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self.clear)

    def clear(self) -> None:
        self._digits = ""
        self._next = 0
        self._lock = threading.Lock()  # a fork may have copied it held

    def take(self, nbytes: int) -> str:
        """``2 * nbytes`` hex digits never handed out before (to any thread)."""
        with self._lock:
            start = self._next
            end = start + 2 * nbytes
            if end > len(self._digits):
                self._digits = os.urandom(max(RANDOM_CHUNK, nbytes)).hex()
                start, end = 0, 2 * nbytes
            self._next = end
            return self._digits[start:end]


RANDOM_CHUNK = 4096
"""Bytes fetched from the CSPRNG at once (a few hundred identifiers)."""
_random_hex = RandomHex()


def random_hex(nbytes: int) -> str:
    """``2 * nbytes`` fresh random hex digits."""
    return _random_hex.take(nbytes)
