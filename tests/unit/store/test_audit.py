"""The audit log: reads' entries in batches, beside a SQLite file store in a file of
their own; changes' entries in the store; :func:`audit_entries` reading both."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.audit import (
    READ_LOG_SCHEMA,
    AuditBuffer,
    audit_entries,
    open_read_log,
    read_log_path,
    write_audit,
)
from gateway.store.engine import make_engine, migrate
from gateway.store.models import AUDIT_LOG


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(AUDIT_LOG))).scalar_one()


def test_the_read_log_sits_beside_a_sqlite_file_only(tmp_path: Path) -> None:
    beside = make_engine(f"sqlite+aiosqlite:///{tmp_path}/store/callgate.sqlite")
    no_suffix = make_engine(f"sqlite:///{tmp_path}/calls")
    in_memory = make_engine("sqlite://")
    postgres = make_engine("postgresql://callgate@127.0.0.1/callgate")
    assert read_log_path(beside) == tmp_path / "store" / "callgate.read-audit.sqlite"
    assert read_log_path(no_suffix) == tmp_path / "calls.read-audit.sqlite"
    assert read_log_path(in_memory) is None
    assert read_log_path(postgres) is None


async def test_reads_go_beside_the_store_and_changes_into_it(db_engine: AsyncEngine) -> None:
    log_engine = await open_read_log(db_engine)
    on_sqlite = db_engine.dialect.name == "sqlite"
    assert (log_engine is db_engine) is not on_sqlite
    try:
        async with db_engine.begin() as connection:
            await write_audit(connection, tenant="acme", key_id="k1", action="policy.update")
        reads = AuditBuffer(log_engine, max_delay=0.01)
        for n in range(3):
            detail = {"recording": f"r{n}", "note": "é\u2028"} if n else None
            reads.add(
                tenant="acme", key_id="k2", action="call.read", target=f"call-{n}", detail=detail
            )
        reads.add(tenant="globex", key_id="k3", action="calls.list", detail={"rows": 7})
        async with db_engine.begin() as connection:  # made after the reads, written before
            await write_audit(connection, tenant="acme", key_id="k1", action="subject.erase")
        await reads.close()
        assert reads.written == 4
        if on_sqlite:
            assert await _count(db_engine) == 2
            assert await _count(log_engine) == 4
        entries = await audit_entries(db_engine, "acme")
    finally:
        if log_engine is not db_engine:
            await log_engine.dispose()
    assert [(e["action"], e["target"], e["key_id"]) for e in entries] == [
        ("policy.update", None, "k1"),
        ("call.read", "call-0", "k2"),
        ("call.read", "call-1", "k2"),
        ("call.read", "call-2", "k2"),
        ("subject.erase", None, "k1"),
    ]
    assert [e["detail"] for e in entries] == [
        None,
        None,
        {"recording": "r1", "note": "é\u2028"},
        {"recording": "r2", "note": "é\u2028"},
        None,
    ]
    assert all(datetime.fromisoformat(e["at"]).utcoffset() == timedelta(0) for e in entries)


async def test_processes_opening_the_read_log_together_make_it_once(tmp_path: Path) -> None:
    engines = [make_engine(f"sqlite:///{tmp_path}/callgate.sqlite") for _ in range(4)]
    await migrate(engines[0])
    try:
        opened = await asyncio.gather(*(open_read_log(engine) for engine in engines))
        for n, log_engine in enumerate(opened):
            reads = AuditBuffer(log_engine)
            reads.add(tenant="acme", key_id=f"k{n}", action="calls.list")
            await reads.close()
            await log_engine.dispose()
        entries = await audit_entries(engines[0], "acme")
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(e["key_id"] for e in entries) == ["k0", "k1", "k2", "k3"]


async def test_entries_wait_while_their_table_cannot_be_written(db_engine: AsyncEngine) -> None:
    log_engine = await open_read_log(db_engine)
    try:
        async with log_engine.begin() as connection:
            await connection.exec_driver_sql("ALTER TABLE audit_log RENAME TO audit_log_away")
        reads = AuditBuffer(log_engine, max_delay=0.01)
        reads.add(tenant="acme", key_id="k", action="call.read", target="c1")
        reads.add(tenant="acme", key_id="k", action="call.read", target="c2")
        await reads.flush()  # no table: the entries wait for the next try
        assert reads.written == 0
        async with log_engine.begin() as connection:
            await connection.exec_driver_sql("ALTER TABLE audit_log_away RENAME TO audit_log")
        await reads.close()
        assert reads.written == 2
        found = await audit_entries(db_engine, "acme")
    finally:
        if log_engine is not db_engine:
            await log_engine.dispose()
    assert [e["target"] for e in found] == ["c1", "c2"]  # once each, in order


async def test_a_read_log_of_another_shape_stops_start_up(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/callgate.sqlite")
    try:
        await (await open_read_log(engine)).dispose()
        log_engine = await open_read_log(engine)
        async with log_engine.begin() as connection:
            version = (await connection.exec_driver_sql("PRAGMA user_version")).scalar_one()
            assert version == READ_LOG_SCHEMA
            await connection.exec_driver_sql(f"PRAGMA user_version = {READ_LOG_SCHEMA + 1}")
        await log_engine.dispose()
        with pytest.raises(RuntimeError, match=r"callgate\.read-audit\.sqlite: its audit_log"):
            await open_read_log(engine)
    finally:
        await engine.dispose()


def test_the_read_logs_shape_number_changes_with_the_table() -> None:
    """Shape 1 is ``audit_log`` as revision 0003 made it: a change to the table must
    come with a new :data:`READ_LOG_SCHEMA` (and the read-audit file's upgrade)."""
    shape_1 = [
        ("id", "INTEGER"),
        ("at", "DATETIME"),
        ("tenant", "TEXT"),
        ("key_id", "TEXT"),
        ("action", "TEXT"),
        ("target", "TEXT"),
        ("detail", "JSON"),
    ]
    shape = [(column.name, str(column.type.compile(sqlite.dialect()))) for column in AUDIT_LOG.c]
    assert READ_LOG_SCHEMA == 1 and shape == shape_1


async def test_reading_the_log_makes_no_read_audit_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/callgate.sqlite")
    try:
        await migrate(engine)
        assert await audit_entries(engine, "acme") == []
        assert not (tmp_path / "callgate.read-audit.sqlite").exists()
    finally:
        await engine.dispose()


async def test_an_in_memory_store_keeps_reads_in_its_own_log() -> None:
    engine = make_engine("sqlite://")
    try:
        assert await open_read_log(engine) is engine
    finally:
        await engine.dispose()
