"""The record writer on a SQLite file: batches on its own ``sqlite3`` connection, rows the
same as through the engine."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, String, Table, event
from sqlalchemy.dialects import sqlite

from gateway.store.engine import make_engine, migrate
from gateway.store.models import CALLS
from gateway.store.sqlite_writes import SqliteStatements
from gateway.store.tenant_view import CallFilter, TenantView
from gateway.store.writer import CallEnd, CallUpdate, RecordWriter
from tests.support.databases import mark_what_listing_triggers_write
from tests.unit.store.records import (
    NOTICE_SHA256,
    POLICY_VERSION,
    RULES,
    T0,
    answer,
    consent_event,
    end,
    new_id,
    recording,
    start,
)


def _workload(ids: list[str]) -> Iterator[Any]:
    """Starts, answers, trails, recordings (one analysed) and ends, over several batches."""
    for index, record_id in enumerate(ids):
        yield start(
            record_id,
            consent_mode="opt_in",
            consent_parties="all",
            consent_rules=RULES,
            policy_version=POLICY_VERSION,
        )
        if index % 3:
            yield answer(record_id, after_s=2.25, b_call_id=f"b-{record_id}")
        yield consent_event(record_id, 1)
        yield consent_event(record_id, 2, state="granted", previous="notified")
        if index % 4 == 0:
            yield recording(record_id, recording_id=f"rec-{record_id}", analyse=index % 8 == 0)
        yield end(
            record_id,
            after_s=61.5 + index,
            disposition="answered" if index % 3 else "no_answer",
            consent_outcome="granted",
            capture_s=12 + index,  # an int for a REAL column: stored as a float all the same
            notice_sha256=NOTICE_SHA256,
        )


async def _write(path: Path, ids: list[str], *, own_connection: bool) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        await migrate(engine)
        writer = RecordWriter(
            engine, batch_size=7, max_delay=0, own_sqlite_connection=own_connection
        )
        await writer.start()
        for op in _workload(ids):
            writer.submit(op)
        await writer.stop()
        assert writer.rejected == 0 and writer.batches > 5
    finally:
        await engine.dispose()


def _rows(path: Path, table: str, order: str, leave_out: tuple[str, ...] = ()) -> list[Any]:
    with closing(sqlite3.connect(path)) as connection:
        cursor = connection.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [column[0] for column in cursor.description]
        return [
            {name: value for name, value in zip(names, row, strict=True) if name not in leave_out}
            for row in cursor
        ]


async def test_both_paths_store_the_same_rows_to_the_byte(tmp_path: Path) -> None:
    ids = [new_id() for _ in range(24)]
    own, engine_path = tmp_path / "own.sqlite3", tmp_path / "engine.sqlite3"
    await _write(own, ids, own_connection=True)
    await _write(engine_path, ids, own_connection=False)

    for table, order, leave_out in [
        ("calls", "id", ()),
        ("consent_events", "call_record_id, seq", ("id",)),
        ("recordings", "id", ()),
        ("analysis_jobs", "recording_id", ("id",)),  # a new id each time it is queued
    ]:
        stored = _rows(own, table, order, leave_out)
        assert stored == _rows(engine_path, table, order, leave_out), table
        assert stored, table
    calls = _rows(own, "calls", "id")
    assert {call["capture_s"] for call in calls} == {float(12 + i) for i in range(24)}
    assert all(call["listed"] is not None for call in calls)


async def test_a_sqlite_file_is_written_beside_the_engine(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    await migrate(engine)
    through_engine: list[str] = []

    def seen(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        through_engine.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        writer = RecordWriter(engine, batch_size=5, max_delay=0)
        await writer.start()
        ids = [new_id() for _ in range(12)]
        for record_id in ids:
            writer.submit(start(record_id))
            writer.submit(end(record_id))
        await writer.stop()
        assert through_engine == []
        async with engine.connect() as connection:
            stored = (await connection.execute(CALLS.select())).mappings().all()
        assert {row["id"] for row in stored} == set(ids)
        assert {row["disposition"] for row in stored} == {"answered"}
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        await engine.dispose()


@pytest.fixture
def memory_calls() -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as connection:
        connection.execute("CREATE TABLE calls (id TEXT PRIMARY KEY, tenant TEXT)")
        yield connection


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9, 31])
def test_lookups_of_any_size_find_each_row_once(
    memory_calls: sqlite3.Connection, count: int
) -> None:
    rows = [(f"id-{i}", f"t{i % 3}") for i in range(40)]
    memory_calls.executemany("INSERT INTO calls VALUES (?, ?)", rows)
    shapes: dict[Any, Any] = {}
    statements = SqliteStatements(memory_calls, sqlite.dialect(), shapes)
    keys = [f"id-{i}" for i in range(0, 2 * count, 2)] + ["id-missing"]

    found = statements.lookup(CALLS, ("id", "tenant"), "id", keys)

    assert sorted(found) == sorted(row for row in rows if row[0] in keys)
    assert len(shapes) == 1  # padded to a power of two: one compiled shape per size class


def test_defaults_computed_in_python_are_filled_in(memory_calls: sqlite3.Connection) -> None:
    issued = iter(range(100))
    table = Table(
        "calls",
        MetaData(),
        Column("id", String, primary_key=True, default=lambda: f"made-{next(issued)}"),
        Column("tenant", String),
    )
    statements = SqliteStatements(memory_calls, sqlite.dialect(), {})

    statements.insert(table, [{"tenant": "acme"}, {"tenant": "globex"}])
    statements.insert(table, [{"id": "given", "tenant": "initech"}])

    stored = memory_calls.execute("SELECT id, tenant FROM calls ORDER BY tenant").fetchall()
    assert stored == [("made-0", "acme"), ("made-1", "globex"), ("given", "initech")]


_INSTANT_OFFSETS = st.floats(min_value=0, max_value=10**7, allow_nan=False).map(
    lambda seconds: timedelta(microseconds=round(seconds * 1_000_000))
)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def _calls(draw: st.DrawFn) -> list[Any]:
    """Operations of a few calls with arbitrary listed values, over three batches."""
    batches: list[list[Any]] = [[], [], []]
    for _ in range(draw(st.integers(1, 4))):
        record_id = new_id()
        started = T0 + draw(_INSTANT_OFFSETS)
        batches[0].append(
            start(record_id, at=started, source_number=draw(st.none() | _TEXT), b_call_id=None)
        )
        answered = started + draw(_INSTANT_OFFSETS) if draw(st.booleans()) else None
        if answered is not None and draw(st.booleans()):
            batches[1].append(CallUpdate(record_id=record_id, answered_at=answered))
        fields = {
            "final_status": draw(st.integers(100, 699)),
            "end_reason": draw(st.none() | _TEXT),
            "capture_s": draw(
                st.none()
                | st.integers(0, 10**9)
                | st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
            ),
        }
        ended = max(started, answered or started) + draw(_INSTANT_OFFSETS)
        batches[2].append(
            CallEnd(record_id=record_id, ended_at=ended, disposition="answered",
                    hangup_by="caller", answered_at=answered, **fields)
        )  # fmt: skip
    return batches


async def _listings_against_columns(path: Path, batches: list[list[Any]]) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        await migrate(engine)
        await mark_what_listing_triggers_write(engine)
        writer = RecordWriter(engine, max_delay=0)
        await writer.start()
        for ops in batches:
            for op in ops:
                writer.submit(op)
            await writer.flush()
        await writer.stop()
        assert writer.rejected == 0
        page = await TenantView(engine, "acme").list_calls(CallFilter(), limit=100)
        encoded = {row["id"]: orjson.dumps(row).decode() for row in page.rows}
    finally:
        await engine.dispose()
    with closing(sqlite3.connect(path)) as connection:
        stored = dict(connection.execute("SELECT id, listed FROM calls").fetchall())
    assert stored == encoded


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_calls())
def test_the_listing_the_writer_sets_is_the_apis_encoding(
    tmp_path: Path, batches: list[list[Any]]
) -> None:
    """Whatever the values, the object the writer binds is the API's encoding of the
    columns it stored, byte for byte (what the triggers write would show as ``trigger``)."""
    path = tmp_path / f"{new_id()}.sqlite3"
    asyncio.run(_listings_against_columns(path, batches))
