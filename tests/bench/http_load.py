"""A lean HTTP/1.1 load generator: keep-alive connections that send prepared GETs.

On a two-core machine the load generator shares the cores with the server
(and with PostgreSQL): every microsecond it spends is taken from them. A
general client such as aiohttp's parses every header of every answer into
objects; this one writes prepared request bytes and reads an answer as far
as its status line and ``Content-Length`` (RFC 9112 6.3: the body is that
many bytes after the blank line), as ``wrk`` does. Answers without a
``Content-Length`` (chunked ones) are not understood: the connection is
dropped and the request counts as an error. The API's pages and stats all
carry one; the CSV export (chunked) is read with aiohttp instead.

Requests go out either in a closed loop (each client sends its next request
when the last answer has been read in full) or on a schedule of ``rate``
requests/s over all the clients, where a latency runs from when the request
was due, so a stall counts for every request it held up (the correction for
coordinated omission that ``wrk2`` makes).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = ["LoadResult", "run_load", "slow_spells"]

ANSWER_TIMEOUT_S = 30.0
"""An answer slower than this is an error (and its connection is dropped)."""
ERROR_PAUSE_S = 0.01
"""A client's pause after an error before its next request."""
_HEADER_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


@dataclass
class LoadResult:
    latencies_ms: list[float]
    done_s: list[float]
    """When each answer of ``latencies_ms`` came, seconds into the measured window."""
    window_s: float
    errors: int
    failed: int
    """Answers other than 200 after the warm-up, those that came after the window too."""
    statuses: dict[int, int]
    bytes_read: int


class _Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`get` sends a request and waits for its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[int, int]] | None = None
        self.expected = -1  # bytes of head and body of the answer being read; -1: head not seen
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is no subclass of asyncio.Transport, but has its methods
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._settle(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while self._answer_read():
                pass
        except ValueError as error:
            self._fail(f"an answer not understood: {error}")

    def _answer_read(self) -> bool:
        """Take one whole answer off the buffer, if it is there (RFC 9112 6.3)."""
        buffer = self.buffer
        if self.expected < 0:
            head_end = buffer.find(_HEADER_END)
            if head_end < 0:
                return False
            head = bytes(buffer[:head_end]).lower()
            version, status, _ = head.split(b" ", 2)
            if not version.startswith(b"http/1."):
                raise ValueError(f"status line {bytes(buffer[:40])!r}")
            at = head.find(_LENGTH)
            if at < 0:
                raise ValueError("no Content-Length (chunked answers are not read here)")
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + len(_LENGTH) : line_end if line_end > 0 else None])
            self.status = int(status)
            self.expected = head_end + len(_HEADER_END) + length
        if len(buffer) < self.expected:
            return False
        size, self.expected = self.expected, -1
        del buffer[:size]
        self._settle((self.status, size))
        return True

    def _settle(self, outcome: tuple[int, int] | Exception) -> None:
        answer = self.answer
        if answer is None or answer.done():
            return
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)

    def _fail(self, reason: str) -> None:
        self._settle(ConnectionError(reason))
        if self.transport is not None:
            transport, self.transport = self.transport, None  # no request goes out on it again
            transport.abort()

    async def get(self, request: bytes, timeout: float) -> tuple[int, int]:
        """Status and size (head and body) of the answer to ``request``; an answer slower
        than ``timeout`` seconds drops the connection (``TimeoutError``)."""
        if self.transport is None:
            raise ConnectionError("not connected")
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self.answer, timeout)
        except TimeoutError:
            self._fail("no answer in time")
            raise


def _requests(base: str, key: str, paths: Sequence[str]) -> list[bytes]:
    host = urlsplit(base).netloc
    return [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        for path in paths
    ]


async def run_load(
    base: str,
    key: str,
    paths: Sequence[str],
    clients: int,
    warmup: float,
    duration: float,
    rate: float = 0.0,
) -> LoadResult:
    """GETs of ``paths`` (picked at random) against ``base`` from ``clients`` connections.

    With ``rate``, client ``i`` is due at ``i / rate`` and every
    ``clients / rate`` seconds after, and a request counts when it was due
    within ``duration`` seconds after ``warmup`` (its answer may come after:
    a stall at the window's end counts in full); otherwise each client sends
    again as soon as its answer is in, and a request counts when its answer's
    last byte arrives within the window. An answer slower than
    :data:`ANSWER_TIMEOUT_S`, or a connection that fails, is an error.
    """
    requests = _requests(base, key, paths)
    parts = urlsplit(base)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done_at: list[float] = []
    statuses: Counter[int] = Counter()
    errors = failed = read = 0
    clock = time.perf_counter
    began = clock()
    measure_from = began + warmup
    stop_at = measure_from + duration

    async def connect() -> _Connection:
        _, connection = await loop.create_connection(_Connection, parts.hostname, parts.port)
        return connection

    async def client(index: int) -> None:
        nonlocal errors, failed, read
        rng = random.Random(index)
        connection: _Connection | None = None
        due = began + index / rate if rate else 0.0
        while (due if rate else clock()) < stop_at:
            request = requests[rng.randrange(len(requests))]
            if rate:
                wait = due - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent = min(due, clock())  # a timer may fire a little early
                counts = due >= measure_from
                due += clients / rate
            else:
                sent = clock()
            try:
                if connection is None or connection.transport is None:
                    connection = await connect()
                status, size = await connection.get(request, ANSWER_TIMEOUT_S)
            except OSError:  # ConnectionError and TimeoutError among them
                errors += 1
                await asyncio.sleep(ERROR_PAUSE_S)  # a server that is down is not hammered
                continue
            done = clock()
            if status != 200 and done >= measure_from:
                failed += 1
            if not rate:
                counts = measure_from <= done <= stop_at
            if counts:
                latencies.append((done - sent) * 1000.0)
                done_at.append(done - measure_from)
                statuses[status] += 1
                read += size
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    await asyncio.gather(*(client(index) for index in range(clients)))
    return LoadResult(latencies, done_at, duration, errors, failed, dict(statuses), read)


def slow_spells(
    result: LoadResult, threshold_ms: float, merge_s: float = 0.1
) -> list[tuple[float, float]]:
    """Stretches of the window in which answers came slower than ``threshold_ms``: (start,
    length) in seconds, answers under ``merge_s`` apart in one stretch. Spread-out slow
    answers are a load near capacity; a few long stretches are the server (or the host)
    stalling."""
    answers = zip(result.done_s, result.latencies_ms, strict=True)
    slow = sorted(done for done, ms in answers if ms > threshold_ms)
    spells: list[tuple[float, float]] = []
    for done in slow:
        if spells and done - (spells[-1][0] + spells[-1][1]) <= merge_s:
            spells[-1] = (spells[-1][0], done - spells[-1][0])
        else:
            spells.append((done, 0.0))
    return spells
