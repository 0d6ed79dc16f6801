"""Hot reads run on the database driver itself: each statement shape compiled once.

The API's listing runs a handful of statement shapes thousands of times a
second. SQLAlchemy still writes every statement (one source of truth for the
SQL of both dialects, its bind types and the tenant scoping of
:class:`~gateway.store.tenant_view.TenantView`), but only once per shape: a
:class:`Prepared` keeps the compiled SQL, the order of its parameters and
their bind processors. Each request binds its values and runs the SQL on the
driver, without SQLAlchemy's per-execution work (statement construction and
cache keys, the greenlet bridge, result processing), which was most of a
page's cost.

- SQLite: a reading thread (:data:`SQLITE_READ_THREADS`) with its own ``sqlite3``
  connection (``query_only``, the engine's busy timeout). Executing, fetching and the
  caller's row conversion all run in the thread: one hop from the event loop
  per read, and the loop (which may also be relaying media) does none of it.
  WAL lets these readers run beside the writer; each read sees the last
  commit.
- PostgreSQL: a few asyncpg connections of our own. asyncpg prepares each
  statement once per connection (its statement cache) and decodes rows in C.
- Anything else (an in-memory SQLite database, which another connection
  could not see): the engine's own connection, through ``exec_driver_sql``.

Anything a statement holds as a literal (the tenant of ``TenantView``'s
scoping, say) is compiled into it: the key a statement is prepared under
must name it. Values that change per request are bind parameters with
explicit names, supplied on each call.

Every read has a time budget (``timeout_s``): the reads share one thread
(SQLite) or a few connections (PostgreSQL, :data:`READ_CONNECTIONS`), so a
read that runs on (a filter that matches almost nothing, over millions of
calls and a cold page cache) would hold up every other. Past its budget a
read is stopped where it runs (SQLite's progress handler; PostgreSQL's ``statement_timeout``) and
:class:`ReadTimeout` raised. On SQLite a read whose asker is cancelled (the
client hung up) stops the same way, or never starts if it was still waiting
its turn. On PostgreSQL its connection is closed, so other reads never wait for it;
the server's statement ends at its budget at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

from gateway.store.engine import (
    POSTGRES_DRIVER,
    SQLITE_DRIVER,
    asyncpg_dsn,
    open_sqlite,
    sqlite_busy_timeout_ms,
)

__all__ = ["Prepared", "PreparedReads", "ReadTimeout", "prepare"]

log = logging.getLogger(__name__)

READ_CONNECTIONS = 4
"""PostgreSQL connections serving prepared reads at once. With the stored listing JSON a
read is mostly the round trip and PostgreSQL's own work, which two connections left the
API's process waiting on (83 % of its core): four served 2,259-2,426 pages a second
against 2,036-2,083 with two (1M calls, 32 clients, alternating runs)."""
SQLITE_READ_THREADS = 1
"""Threads reading SQLite. ``sqlite3`` holds the GIL while it turns rows into Python
objects, most of a page's cost: a second thread only adds GIL hand-overs. Measured on one
core (1M calls, 32 clients, alternating runs): a 100-row page 603-607 req/s with p99
105-155 ms on one thread, 517-555 req/s with p99 167-201 ms on two."""

SQLITE_READ_MMAP_BYTES = 1 << 34
"""How much of the database file the reader maps (``PRAGMA mmap_size``; SQLite caps it at
its build's limit). A page then is read from the mapping instead of being copied in by a
``pread`` each time SQLite's own small cache misses, which it does for most pages of a
listing that is not the newest: a page of a random day of 1M calls 132-137 us against
176 us, and 1,951 -> 2,180 req/s through the API on one core. The reader only reads; the
file never shrinks under it (the store does not VACUUM)."""

STATEMENTS_KEPT = 4096
"""Compiled statements kept per engine; all are dropped when more are asked for."""
READ_TIMEOUT_S = 5.0
"""A read's time budget unless one is given (seconds)."""
_PROGRESS_STEPS = 20_000
"""SQLite virtual-machine steps between two looks at a read's deadline (about a millisecond)."""


class ReadTimeout(Exception):
    """A read ran past its time budget and was stopped."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the read ran past its budget of {timeout_s:g} s and was stopped")
        self.timeout_s = timeout_s


_T = TypeVar("_T")
Rows = Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A compiled statement: its SQL for one dialect and how to order and convert its values.

    ``fixed`` holds the values of parameters the statement was built with as
    literals (the same on every call under its key).
    """

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: dict[str, Any]

    def arguments(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for ``values`` (by parameter name), processed for the
        driver as SQLAlchemy would (an instant to UTC text on SQLite, say)."""
        fixed = self.fixed
        found = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values[name] if name in values else fixed[name]
            found.append(value if process is None or value is None else process(value))
        return tuple(found)


def prepare(statement: ClauseElement, dialect: Dialect, values: dict[str, Any]) -> Prepared:
    """Compile ``statement`` for ``dialect``; ``values`` are the per-call parameters (by
    name); every other parameter keeps the value it was built with."""
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    if dialect.paramstyle not in ("qmark", "numeric_dollar"):
        raise ValueError(f"prepared reads need positional parameters, not {dialect.paramstyle}")
    defaults = compiled.construct_params(values)
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    fixed = {name: defaults[name] for name in names if name not in values}
    return Prepared(compiled.string, names, processors, fixed)


class _Backend(Protocol):
    async def fetch(
        self, prepared: Prepared, arguments: tuple[Any, ...], convert: Callable[[Rows], _T]
    ) -> _T: ...

    async def close(self) -> None: ...


class PreparedReads:
    """Prepared statements of one engine, and the connections that run them.

    ``prepared(key, build, values)`` returns the statement compiled under
    ``key`` (``build()`` is called once per key); ``fetch`` runs it.
    ``through_engine``: run on the engine's own connections (nothing to close,
    and no time budget: those are the engine's, for its own callers).
    ``timeout_s``: each read's time budget (:class:`ReadTimeout` past it).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        through_engine: bool = False,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"a read's time budget must be positive, got {timeout_s}")
        self.engine = engine
        self._statements: dict[Hashable, Prepared] = {}
        self._stored_listing: bool | None = None
        self._backend: _Backend = (
            _EngineConnection(engine) if through_engine else _backend_for(engine, timeout_s)
        )

    async def stored_listing(self) -> bool:
        """Whether pages may be read from the store's listing JSON (looked at once:
        :func:`~gateway.store.listing_rows.stored_listing_ready`)."""
        if self._stored_listing is None:
            from gateway.store.listing_rows import stored_listing_ready

            self._stored_listing = await stored_listing_ready(self.engine)
        return self._stored_listing

    def prepared(
        self, key: Hashable, build: Callable[[], ClauseElement], values: dict[str, Any]
    ) -> Prepared:
        found = self._statements.get(key)
        if found is None:
            found = prepare(build(), self.engine.dialect, values)
            if len(self._statements) >= STATEMENTS_KEPT:
                self._statements.clear()  # tenants x shapes x page sizes: few, unless probed
            self._statements[key] = found
        return found

    async def fetch(
        self,
        prepared: Prepared,
        values: dict[str, Any],
        convert: Callable[[Rows], _T],
    ) -> _T:
        """``convert`` of every row ``prepared`` gives for ``values`` (on SQLite, in the
        reading thread)."""
        return await self._backend.fetch(prepared, prepared.arguments(values), convert)

    async def close(self) -> None:
        await self._backend.close()


def _backend_for(engine: AsyncEngine, timeout_s: float) -> _Backend:
    url = engine.url
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "memory" in str(url.query.get("mode", ""))
    if url.drivername == SQLITE_DRIVER and not in_memory:
        return _SqliteThreads(
            database, SQLITE_READ_THREADS, sqlite_busy_timeout_ms(engine), timeout_s
        )
    if url.drivername == POSTGRES_DRIVER:
        return _PostgresConnections(engine, READ_CONNECTIONS, timeout_s)
    return _EngineConnection(engine)


class _SqliteRead:
    """One read on the SQLite reader: its deadline once it runs, and whether its asker
    has gone (a cancelled request), which stops it where it runs."""

    __slots__ = ("abandoned", "deadline")

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.abandoned = False

    def should_stop(self) -> bool:
        return self.abandoned or time.monotonic() > self.deadline


_IDLE = _SqliteRead()
"""What the reader's progress handler looks at between reads: never stops anything."""


class _SqliteThreads:
    """Reads on ``sqlite3`` connections, one per thread of a pool.

    A read whose asker is cancelled (the client hung up, the request timed out)
    is stopped where it runs, or never started: the reader is shared, and a
    heavy read nobody waits for would hold up every other for its whole budget.
    """

    def __init__(self, path: str, threads: int, busy_timeout_ms: int, timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="callgate-read")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = open_sqlite(
                self.path,
                self.busy_timeout_ms,
                ("PRAGMA query_only=ON", f"PRAGMA mmap_size={SQLITE_READ_MMAP_BYTES}"),
            )
            self._local.connection = connection
            self._local.read = _IDLE
            local = self._local
            # a non-zero answer stops the running statement ("interrupted")
            connection.set_progress_handler(lambda: local.read.should_stop(), _PROGRESS_STEPS)
            with self._lock:
                self._opened.append(connection)
        return connection

    def _run(
        self,
        read: _SqliteRead,
        prepared: Prepared,
        arguments: tuple[Any, ...],
        convert: Callable[[Rows], _T],
    ) -> _T | None:
        if read.abandoned:
            return None  # its asker went away while it waited its turn
        connection = self._connection()
        read.deadline = time.monotonic() + self.timeout_s
        self._local.read = read
        try:
            rows = connection.execute(prepared.sql, arguments).fetchall()
        except sqlite3.OperationalError as error:
            if "interrupt" in str(error):
                if read.abandoned:
                    return None
                if time.monotonic() > read.deadline:
                    raise ReadTimeout(self.timeout_s) from None
            raise
        finally:
            self._local.read = _IDLE
        return convert(rows)

    async def fetch(
        self, prepared: Prepared, arguments: tuple[Any, ...], convert: Callable[[Rows], _T]
    ) -> _T:
        loop = asyncio.get_running_loop()
        read = _SqliteRead()
        try:
            found = await loop.run_in_executor(
                self._executor, self._run, read, prepared, arguments, convert
            )
        except asyncio.CancelledError:
            read.abandoned = True
            raise
        return cast(_T, found)  # None only for an abandoned read, whose asker is gone

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()


_LINK_ERRORS = (
    OSError,
    asyncpg.InterfaceError,  # among them: the connection does not exist (any more)
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server shut down or restarted
    asyncpg.exceptions.InternalClientError,  # its notice of that came while the link was idle
)


def _timed_out(error: BaseException) -> bool:
    """Whether PostgreSQL stopped the statement for its ``statement_timeout``."""
    return isinstance(error, asyncpg.exceptions.QueryCanceledError) and (
        "statement timeout" in str(error)
    )


_CONNECTION_CHECK = "SET client_connection_check_interval = 1000"
"""Have the server look every second, while a statement runs, whether its client is still
there (a read cancelled here closes its connection). PostgreSQL 14 and later; some
platforms and hosted services refuse it, and reads then go without."""


class _PostgresConnections:
    """Reads on a few asyncpg connections opened to the engine's server and database.

    A connection is not pinged before each read (the engine's pool does that): a
    read on an idle connection the server has dropped is made once more on a new one.
    The server stops a read past its budget (``statement_timeout``), and, from
    PostgreSQL 14, one whose connection was closed (a cancelled read) within a
    second (``client_connection_check_interval``) instead of at its budget.
    """

    def __init__(self, engine: AsyncEngine, size: int, timeout_s: float) -> None:
        self.dsn = asyncpg_dsn(engine.url)
        self.timeout_s = timeout_s
        # set after connecting, not in the startup packet: PgBouncer refuses unknown ones
        self._set_timeout = f"SET statement_timeout = {max(1, round(timeout_s * 1000))}"
        self._check_connection = True
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def fetch(
        self, prepared: Prepared, arguments: tuple[Any, ...], convert: Callable[[Rows], _T]
    ) -> _T:
        async with self._slots:
            for attempt in (1, 2):
                while self._idle and self._idle[-1].is_closed():
                    self._idle.pop()
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                try:
                    rows = await connection.fetch(prepared.sql, *arguments)
                except _LINK_ERRORS as error:
                    # a statement past its budget leaves the link usable; anything else here
                    # (a restart, an operator's cancel) is taken as a dropped link
                    if _timed_out(error):
                        self._release(connection)
                        raise ReadTimeout(self.timeout_s) from None
                    connection.terminate()
                    if reused and attempt == 1:
                        continue  # an idle link the server dropped (a restart): read anew
                    raise
                except asyncpg.PostgresError:
                    # the statement's own error leaves the link usable, unless it closed it
                    if connection.is_closed():
                        connection.terminate()
                    else:
                        self._release(connection)
                    raise
                except BaseException:  # a cancellation cut the query short
                    connection.terminate()
                    raise
                self._release(connection)
                return convert(rows)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _connect(self) -> Any:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(self._set_timeout)
            if self._check_connection and connection.get_server_version() >= (14, 0):
                try:
                    await connection.execute(_CONNECTION_CHECK)
                except asyncpg.PostgresError as error:  # a platform or service that refuses it
                    self._check_connection = False
                    log.info("PostgreSQL reads go without %s: %s", _CONNECTION_CHECK, error)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def _release(self, connection: Any) -> None:
        if self._closed:
            connection.terminate()
        else:
            self._idle.append(connection)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)


class _EngineConnection:
    """Reads through the engine's own connections (databases no other connection sees)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fetch(
        self, prepared: Prepared, arguments: tuple[Any, ...], convert: Callable[[Rows], _T]
    ) -> _T:
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(prepared.sql, arguments)
            rows = [tuple(row) for row in result.all()]
        return convert(rows)

    async def close(self) -> None:
        return None
