"""SQLite's stored listing JSON (``calls.listed``, revision 0007): always the row as it is.

The API's pages on SQLite are made of ``calls.listed``. The triggers must
keep it equal to the object SQLite would build from the row's columns now
(:func:`~gateway.store.listing_rows.listing_object`) after every kind of
write the store makes: a call's start, its answer and end, consent fields,
an erasure that hashes the numbers. Rows that existed before the revision
get theirs when it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import alembic_config, make_engine, migrate
from gateway.store.listing_rows import listing_object
from gateway.store.models import CALLS
from gateway.store.tenant_view import Subject, TenantView
from gateway.store.writer import RecordWriter
from tests.unit.store.records import answer, end, new_id, start

CALLER = "+14155550100"
TRIGGERS = {"calls_listed_on_insert", "calls_listed_on_update"}


async def _move_to(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        (command.downgrade if down else command.upgrade)(config, revision)

    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


async def _stored_and_built(engine: AsyncEngine) -> list[tuple[str, str | None, str]]:
    """Each row's id, stored listing, and the listing SQLite builds from its columns now."""
    query = select(CALLS.c.id, text("calls.listed"), listing_object()).order_by(CALLS.c.id)
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(query)]  # type: ignore[misc]


async def _sqlite_objects(engine: AsyncEngine, kind: str) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(
            text("SELECT name FROM sqlite_master WHERE type = :kind"), {"kind": kind}
        )
        return set(found.scalars())


async def _columns(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(text("PRAGMA table_info(calls)"))
        return {row[1] for row in found}


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_the_stored_listing_follows_every_write(sqlite_engine: AsyncEngine) -> None:
    engine = sqlite_engine
    await migrate(engine)
    ringing, answered, erased = new_id(), new_id(), new_id()
    writer = RecordWriter(engine)
    for record_id in (ringing, answered):
        writer.submit(start(record_id, source_number="+14155550111"))
    writer.submit(start(erased, source_number=CALLER))
    writer.submit(answer(answered))
    writer.submit(end(answered, consent_outcome="granted", capture_s=12.25))
    writer.submit(end(erased, disposition="busy", end_reason='said "no" \\ café\n'))
    await writer.stop()
    assert writer.rejected == 0
    await TenantView(engine, "acme").erase_subject(Subject(numbers=(CALLER,)), "subject-token-1")

    rows = await _stored_and_built(engine)

    assert len(rows) == 3
    for record_id, stored, built in rows:
        assert stored == built, record_id
    by_id = {record_id: stored or "" for record_id, stored, _ in rows}
    assert CALLER not in by_id[erased] and "subject-token-1" in by_id[erased]
    assert '"disposition":"answered"' in by_id[answered]
    assert '"capture_s":12.25' in by_id[answered]
    assert '"ended_at":null' in by_id[ringing]


async def test_the_revision_fills_old_rows_and_goes_back_cleanly(
    sqlite_engine: AsyncEngine,
) -> None:
    engine = sqlite_engine
    await _move_to(engine, "0006")
    old = new_id()
    writer = RecordWriter(engine)
    writer.submit(start(old))
    writer.submit(end(old))
    await writer.stop()
    assert "listed" not in await _columns(engine)

    await _move_to(engine, "0007")

    assert await _sqlite_objects(engine, "trigger") >= TRIGGERS
    [(record_id, stored, built)] = await _stored_and_built(engine)
    assert (record_id, stored) == (old, built)

    await _move_to(engine, "0006", down=True)

    assert "listed" not in await _columns(engine)
    assert not TRIGGERS & await _sqlite_objects(engine, "trigger")
    writer = RecordWriter(engine)
    writer.submit(start(new_id()))
    await writer.stop()
    assert (writer.written, writer.rejected) == (1, 0)
