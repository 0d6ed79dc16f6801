"""Engines for the call-record store and its schema migrations.

SQLite (through aiosqlite) is the embedded default: one file (and, beside it,
the audit log of the API's reads: :mod:`gateway.store.audit`), write-ahead
logging so readers never block the writer. PostgreSQL (through asyncpg) is
the shared store when several gateway instances run. The schema is brought to
the newest Alembic revision at start-up by :func:`migrate`.
"""

from __future__ import annotations

import json
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"

_ASYNC_DRIVERS: dict[str, str] = {
    "sqlite": SQLITE_DRIVER,
    "sqlite+aiosqlite": SQLITE_DRIVER,
    "sqlite+pysqlite": SQLITE_DRIVER,
    "postgresql": POSTGRES_DRIVER,
    "postgres": POSTGRES_DRIVER,
    "postgresql+asyncpg": POSTGRES_DRIVER,
}

DEFAULT_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite statement waits for another connection's write lock."""

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

MIGRATION_LOCK_KEY = int.from_bytes(b"callgate", "big")
"""PostgreSQL advisory lock key held while migrating (fits a signed bigint)."""


def async_url(url: str | URL) -> URL:
    """The URL with its async driver: ``sqlite://`` -> aiosqlite, ``postgresql://`` -> asyncpg.

    Raises ``ValueError`` for text that is not a database URL or names a
    database the store does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise ValueError(f"store URL {str(url)!r} is not a database URL: {error}") from error
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported store URL scheme {parsed.drivername!r}: "
            "use sqlite:///path/to/file or postgresql://user@host/database"
        )
    return parsed.set(drivername=driver)


def sqlite_file(url: URL) -> Path | None:
    """The database file a SQLite URL names; ``None`` for in-memory databases."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str | URL, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> AsyncEngine:
    """An async engine for ``url`` (SQLite file or PostgreSQL server).

    SQLite connections get ``journal_mode=WAL``, ``synchronous=NORMAL``, a
    ``busy_timeout`` of ``busy_timeout_ms`` and foreign keys on; the file's
    parent directory is created. PostgreSQL connections are pinged on
    checkout so a restarted server costs one failed ping, not a failed write.
    """
    resolved = async_url(url)
    if resolved.drivername == SQLITE_DRIVER:
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
        path = sqlite_file(resolved)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(resolved, **_JSON_CODEC)
        _configure_sqlite(engine, busy_timeout_ms)
        _busy_timeouts[engine.sync_engine] = busy_timeout_ms
        return engine
    return create_async_engine(resolved, pool_pre_ping=True, **_JSON_CODEC)


def json_text(value: Any) -> str:
    """A JSON column's value as the text the database keeps (orjson: compact, UTF-8).

    What orjson refuses and the standard library takes (integers past 64 bits, float
    and str subclasses as keys, lone surrogates) goes through the standard library.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _json_value(text: str | bytes) -> Any:
    """A JSON column's text as its value; rows the standard library wrote with NaN or
    Infinity (which orjson refuses) are read by the standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_JSON_CODEC: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": _json_value}
"""JSON columns (media statistics, consent rules) written and read with orjson: a call's
record is written on the gateway's event loop, where the standard library's encoder cost
more than the rest of the record's checks."""


_busy_timeouts: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def sqlite_busy_timeout_ms(engine: AsyncEngine) -> int:
    """The busy timeout ``make_engine`` gave a SQLite engine's connections (for others
    opened beside them)."""
    return _busy_timeouts.get(engine.sync_engine, DEFAULT_BUSY_TIMEOUT_MS)


WAL_ATTEMPTS = 40
"""Tries at switching a new SQLite file to WAL while other connections switch it too."""
WAL_RETRY_S = 0.005
"""The pause before the next try grows by this much each time (0.005 s, 0.01 s, ...)."""


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode unless it is already.

    The mode is kept in the file, so it is read first: only the first connection to a
    new file changes it. That change takes an exclusive lock, and when connections in
    other threads or processes open the new file at the same moment, SQLite refuses
    the ones that would have to wait for each other with "database is locked" at once,
    without its busy timeout (waiting could deadlock). A refused connection pauses and
    looks again; by then another one has switched the file. The pauses (5 ms, 10 ms,
    ...) only happen in that race, when a store or read log is made.
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode")
            row = cursor.fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.fetchall()
            return
        except Exception as error:  # the driver's OperationalError, adapted or not
            if "database is locked" not in str(error) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(WAL_RETRY_S * (attempt + 1))


SQLITE_PRAGMAS = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")
"""Set on every SQLite connection that writes (they hold for one connection only)."""


def open_sqlite(path: str, busy_timeout_ms: int, pragmas: tuple[str, ...]) -> sqlite3.Connection:
    """A ``sqlite3`` connection of the store's own beside the engine's (a reader, the
    record writer): autocommit (the caller opens its transactions), usable from the
    thread that owns it, statements cached, the engine's busy timeout, then ``pragmas``."""
    connection = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
        uri=path.startswith("file:"),
    )
    connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    for pragma in pragmas:
        connection.execute(pragma)
    return connection


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            _use_wal(cursor)
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """ORM sessions on ``engine``; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def is_postgresql(engine: AsyncEngine) -> bool:
    """Whether ``engine`` talks to PostgreSQL (the shared store)."""
    return engine.dialect.name == "postgresql"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration built in code, pointing at the packaged migrations.

    With ``connection``, ``env.py`` migrates through it instead of opening its own.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; ``None`` before the first migration."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def _upgrade(connection: Connection) -> None:
    """Upgrade to head inside the caller's transaction, holding the migration lock.

    PostgreSQL: a transaction-scoped advisory lock serialises gateways that
    start together; the second one waits, then finds the schema at head.
    SQLite: ``BEGIN IMMEDIATE`` takes the write lock first, so the DDL of a
    revision and its version stamp commit together or not at all.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    command.upgrade(alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``); idempotent."""
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade)
        await connection.commit()


async def refresh_statistics(engine: AsyncEngine) -> None:
    """Give SQLite's planner statistics (``ANALYZE``, sampled); PostgreSQL keeps its own.

    Without them SQLite picks the start-time index for every filtered listing
    and reads a tenant's calls in order until the filter has matched enough.
    ``analysis_limit`` samples each index, so this stays quick on big files.
    """
    if engine.dialect.name != "sqlite":
        return
    async with engine.begin() as connection:
        await connection.execute(text("PRAGMA analysis_limit=2000"))
        await connection.execute(text("ANALYZE"))


def asyncpg_dsn(url: URL) -> str:
    """The libpq-style DSN of a PostgreSQL store URL, for connections made outside the
    engine's pool (LISTEN/NOTIFY, COPY): keeps the query (``sslmode``, a socket ``host``)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
