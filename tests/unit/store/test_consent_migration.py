"""Revision 0002 (consent): up from 0001 with rows in place, down again, and up once more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import alembic_config, current_revision, make_engine
from gateway.store.models import CALLS, CONSENT_EVENTS, RECORDINGS, Base
from gateway.store.writer import RecordWriter
from tests.unit.store.records import T0, consent_event, end, new_id, recording, start
from tests.unit.store.test_migrations import _schema_differences

CONSENT_COLUMNS = {
    "consent_mode",
    "consent_parties",
    "consent_rules",
    "policy_version",
    "consent_outcome",
    "notice_sha256",
    "capture_s",
}
NEW_TABLES = {"consent_events", "recordings"}


async def _move_to(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)

    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


async def _schema(engine: AsyncEngine) -> dict[str, Any]:
    def read(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        return {
            "tables": tables,
            "calls": {column["name"] for column in inspector.get_columns("calls")},
            "calls_indexes": {index["name"] for index in inspector.get_indexes("calls")},
        }

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def _insert_call_at_0001(engine: AsyncEngine, record_id: str) -> None:
    """A row as revision 0001 knew it: only the columns that existed then."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO calls (id, tenant, call_id, direction, source_uri, destination_uri, "
                "source_addr, started_at, gateway_instance) VALUES (:id, 'acme', :call_id, "
                "'inbound', 'sip:a@trunk', 'sip:b@pbx', '127.0.0.1:5060', :started_at, 'gw')"
            ),
            {"id": record_id, "call_id": f"{record_id}@pbx", "started_at": T0},
        )


@pytest.fixture
async def engine_at_0001(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    try:
        await _move_to(engine, "0001")
        yield engine
    finally:
        await engine.dispose()


async def test_upgrade_keeps_old_rows_with_unknown_consent(engine_at_0001: AsyncEngine) -> None:
    engine = engine_at_0001
    old = new_id()
    await _insert_call_at_0001(engine, old)
    before = await _schema(engine)
    assert not before["tables"] & NEW_TABLES
    assert not before["calls"] & CONSENT_COLUMNS

    await _move_to(engine, "0002")

    after = await _schema(engine)
    assert await current_revision(engine) == "0002"
    assert after["tables"] >= NEW_TABLES
    assert after["calls"] == before["calls"] | CONSENT_COLUMNS
    async with engine.connect() as connection:
        row = (await connection.execute(select(CALLS).where(CALLS.c.id == old))).mappings().one()
    assert row["started_at"] == T0
    assert all(row[name] is None for name in CONSENT_COLUMNS)


async def test_downgrade_drops_what_0002_added_and_keeps_the_calls(
    engine_at_0001: AsyncEngine,
) -> None:
    engine = engine_at_0001
    at_0001 = await _schema(engine)
    await _move_to(engine, "0002")
    record_id = new_id()
    writer = RecordWriter(engine)
    writer.submit(start(record_id, consent_mode="opt_in", consent_parties="all"))
    writer.submit(consent_event(record_id, 1))
    writer.submit(recording(record_id))
    writer.submit(end(record_id, consent_outcome="granted", capture_s=12.5))
    await writer.stop()
    assert (writer.written, writer.rejected) == (4, 0)

    await _move_to(engine, "0001", down=True)

    assert await current_revision(engine) == "0001"
    assert await _schema(engine) == at_0001
    async with engine.connect() as connection:
        kept = await connection.execute(text("SELECT id, ended_at FROM calls"))
        rows = kept.all()
    assert [row[0] for row in rows] == [record_id]
    assert rows[0][1] is not None


async def test_down_and_up_again_matches_the_models(engine_at_0001: AsyncEngine) -> None:
    engine = engine_at_0001
    await _move_to(engine, "0002")
    await _move_to(engine, "0001", down=True)
    await _move_to(engine, "head")

    assert await _schema_differences(engine, Base.metadata) == []


async def test_deleting_a_call_deletes_its_trail_and_recordings(db_engine: AsyncEngine) -> None:
    kept, erased = new_id(), new_id()
    writer = RecordWriter(db_engine)
    for record_id in (kept, erased):
        writer.submit(start(record_id))
        for seq in (1, 2):
            writer.submit(consent_event(record_id, seq, at=T0 + timedelta(seconds=seq)))
        writer.submit(recording(record_id))
    await writer.stop()

    async with db_engine.begin() as connection:
        await connection.execute(delete(CALLS).where(CALLS.c.id == erased))
    async with db_engine.connect() as connection:
        events = await connection.execute(select(CONSENT_EVENTS.c.call_record_id))
        files = await connection.execute(select(RECORDINGS.c.call_record_id))
        assert set(events.scalars()) == {kept}
        assert set(files.scalars()) == {kept}


async def test_a_trail_needs_its_call(db_engine: AsyncEngine) -> None:
    event = consent_event(new_id(), 1)
    with pytest.raises(IntegrityError):
        async with db_engine.begin() as connection:
            await connection.execute(CONSENT_EVENTS.insert(), [event.row()])
    async with db_engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(CONSENT_EVENTS))
    assert count == 0
