"""Benchmark of the call-record writer: rows/s on SQLite and on PostgreSQL.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_store
    /work/main/.venv/bin/python -m tests.bench.bench_store --calls 50000 --batch-size 500

Method
------
For each database a fresh store is made (a SQLite file in a temporary
directory; a throwaway PostgreSQL database on the server the store tests use,
see :mod:`tests.support.databases`) and migrated. One
:class:`gateway.store.writer.RecordWriter` with the given batch settings then
takes ``--calls`` calls in two phases, as calls that last longer than a batch
window do: first every call's ``CallStart`` (each becomes an INSERT), then
every call's ``CallEnd`` (each becomes an UPDATE that also derives the
durations). Each phase submits its operations in one go and ends when
``flush()`` returns, so its time covers queueing, batching and committing.

Printed per database: rows/s of the start phase, the end phase and both
together (calls / total seconds), the batches committed, and the mean cost
of one ``submit()`` call on the event loop (the call path's share).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.store.engine import make_engine, migrate
from gateway.store.writer import CallEnd, CallStart, RecordWriter
from tests.support.databases import PostgresUnavailable, postgres_admin_url
from tests.support.databases import create_database as create_pg_database
from tests.support.databases import drop_database as drop_pg_database

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Result:
    database: str
    calls: int
    start_s: float
    end_s: float
    batches: int
    submit_us: float

    def line(self) -> str:
        total = self.start_s + self.end_s
        return (
            f"{self.database:<11} {self.calls:>7} calls  "
            f"starts {self.calls / self.start_s:>9,.0f} rows/s  "
            f"ends {self.calls / self.end_s:>9,.0f} rows/s  "
            f"start+end {self.calls / total:>8,.0f} calls/s  "
            f"({self.batches} batches, submit {self.submit_us:.1f} us/op)"
        )


def _operations(calls: int) -> tuple[list[CallStart], list[CallEnd]]:
    starts: list[CallStart] = []
    ends: list[CallEnd] = []
    for index in range(calls):
        record_id = str(uuid.uuid4())
        started_at = T0 + timedelta(milliseconds=index)
        starts.append(
            CallStart(
                record_id=record_id,
                tenant="bench",
                call_id=f"{record_id}@pbx.example",
                direction="outbound",
                source_number="+14155550100",
                source_uri="sip:+14155550100@pbx.example",
                destination_number="+493012345678",
                destination_uri="sip:+493012345678@trunk.example",
                source_addr="127.0.0.1:5070",
                started_at=started_at,
                gateway_instance="bench",
                destination_addr="127.0.0.1:5080",
                b_call_id=f"b-{record_id}@gw.example",
            )
        )
        ends.append(
            CallEnd(
                record_id=record_id,
                ended_at=started_at + timedelta(seconds=90),
                disposition="answered",
                final_status=200,
                hangup_by="caller",
                end_reason="caller hung up",
                media_stats={
                    "a": {"packets_in": 4500, "bytes_in": 774000, "lost": 0, "jitter_ms": 1.2},
                    "b": {"packets_in": 4490, "bytes_in": 772280, "lost": 3, "jitter_ms": 2.4},
                },
                answered_at=started_at + timedelta(seconds=6),
            )
        )
    return starts, ends


async def _phase(writer: RecordWriter, ops: list[CallStart] | list[CallEnd]) -> tuple[float, float]:
    """``(seconds until flushed, seconds spent inside submit())``."""
    began = time.perf_counter()
    for op in ops:
        writer.submit(op)
    submitted = time.perf_counter()
    await writer.flush()
    return time.perf_counter() - began, submitted - began


async def _run(database: str, url: str, calls: int, batch_size: int, max_delay: float) -> Result:
    engine = make_engine(url)
    try:
        await migrate(engine)
        writer = RecordWriter(engine, batch_size=batch_size, max_delay=max_delay)
        await writer.start()
        starts, ends = _operations(calls)
        start_s, start_submit = await _phase(writer, starts)
        end_s, end_submit = await _phase(writer, ends)
        await writer.stop()
        if writer.written != 2 * calls:
            raise RuntimeError(f"{database}: wrote {writer.written} of {2 * calls} operations")
        submit_us = (start_submit + end_submit) / (2 * calls) * 1e6
        return Result(database, calls, start_s, end_s, writer.batches, submit_us)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--max-delay", type=float, default=0.05)
    options = parser.parse_args()

    print(f"batch_size={options.batch_size} max_delay={options.max_delay}s")
    with tempfile.TemporaryDirectory(prefix="callgate-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'calls.sqlite3'}"
        result = asyncio.run(
            _run("sqlite", url, options.calls, options.batch_size, options.max_delay)
        )
        print(result.line())

    try:
        admin_url = postgres_admin_url()
    except PostgresUnavailable as error:
        print(f"postgresql  skipped: {error}")
        return
    database_url = create_pg_database(admin_url)
    try:
        result = asyncio.run(
            _run(
                "postgresql",
                database_url.render_as_string(hide_password=False),
                options.calls,
                options.batch_size,
                options.max_delay,
            )
        )
        print(result.line())
    finally:
        assert database_url.database is not None
        drop_pg_database(admin_url, database_url.database)


if __name__ == "__main__":
    main()
