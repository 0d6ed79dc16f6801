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
from urllib.parse import urlsplit

__all__ = ["LoadResult", "run_load"]

_HEADER_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


@dataclass
class LoadResult:
    latencies_ms: list[float]
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.expected < 0:
            head_end = buffer.find(_HEADER_END)
            if head_end < 0:
                return
            head = bytes(buffer[:head_end]).lower()
            at = head.find(_LENGTH)
            if at < 0:
                self._fail("an answer without Content-Length")
                return
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + len(_LENGTH) : line_end if line_end > 0 else None])
            self.expected = head_end + len(_HEADER_END) + length
        if len(buffer) >= self.expected:
            status = int(buffer[9:12])
            size = self.expected
            del buffer[:size]
            self.expected = -1
            if self.answer is not None and not self.answer.done():
                self.answer.set_result((status, size))

    def _fail(self, reason: str) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    async def get(self, request: bytes) -> tuple[int, int]:
        """Status and size (head and body) of the answer to ``request``."""
        if self.transport is None:
            raise ConnectionError("not connected")
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer


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
    ``clients / rate`` seconds after; otherwise each sends again as soon as
    its answer is in. A request counts when its answer's last byte arrives
    within ``duration`` seconds after ``warmup``.
    """
    requests = _requests(base, key, paths)
    parts = urlsplit(base)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
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
        connection = await connect()
        due = began + index / rate if rate else 0.0
        while clock() < stop_at:
            request = requests[rng.randrange(len(requests))]
            if rate:
                wait = due - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent = min(due, clock())  # a timer may fire a little early
                due += clients / rate
            else:
                sent = clock()
            try:
                if connection.transport is None:
                    connection = await connect()
                status, size = await connection.get(request)
            except OSError:  # ConnectionError among them
                errors += 1
                continue
            done = clock()
            if status != 200 and done >= measure_from:
                failed += 1
            if measure_from <= done <= stop_at:
                latencies.append((done - sent) * 1000.0)
                statuses[status] += 1
                read += size
        if connection.transport is not None:
            connection.transport.close()

    await asyncio.gather(*(client(index) for index in range(clients)))
    return LoadResult(latencies, duration, errors, failed, dict(statuses), read)
