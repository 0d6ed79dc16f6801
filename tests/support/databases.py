"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

``db_url`` is parametrized: a SQLite file in the test's temporary directory,
and a throwaway PostgreSQL database created for the test and dropped after it.
The PostgreSQL server is the one on 127.0.0.1:5432 (database ``test``, user
``postgres`` or else the current user), or the one ``CALLGATE_TEST_PG_URL``
names. Without a reachable server the PostgreSQL half is skipped, or fails
when the ``CI`` environment variable is set.

Server administration runs on a private event loop in a helper thread, so the
fixtures work whatever loop pytest-asyncio gives the test.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import POSTGRES_DRIVER, async_url, make_engine, migrate

PG_URL_ENV = "CALLGATE_TEST_PG_URL"
DEFAULT_PG_HOST = "127.0.0.1"
DEFAULT_PG_PORT = 5432
DEFAULT_PG_DATABASE = "test"
TEST_DATABASE_PREFIX = "callgate_test_"
SKIP_REASON = (
    "PostgreSQL not reachable on 127.0.0.1:5432; start it (or set CALLGATE_TEST_PG_URL) "
    "to run the PostgreSQL half"
)

T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server answered at the configured address."""


def run_blocking(factory: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``factory()`` makes to completion on a private loop in a thread."""

    async def main() -> T:
        return await factory()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="callgate-pg-admin") as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def _candidate_admin_urls() -> list[URL]:
    configured = os.environ.get(PG_URL_ENV)
    if configured:
        return [async_url(configured)]
    base = URL.create(
        POSTGRES_DRIVER, host=DEFAULT_PG_HOST, port=DEFAULT_PG_PORT, database=DEFAULT_PG_DATABASE
    )
    users = dict.fromkeys(["postgres", getpass.getuser()])
    return [base.set(username=user) for user in users]


async def connect_admin(url: URL) -> asyncpg.Connection:
    """An asyncpg connection to the database ``url`` names."""
    return await asyncpg.connect(
        host=url.host or DEFAULT_PG_HOST,
        port=url.port or DEFAULT_PG_PORT,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=5,
    )


async def _find_admin_url() -> URL:
    failures: list[str] = []
    for url in _candidate_admin_urls():
        try:
            connection = await connect_admin(url)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            failures.append(f"{url.render_as_string(hide_password=True)}: {error}")
            continue
        await connection.close()
        return url
    raise PostgresUnavailable("; ".join(failures))


_admin_url: URL | None = None
_admin_error: PostgresUnavailable | None = None


def postgres_admin_url() -> URL:
    """The server's administration database URL; found once per test session."""
    global _admin_url, _admin_error
    if _admin_url is None and _admin_error is None:
        try:
            _admin_url = run_blocking(_find_admin_url)
        except PostgresUnavailable as error:
            _admin_error = error
    if _admin_error is not None:
        raise _admin_error
    assert _admin_url is not None
    return _admin_url


def require_postgres() -> URL:
    """The administration URL, or skip (fail under ``CI``) the test without a server."""
    try:
        return postgres_admin_url()
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"{SKIP_REASON} (CI is set, so this is an error): {error}")
        pytest.skip(SKIP_REASON)


def create_database(admin_url: URL) -> URL:
    """Create an empty, uniquely named database; the URL to reach it.

    Runs on a private event loop, so it may be called from any thread.
    """
    name = f"{TEST_DATABASE_PREFIX}{secrets.token_hex(6)}"

    async def create() -> None:
        connection = await connect_admin(admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    run_blocking(create)
    return admin_url.set(database=name)


def drop_database(admin_url: URL, name: str) -> None:
    """Drop ``name``, disconnecting whoever is still connected to it (from any thread)."""
    if not name.startswith(TEST_DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")

    async def drop() -> None:
        connection = await connect_admin(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    run_blocking(drop)


def _sqlite_url(directory: os.PathLike[str]) -> str:
    return f"sqlite+aiosqlite:///{os.fspath(directory)}/callgate.sqlite3"


class _DatabasePool:
    """Throwaway databases, each created one test ahead and dropped in the background.

    Creating and dropping a database takes a few hundred milliseconds; doing
    both while the previous test runs keeps the PostgreSQL half fast.
    """

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="callgate-pg-pool")
        self._next: Future[URL] | None = None
        self._drops: list[Future[None]] = []

    def take(self) -> URL:
        ahead = self._next or self._executor.submit(create_database, self.admin_url)
        self._next = self._executor.submit(create_database, self.admin_url)
        return ahead.result()

    def give_back(self, url: URL) -> None:
        assert url.database is not None
        self._drops.append(self._executor.submit(drop_database, self.admin_url, url.database))

    def close(self) -> None:
        if self._next is not None:
            with suppress(Exception):
                self.give_back(self._next.result())
            self._next = None
        for drop in self._drops:
            error = drop.exception()
            if error is not None:
                warnings.warn(f"could not drop a test database: {error}", stacklevel=1)
        self._drops.clear()
        self._executor.shutdown(wait=True)


_pool: _DatabasePool | None = None


def _database_pool() -> _DatabasePool:
    global _pool
    admin_url = require_postgres()
    if _pool is None:
        _pool = _DatabasePool(admin_url)
    return _pool


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the database made ahead and wait for the drops still running."""
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


@contextmanager
def throwaway_postgres_database() -> Iterator[URL]:
    """A fresh PostgreSQL database for the duration of the block, dropped afterwards."""
    pool = _database_pool()
    url = pool.take()
    try:
        yield url
    finally:
        pool.give_back(url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """URL of an empty store database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    with throwaway_postgres_database() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database, for tests of PostgreSQL-only behaviour."""
    with throwaway_postgres_database() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``db_url`` with the schema migrated to head; disposed afterwards."""
    engine = make_engine(db_url)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()


async def mark_what_listing_triggers_write(engine: AsyncEngine) -> None:
    """Have SQLite's listing triggers write the text ``trigger`` instead of the object
    (their ``WHEN`` kept): a test then sees which rows they wrote."""
    async with engine.begin() as connection:
        found = await connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'calls'"
            )
        )
        for name, sql in found.all():
            head = sql.split("BEGIN", 1)[0]
            await connection.execute(text(f"DROP TRIGGER {name}"))
            await connection.execute(
                text(
                    f"{head}BEGIN UPDATE calls SET listed = 'trigger' WHERE rowid = NEW.rowid; END"
                )
            )
