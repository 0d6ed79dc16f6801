"""Engine construction: URL mapping, SQLite pragmas, session factory."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import (
    POSTGRES_DRIVER,
    SQLITE_DRIVER,
    async_url,
    make_engine,
    migrate,
    session_factory,
)
from gateway.store.models import CallRecord
from tests.unit.store.records import INSTANCE, T0


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///var/calls.sqlite3", SQLITE_DRIVER),
        ("sqlite+aiosqlite:///var/calls.sqlite3", SQLITE_DRIVER),
        ("postgresql://gw@db.example/calls", POSTGRES_DRIVER),
        ("postgres://gw@db.example/calls", POSTGRES_DRIVER),
        ("postgresql+asyncpg://gw@db.example/calls", POSTGRES_DRIVER),
    ],
)
def test_plain_urls_map_to_async_drivers(given: str, driver: str) -> None:
    mapped = async_url(given)
    original = make_url(given)
    assert mapped.drivername == driver
    assert mapped.set(drivername=original.drivername) == original


def test_postgres_url_keeps_credentials_host_and_database() -> None:
    mapped = async_url("postgresql://gw:secret@db.example:6432/calls")
    assert (mapped.username, mapped.password, mapped.host, mapped.port, mapped.database) == (
        "gw",
        "secret",
        "db.example",
        6432,
        "calls",
    )


@pytest.mark.parametrize("given", ["mysql://gw@db/calls", "postgresql+psycopg2://gw@db/calls"])
def test_unsupported_database_is_refused_with_reason(given: str) -> None:
    with pytest.raises(ValueError, match="unsupported store URL scheme"):
        make_engine(given)


def test_text_that_is_not_a_url_is_refused_with_reason() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        make_engine("no scheme here")


async def test_sqlite_creates_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "calls.sqlite3"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=1234)
    try:
        assert path.parent.is_dir()
        async with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
            assert (await pragma("PRAGMA synchronous")).scalar() == 1  # NORMAL
            assert (await pragma("PRAGMA busy_timeout")).scalar() == 1234
            assert (await pragma("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await engine.dispose()
    assert path.is_file()


def test_negative_busy_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}", busy_timeout_ms=-1)


async def test_in_memory_sqlite_needs_no_directory() -> None:
    engine = make_engine("sqlite://")
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(CallRecord))
        assert count == 0
    finally:
        await engine.dispose()


async def test_orm_session_round_trips_a_record(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    async with sessions.begin() as session:
        session.add(
            CallRecord(
                id="r-1",
                tenant="acme",
                call_id="c-1@pbx",
                direction="inbound",
                source_uri="sip:a@trunk",
                destination_uri="sip:b@pbx",
                source_addr="127.0.0.1:5060",
                started_at=T0,
                gateway_instance=INSTANCE,
                media_stats={"a": {"packets_in": 1}},
            )
        )
    async with sessions() as session:
        record = await session.get(CallRecord, "r-1")
        assert record is not None
        assert record.started_at == T0
        assert record.media_stats == {"a": {"packets_in": 1}}
        assert record.ended_at is None


async def test_orm_record_without_id_gets_a_uuid4(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    async with sessions.begin() as session:
        record = CallRecord(
            tenant="acme",
            call_id="c-2@pbx",
            direction="outbound",
            source_uri="sip:a@pbx",
            destination_uri="sip:b@trunk",
            source_addr="127.0.0.1:5070",
            started_at=T0,
            gateway_instance=INSTANCE,
        )
        session.add(record)
    assert uuid.UUID(record.id).version == 4


async def test_json_columns_take_what_orjson_refuses_through_the_standard_library() -> None:
    """JSON columns go through orjson; integers past 64 bits fall back to the standard
    library on the way in, and rows it wrote with NaN (which orjson refuses) on the way out."""
    engine = make_engine("sqlite://")
    table = Table("blobs", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
            await connection.execute(
                insert(table), [{"id": 1, "doc": {"é": [1, 2.5]}}, {"id": 2, "doc": {"n": 2**70}}]
            )
            await connection.exec_driver_sql("INSERT INTO blobs VALUES (3, '{\"x\": NaN}')")
            stored = dict((await connection.execute(text("SELECT id, doc FROM blobs"))).all())
            read = dict((await connection.execute(select(table.c.id, table.c.doc))).all())
    finally:
        await engine.dispose()
    assert stored[1] == '{"é":[1,2.5]}', "orjson's compact UTF-8"
    assert read[1] == {"é": [1, 2.5]}
    assert read[2] == {"n": 2**70}
    assert math.isnan(read[3]["x"])
