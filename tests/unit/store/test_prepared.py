"""Prepared reads (statements compiled once, run on the driver) against SQLAlchemy's own path.

The listing the API serves through :class:`~gateway.store.prepared.PreparedReads`
must be the listing SQLAlchemy gives, byte for byte once encoded as the API
encodes it, on SQLite and on PostgreSQL, for every filter shape and every
page; and a statement prepared for one tenant must never answer for another.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from sqlalchemy import column, insert, select, table, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.store.prepared as prepared_module
from gateway.store.listing_rows import instant_of, sqlite_rfc3339
from gateway.store.models import CALLS
from gateway.store.prepared import PreparedReads, ReadTimeout
from gateway.store.tenant_view import CallFilter, PageKey, TenantView
from tests.unit.store.records import new_id

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NUMBERS = ("+14155550100", "+14155550101", "+493012345678")
AWKWARD_TEXT = 'said "bye" \\ to café ☎\n\t\x01\x1f\x7f\u2028/ </script>'
"""Text JSON must escape (quotes, backslash, control characters) or may leave as it is."""


def call_row(rng: random.Random, tenant: str, index: int) -> dict[str, Any]:
    # whole seconds (no fraction), milliseconds and microseconds: each is written differently
    fraction = rng.choice((0, 261_000, 261_624, 7))
    started = T0 + timedelta(minutes=index * 7, microseconds=fraction)
    answered = rng.random() < 0.6
    ended = rng.random() < 0.9
    source, destination = rng.sample(NUMBERS, 2)
    duration = rng.choice((65.5, 65.261624, 3599.999999, 0.000001, 65.0))
    return {
        "id": new_id(),
        "tenant": tenant,
        "call_id": f"c{index}@pbx.example",
        "b_call_id": None if index % 5 == 0 else f"b{index}@gw.example",
        "direction": rng.choice(("inbound", "outbound")),
        "source_number": source,
        "source_uri": f"sip:{source}@pbx.example",
        "destination_number": destination if index % 4 else None,
        "destination_uri": f"sip:{destination}@trunk.example",
        "source_addr": "127.0.0.1:5070",
        "destination_addr": "127.0.0.1:5080",
        "started_at": started,
        "answered_at": started + timedelta(seconds=4) if answered else None,
        "ended_at": started + timedelta(seconds=65.5) if ended else None,
        "duration_s": duration if ended else None,
        "billable_s": 61.5 if ended and answered else None,
        "end_reason": rng.choice((None, "caller hung up", AWKWARD_TEXT)),
        "disposition": ("answered" if answered else "no_answer") if ended else None,
        "final_status": 200 if answered else 480,
        "gateway_instance": "gw-test-1",
        "consent_outcome": rng.choice(("granted", "declined", "none")),
        "capture_s": rng.choice((12.25, 12.345)) if answered else None,
    }


@pytest.fixture
async def store(db_engine: AsyncEngine) -> AsyncIterator[tuple[AsyncEngine, PreparedReads]]:
    rng = random.Random(7)
    rows = [call_row(rng, "acme", i) for i in range(60)]
    rows += [call_row(rng, "globex", i) for i in range(60, 80)]
    async with db_engine.begin() as connection:
        await connection.execute(insert(CALLS), rows)
    reads = PreparedReads(db_engine)
    try:
        yield db_engine, reads
    finally:
        await reads.close()


FILTERS = [
    CallFilter(),
    CallFilter(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=5)),
    CallFilter(numbers=(NUMBERS[0],)),
    CallFilter(numbers=NUMBERS[:2], direction="inbound"),
    CallFilter(dispositions=("answered", "no_answer"), consent_outcomes=("granted",)),
    CallFilter(min_duration_s=60.0),
    CallFilter(since=T0 + timedelta(minutes=3, microseconds=261_624)),
]


async def walk(list_page: Any, where: CallFilter, order: str, limit: int) -> list[Any]:
    """Every page ``list_page`` (a view's ``list_calls`` or ``list_calls_json``) gives,
    each after the previous one's key."""
    pages = []
    after = None
    while True:
        page = await list_page(where, limit=limit, order=order, after=after)
        pages.append(page)
        if page.next_key is None or len(pages) > 100:
            return pages
        after = page.next_key


async def all_pages(
    view: TenantView, where: CallFilter, order: str, limit: int
) -> list[tuple[bytes, PageKey | None]]:
    pages = await walk(view.list_calls, where, order, limit)
    return [(orjson.dumps(page.rows), page.next_key) for page in pages]


async def json_pages(
    view: TenantView, where: CallFilter, order: str, limit: int
) -> list[tuple[bytes, int, PageKey | None]]:
    pages = await walk(view.list_calls_json, where, order, limit)
    return [(page.json, page.rows, page.next_key) for page in pages]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_prepared_listing_is_sqlalchemys_listing(
    store: tuple[AsyncEngine, PreparedReads], order: str
) -> None:
    """Prepared pages, as dict rows and as JSON pages, are SQLAlchemy's listing as the API
    encodes it. The store keeps each row's JSON itself (triggers write it): the same rows
    and keys in the same order as orjson writes the listing's dicts, and the same numbers
    (a duration under 0.0001 s in the database's exponent form: SQLite's ``1.0e-06`` and
    PostgreSQL's ``1e-06`` for ``1e-6``)."""
    engine, reads = store
    plain = TenantView(engine, "acme")
    prepared = TenantView(engine, "acme", prepared=reads)
    # the 1 µs duration as a value (after a key), never inside an id's hex
    tiny = b"1.0e-06" if engine.dialect.name == "sqlite" else b"1e-06"
    seen = []
    for where in FILTERS:
        for limit in (7, 100):
            expected = await all_pages(plain, where, order, limit)
            seen.append([page for page, _ in expected])
            assert await all_pages(prepared, where, order, limit) == expected, where
            found = await json_pages(prepared, where, order, limit)
            assert [key for _, _, key in found] == [key for _, key in expected], where
            assert [rows for _, rows, _ in found] == [
                len(orjson.loads(page)) for page, _ in expected
            ]
            for (json, _, _), (encoded, _) in zip(found, expected, strict=True):
                assert orjson.loads(json) == orjson.loads(encoded)
                assert json == encoded.replace(b'":1e-6', b'":' + tiny)
    assert len(expected) == 1  # the last filter's whole listing fits a page of 100
    assert b'"tenant":"acme"' in expected[0][0]
    assert b"globex" not in b"".join(page for page, _ in expected)
    reasons = {row["end_reason"] for page, _ in expected for row in orjson.loads(page)}
    assert AWKWARD_TEXT in reasons  # the escapes were compared, not only plain text
    every = b"".join(page for filtered in seen for page in filtered)
    assert b'"duration_s":65.0,' in every  # a whole float keeps its ".0", as orjson writes it


async def test_instants_in_any_zone_filter_as_the_instants_they_are(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    """A bound instant takes the column's type: made UTC before SQLite compares its text,
    and refused without a zone, on the first request of a shape and on later ones."""
    engine, reads = store
    every = (await TenantView(engine, "acme").list_calls(CallFilter(), limit=100)).rows
    cut = T0 + timedelta(hours=3)
    expected = sorted(
        row["id"]
        for row in every
        if instant_of(row["started_at"]) >= cut and row["duration_s"] is not None
    )
    assert 0 < len(expected) < len(every)
    for zone in (timezone(timedelta(hours=2)), timezone(timedelta(hours=-7)), UTC):
        where = CallFilter(since=cut.astimezone(zone), min_duration_s=0)  # an int for a float
        for view in (TenantView(engine, "acme"), TenantView(engine, "acme", prepared=reads)):
            page = await view.list_calls(where, limit=100)
            assert sorted(row["id"] for row in page.rows) == expected
            with pytest.raises(Exception, match="naive datetime"):
                await view.list_calls(CallFilter(since=cut.replace(tzinfo=None)), limit=100)


async def test_a_statement_prepared_for_one_tenant_never_answers_another(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    engine, reads = store
    for tenant, count in (("acme", 60), ("globex", 20), ("acme", 60), ("nobody", 0)):
        page = await TenantView(engine, tenant, prepared=reads).list_calls(CallFilter(), limit=100)
        assert len(page.rows) == count
        assert {row["tenant"] for row in page.rows} <= {tenant}


@pytest.mark.parametrize("microsecond", [0, 7, 261_000, 261_624, 999_999])
def test_sqlite_instants_become_the_text_the_api_encoder_writes(microsecond: int) -> None:
    instant = datetime(2026, 3, 1, 22, 48, 33, microsecond, tzinfo=UTC)
    expression = sqlite_rfc3339(column("at"), "at")
    sql = select(expression).select_from(table("t")).compile(dialect=sqlite.dialect()).string
    database = sqlite3.connect(":memory:")
    database.execute("CREATE TABLE t (at TEXT)")
    stored = [
        instant.strftime("%Y-%m-%d %H:%M:%S.%f"),  # SQLAlchemy's SQLite form
        instant.strftime("%Y-%m-%d %H:%M:%S"),  # the form without a fraction it also reads
        None,
    ]
    database.executemany("INSERT INTO t VALUES (?)", [(value,) for value in stored])
    made = [row[0] for row in database.execute(sql)]
    whole = instant.replace(microsecond=0)
    assert [orjson.dumps(value) for value in made] == [
        orjson.dumps(instant),
        orjson.dumps(whole),
        b"null",
    ]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no link
async def test_a_read_on_a_link_the_server_dropped_is_made_again(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    """An idle connection PostgreSQL has closed (a restart, an idle timeout) costs no
    failed request: the read is made once more on a new connection."""
    engine, reads = store
    view = TenantView(engine, "acme", prepared=reads)
    await view.list_calls(CallFilter(), limit=5)
    async with engine.connect() as connection:
        reader_pids = (
            (
                await connection.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND query LIKE 'SELECT calls.id%'"
                )
            )
            .scalars()
            .all()
        )
        assert reader_pids  # the prepared read's own connection, idle now
        for pid in reader_pids:
            await connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    page = await view.list_calls(CallFilter(), limit=5)
    assert len(page.rows) == 5


def _slow_statement(dialect: str) -> Any:
    """A read that runs for many seconds unless stopped."""
    if dialect == "postgresql":
        return text("SELECT pg_sleep(30)")
    return text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
        "SELECT count(*) FROM c"
    )


async def test_a_read_past_its_budget_is_stopped_and_the_next_one_runs(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    """One slow read must not hold the shared reader: it is stopped where it runs
    (SQLite's progress handler, PostgreSQL's statement_timeout) and the reader serves on."""
    engine, _ = store
    reads = PreparedReads(engine, timeout_s=0.3)
    try:
        view = TenantView(engine, "acme", prepared=reads)
        slow = reads.prepared(("slow",), lambda: _slow_statement(engine.dialect.name), {})
        began = time.monotonic()
        with pytest.raises(ReadTimeout, match=r"budget of 0\.3 s"):
            await reads.fetch(slow, {}, list)
        assert time.monotonic() - began < 10  # stopped, not run to its end (~30 s or more)
        page = await view.list_calls(CallFilter(), limit=100)
        assert len(page.rows) == 60
    finally:
        await reads.close()


def test_a_read_budget_must_be_positive(db_engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="positive"):
        PreparedReads(db_engine, timeout_s=0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL cancels its own
async def test_a_read_whose_asker_went_away_stops_and_frees_the_reader(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    """A client that hangs up during a heavy read cancels its request: the read stops where
    it runs, and the next request on the shared reader need not wait out its budget."""
    engine, _ = store
    reads = PreparedReads(engine, timeout_s=30)
    try:
        slow = reads.prepared(("slow",), lambda: _slow_statement(engine.dialect.name), {})
        abandoned = asyncio.create_task(reads.fetch(slow, {}, list))
        await asyncio.sleep(0.3)  # running on the reader by now
        abandoned.cancel()
        began = time.monotonic()
        page = await TenantView(engine, "acme", prepared=reads).list_calls(CallFilter(), limit=100)
        assert len(page.rows) == 60
        assert time.monotonic() - began < 5, "the next read waited for the abandoned one"
        assert abandoned.cancelled()
    finally:
        await reads.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_cancelled_read_ends_on_the_server_too(
    store: tuple[AsyncEngine, PreparedReads],
) -> None:
    """A cancelled read closes its connection; the server sees the client gone within
    about a second (client_connection_check_interval) and ends the statement, instead of
    running it out to its budget."""
    engine, _ = store
    reads = PreparedReads(engine, timeout_s=30)

    async def sleepers() -> int:
        async with engine.connect() as connection:
            found = await connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
                " AND pid <> pg_backend_pid()"
            )
            return int(found.scalar_one())

    try:
        slow = reads.prepared(("slow",), lambda: _slow_statement(engine.dialect.name), {})
        abandoned = asyncio.create_task(reads.fetch(slow, {}, list))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if await sleepers():
                break
        assert await sleepers() == 1
        abandoned.cancel()
        deadline = time.monotonic() + 10
        while await sleepers() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await sleepers() == 0, "the server ran the abandoned read on"
    finally:
        await reads.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_reads_go_on_when_the_server_refuses_the_connection_check(
    store: tuple[AsyncEngine, PreparedReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses ``client_connection_check_interval`` (some platforms, some
    hosted services) still serves every read, only without the check."""
    engine, _ = store
    monkeypatch.setattr(prepared_module, "_CONNECTION_CHECK", "SET no_such.setting TO")
    reads = PreparedReads(engine)
    try:
        for _ in range(3):
            page = await TenantView(engine, "acme", prepared=reads).list_calls(
                CallFilter(), limit=100
            )
            assert len(page.rows) == 60
    finally:
        await reads.close()
