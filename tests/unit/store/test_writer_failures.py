"""The record writer while the database fails: retried with backoff, nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import make_engine, migrate
from gateway.store.models import CALLS
from gateway.store.writer import RecordWriter
from tests.support.databases import connect_admin, run_blocking
from tests.unit.store.records import answer, end, new_id, start

GUARD_S = 20.0
"""Upper bound on waiting for the writer to hit an error; a hang guard, not a timing check."""


async def _wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD_S):
        while not condition():
            await asyncio.sleep(0.005)


async def _drain(writer: RecordWriter) -> None:
    async with asyncio.timeout(GUARD_S):
        await writer.flush()
        await writer.stop()


async def _closed_calls(engine: AsyncEngine) -> dict[str, float]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(CALLS.c.id, CALLS.c.duration_s).where(CALLS.c.ended_at.is_not(None))
        )
        return {record_id: duration for record_id, duration in rows}


def _submit_calls(writer: RecordWriter, count: int) -> list[str]:
    ids = [new_id() for _ in range(count)]
    for record_id in ids:
        writer.submit(start(record_id))
        writer.submit(answer(record_id, after_s=1))
        writer.submit(end(record_id, after_s=31))
    return ids


async def test_missing_table_is_retried_until_it_is_back(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as connection:
        await connection.execute(text("ALTER TABLE calls RENAME TO calls_away"))
    writer = RecordWriter(db_engine, batch_size=25, retry_initial=0.01, retry_max=0.05)
    await writer.start()
    ids = _submit_calls(writer, 20)

    await _wait_until(lambda: writer.failures >= 2)
    assert writer.written == 0 and writer.pending == 60
    async with db_engine.begin() as connection:
        await connection.execute(text("ALTER TABLE calls_away RENAME TO calls"))
    await _drain(writer)

    closed = await _closed_calls(db_engine)
    assert set(closed) == set(ids)
    assert all(duration == pytest.approx(31.0) for duration in closed.values())
    assert (writer.written, writer.rejected) == (60, 0)


async def test_locked_sqlite_file_is_retried_until_released(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=10)
    await migrate(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        writer = RecordWriter(engine, retry_initial=0.01, retry_max=0.05)
        await writer.start()
        ids = _submit_calls(writer, 30)
        await _wait_until(lambda: writer.failures >= 2)
        assert writer.written == 0
        holder.execute("ROLLBACK")
        await _drain(writer)
        assert set(await _closed_calls(engine)) == set(ids)
        assert writer.rejected == 0
    finally:
        holder.close()
        await engine.dispose()


class _BackendKiller:
    """Terminates the server backend of the connection that runs a matching statement.

    The kill happens from a separate connection while the statement is about
    to be sent, as when an operator or a failover ends the session mid-batch.
    """

    def __init__(self, engine: AsyncEngine, admin_url: Any, verb: str, times: int) -> None:
        self.engine = engine
        self.admin_url = admin_url
        self.verb = verb
        self.remaining = times
        self.killed: list[int] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._on_execute)

    def close(self) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.remaining <= 0 or not statement.startswith(self.verb) or "calls" not in statement:
            return
        self.remaining -= 1
        pid = connection.connection.driver_connection.get_server_pid()

        async def terminate() -> None:
            admin = await connect_admin(self.admin_url)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
            finally:
                await admin.close()

        run_blocking(terminate)
        self.killed.append(pid)


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(pg_url)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("verb", ["INSERT", "UPDATE"])
async def test_connection_killed_during_a_batch_is_retried(
    pg_engine: AsyncEngine, pg_url: str, verb: str
) -> None:
    writer = RecordWriter(pg_engine, retry_initial=0.01, retry_max=0.05)
    await writer.start()
    if verb == "UPDATE":
        # the rows exist first, so the batch that loses its connection changes stored rows
        ids = [new_id() for _ in range(40)]
        for record_id in ids:
            writer.submit(start(record_id))
        await writer.flush()
    killer = _BackendKiller(pg_engine, make_url(pg_url), verb, times=2)
    try:
        if verb == "UPDATE":
            for record_id in ids:
                writer.submit(end(record_id, after_s=31))
        else:
            ids = _submit_calls(writer, 40)
        await _drain(writer)
    finally:
        killer.close()

    assert len(killer.killed) == 2
    assert writer.failures >= 2
    closed = await _closed_calls(pg_engine)
    assert set(closed) == set(ids)
    assert all(duration == pytest.approx(31.0) for duration in closed.values())
    async with pg_engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(CALLS)) == len(ids)
