"""Migrations: idempotent, safe to run concurrently, and matching the models."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Index, MetaData, Table, Text, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import current_revision, head_revision, make_engine, migrate
from gateway.store.models import Base, in_models

REPO_ROOT = Path(__file__).resolve().parents[3]

MIGRATE_ON_GO = """
import asyncio, sys
from gateway.store.engine import make_engine, migrate

async def main() -> None:
    engine = make_engine(sys.argv[1])
    try:
        async with engine.connect():
            pass
        print("ready", flush=True)
        sys.stdin.readline()
        await migrate(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def _schema_differences(engine: AsyncEngine, metadata: MetaData) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": in_models}
        )
        return compare_metadata(context, metadata)

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_fresh_database_is_at_no_revision_until_migrated(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert await current_revision(engine) is None
        await migrate(engine)
        assert await current_revision(engine) == head_revision()
        assert {"calls", "alembic_version"} <= await _tables(engine)
    finally:
        await engine.dispose()


async def test_migrating_again_changes_nothing(db_engine: AsyncEngine) -> None:
    before = await _tables(db_engine)
    await migrate(db_engine)
    await migrate(db_engine)
    assert await current_revision(db_engine) == head_revision()
    assert await _tables(db_engine) == before


async def test_gateways_starting_together_migrate_once(db_url: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE_ON_GO,
            db_url,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    async with asyncio.timeout(60):
        for process in processes:
            assert process.stdout is not None
            assert await process.stdout.readline() == b"ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        outcomes = [await process.communicate() for process in processes]
    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    engine = make_engine(db_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_models(db_engine: AsyncEngine) -> None:
    assert await _schema_differences(db_engine, Base.metadata) == []


async def test_schema_comparison_notices_a_model_the_migrations_lack(
    db_engine: AsyncEngine,
) -> None:
    extended = MetaData(naming_convention=dict(Base.metadata.naming_convention))
    for table in Base.metadata.tables.values():
        table.to_metadata(extended)
    calls = extended.tables["calls"]
    calls.append_column(Column("retention_until", Text(), nullable=True))
    Index("ix_calls_retention_until", calls.c.retention_until)
    Table("speaker_labels", extended, Column("id", Text(), primary_key=True))

    differences = await _schema_differences(db_engine, extended)

    kinds = {difference[0] if isinstance(difference, tuple) else None for difference in differences}
    assert {"add_column", "add_index", "add_table"} <= kinds
