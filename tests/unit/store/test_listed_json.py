"""The stored listing JSON (``calls.listed``, revisions 0007 and 0008): always the row as it is.

The API's pages are made of ``calls.listed``. The triggers (SQLite's and
PostgreSQL's) must keep it equal, byte for byte, to the listing's row as the
API would encode it from the columns (orjson) after every kind of write the
store makes: a call's start, its answer and end, consent fields, an erasure
that hashes the numbers. Rows that existed before the revision get theirs
when it runs, and going back removes the column and the triggers. On SQLite the
record writer sets the object itself, and the triggers write it for every other
statement (revision 0008).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from alembic import command
from sqlalchemy import Connection, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import alembic_config, make_engine, migrate
from gateway.store.listing_rows import LISTED_TRIGGERS, listing_object, stored_listing_ready
from gateway.store.models import CALLS
from gateway.store.prepared import PreparedReads
from gateway.store.tenant_view import CallFilter, Subject, TenantView
from gateway.store.writer import RecordWriter
from tests.support.databases import mark_what_listing_triggers_write
from tests.unit.store.records import answer, end, new_id, start

CALLER = "+14155550100"


async def _move_to(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        (command.downgrade if down else command.upgrade)(config, revision)

    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


async def _stored(engine: AsyncEngine) -> dict[str, str | None]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(CALLS.c.id, text("calls.listed")))
        return {row[0]: row[1] for row in rows}


async def _encoded(engine: AsyncEngine) -> dict[str, str]:
    """Each of acme's calls as the API encodes a listed row from its columns."""
    page = await TenantView(engine, "acme").list_calls(CallFilter(), limit=1000)
    return {row["id"]: orjson.dumps(row).decode() for row in page.rows}


async def _schema_objects(engine: AsyncEngine) -> set[str]:
    """The listing's column and the triggers that write it, where they exist."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            columns = await connection.execute(text("PRAGMA table_info(calls)"))
            triggers = await connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            )
            found = {f"trigger {name}" for name in triggers.scalars()}
            return found | {f"column {row[1]}" for row in columns if row[1] == "listed"}
        columns = await connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'calls' AND column_name = 'listed'"
            )
        )
        triggers = await connection.execute(
            text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'calls'::regclass")
        )
        names = {f"trigger {name}" for name in triggers.scalars() if "listed" in name}
        return names | {f"column {name}" for name in columns.scalars()}


@pytest.fixture
async def bare_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_the_stored_listing_follows_every_write(db_engine: AsyncEngine) -> None:
    engine = db_engine
    ringing, answered, erased = new_id(), new_id(), new_id()
    writer = RecordWriter(engine)
    for record_id in (ringing, answered):
        writer.submit(start(record_id, source_number="+14155550111"))
    writer.submit(start(erased, source_number=CALLER))
    writer.submit(answer(answered))
    writer.submit(end(answered, consent_outcome="granted", capture_s=12.25))
    writer.submit(end(erased, disposition="busy", end_reason='said "no" \\ café\n\x01'))
    await writer.stop()
    assert writer.rejected == 0
    await TenantView(engine, "acme").erase_subject(Subject(numbers=(CALLER,)), "subject-token-1")

    stored = await _stored(engine)

    assert stored == await _encoded(engine)
    assert CALLER not in (stored[erased] or "") and "subject-token-1" in (stored[erased] or "")
    assert '"disposition":"answered"' in (stored[answered] or "")
    assert '"duration_s":65.0,' in (stored[answered] or "")  # a whole float keeps its ".0"
    assert '"ended_at":null' in (stored[ringing] or "")
    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            built = await connection.execute(select(CALLS.c.id, listing_object()))
            assert dict(built.all()) == stored  # what SQLite builds from the row now


async def test_the_revision_fills_old_rows_and_goes_back_cleanly(
    bare_engine: AsyncEngine,
) -> None:
    engine = bare_engine
    await _move_to(engine, "0006")
    old = new_id()
    writer = RecordWriter(engine)
    writer.submit(start(old))
    writer.submit(end(old))
    await writer.stop()
    assert not await _schema_objects(engine)

    await _move_to(engine, "0007")

    assert "column listed" in await _schema_objects(engine)
    assert len(await _schema_objects(engine)) >= 2  # and its trigger(s)
    assert await _stored(engine) == await _encoded(engine)

    await _move_to(engine, "0006", down=True)

    assert not await _schema_objects(engine)
    writer = RecordWriter(engine)
    writer.submit(start(new_id()))
    await writer.stop()
    assert (writer.written, writer.rejected) == (1, 0)


async def test_pages_never_come_from_a_listing_whose_triggers_are_gone(
    db_engine: AsyncEngine,
) -> None:
    """A table a later migration rebuilt would lose its triggers and keep a column that no
    longer follows the rows: pages are then encoded from the columns, not read stale."""
    engine = db_engine
    assert await stored_listing_ready(engine)
    record_id = new_id()
    writer = RecordWriter(engine)
    writer.submit(start(record_id, source_number=CALLER))
    await writer.stop()
    trigger_drops = {
        "sqlite": [f"DROP TRIGGER {name}" for name in LISTED_TRIGGERS["sqlite"]],
        "postgresql": ["DROP TRIGGER calls_listed ON calls"],
    }[engine.dialect.name]
    async with engine.begin() as connection:
        for statement in trigger_drops:
            await connection.execute(text(statement))
        await connection.execute(
            update(CALLS).where(CALLS.c.id == record_id).values(source_number="+14155550177")
        )
    assert CALLER in ((await _stored(engine))[record_id] or "")  # stale now

    assert not await stored_listing_ready(engine)
    reads = PreparedReads(engine)
    try:
        page = await TenantView(engine, "acme", prepared=reads).list_calls_json(
            CallFilter(), limit=10
        )
    finally:
        await reads.close()
    listed = orjson.loads(page.json)
    assert [row["source_number"] for row in listed] == ["+14155550177"]


async def test_on_sqlite_the_writer_sets_each_listing_and_triggers_write_the_rest(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        await migrate(engine)
        await mark_what_listing_triggers_write(engine)
        mine, through_engine = [new_id() for _ in range(4)], new_id()
        writer = RecordWriter(engine, max_delay=0)
        await writer.start()
        for record_id in mine:  # inserts, then updates of stored rows in later batches
            writer.submit(start(record_id, source_number=CALLER))
        await writer.flush()
        writer.submit(answer(mine[0]))
        writer.submit(end(mine[1], disposition="busy", end_reason='said "no" \\ café\n\x01'))
        await writer.flush()
        writer.submit(end(mine[0], capture_s=7, consent_outcome="granted"))
        await writer.stop()
        others = RecordWriter(engine, own_sqlite_connection=False)
        others.submit(start(through_engine))
        await others.stop()

        stored, encoded = await _stored(engine), await _encoded(engine)
        assert {i: stored[i] for i in mine} == {i: encoded[i] for i in mine}
        assert '"capture_s":7.0}' in (stored[mine[0]] or "")  # an int bound for a REAL column
        assert stored[through_engine] == "trigger"

        async with engine.begin() as connection:  # other writers: a listed column, another
            await connection.execute(
                update(CALLS).where(CALLS.c.id == mine[2]).values(end_reason="operator")
            )
            await connection.execute(
                update(CALLS).where(CALLS.c.id == mine[3]).values(media_stats={"a": {}})
            )
        stored = await _stored(engine)
        assert stored[mine[2]] == "trigger"
        assert stored[mine[3]] == encoded[mine[3]]
    finally:
        await engine.dispose()


async def test_revision_0008_goes_back_to_triggers_that_always_write(
    bare_engine: AsyncEngine,
) -> None:
    engine = bare_engine
    await _move_to(engine, "head")
    await _move_to(engine, "0007", down=True)
    triggers = await _trigger_sql(engine)
    if engine.dialect.name == "sqlite":
        assert triggers and not any(" WHEN " in sql for sql in triggers)
    writer = RecordWriter(engine)
    record_id = new_id()
    writer.submit(start(record_id))
    writer.submit(end(record_id))
    await writer.stop()
    assert (await _stored(engine))[record_id] == (await _encoded(engine))[record_id]

    await _move_to(engine, "head")

    if engine.dialect.name == "sqlite":
        assert all(" WHEN NEW.listed IS " in sql for sql in await _trigger_sql(engine))
    else:
        assert await _trigger_sql(engine) == triggers  # PostgreSQL's is not 0008's business


async def _trigger_sql(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            found = await connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            )
        else:
            found = await connection.execute(
                text("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'calls_listed'")
            )
        return list(found.scalars())
