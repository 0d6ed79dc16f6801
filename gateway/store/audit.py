"""The audit log: every read of personal data, change and erasure, by whom, when.

Changes and erasures write their entry in the act's own transaction, in the store's
``audit_log``. Reads' entries are batched (:class:`AuditBuffer`); on a SQLite file
store they go to a file of their own beside it (:func:`read_log_path`), with the
same ``audit_log`` table: each commit to the store's file makes every reader of it
start again from an empty page cache, and with a few thousand audited reads a
second those commits cost the API's listings up to a third of their rate (measured by
``tests/bench/bench_api.py``). :func:`audit_entries` reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.engine import (
    SQLITE_DRIVER,
    json_text,
    make_engine,
    sqlite_busy_timeout_ms,
    sqlite_file,
)
from gateway.store.models import AUDIT_ACTIONS, AUDIT_LOG, READ_ACTIONS
from gateway.store.queries import record_dict

log = logging.getLogger(__name__)


async def write_audit(
    connection: AsyncConnection,
    *,
    tenant: str,
    key_id: str | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry, in the caller's transaction (so the entry and the act stand together)."""
    await connection.execute(
        insert(AUDIT_LOG).values(
            audit_row(tenant=tenant, key_id=key_id, action=action, target=target, detail=detail)
        )
    )


def audit_row(
    *,
    tenant: str,
    key_id: str | None,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    """One ``audit_log`` row, stamped now; ``ValueError`` for an action not in the list."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "at": datetime.now(UTC),
        "tenant": tenant,
        "key_id": key_id,
        "action": action,
        "target": target,
        "detail": detail,
    }


READ_LOG_INFIX = ".read-audit"
"""What names the file of reads' entries beside a SQLite store: ``callgate.sqlite`` ->
``callgate.read-audit.sqlite``."""


def read_log_path(engine: AsyncEngine) -> Path | None:
    """The file where reads' audit entries go beside a SQLite file store; ``None`` when
    they go to the store's own ``audit_log`` (PostgreSQL, an in-memory SQLite, a store
    named by a ``file:`` URI)."""
    if engine.dialect.name != "sqlite":
        return None
    store = sqlite_file(engine.url)
    if store is None:
        return None
    return store.with_name(f"{store.stem}{READ_LOG_INFIX}{store.suffix or '.sqlite'}")


READ_LOG_SCHEMA = 1
"""The shape of ``audit_log`` in the read-audit file (its ``PRAGMA user_version``): the
table as revision 0003 made it. A revision that changes ``audit_log`` changes this
number and upgrades the file in :func:`_create_log_table`; a file of another shape
stops start-up with the reason instead of failing every write."""


def _create_log_table(connection: Connection, path: Path) -> None:
    """Make the read-audit file's table when it has none; refuse a file of another shape."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")  # two processes opening it: one creates
    if not _has_log_table(connection):
        AUDIT_LOG.create(connection)
        connection.exec_driver_sql(f"PRAGMA user_version = {READ_LOG_SCHEMA}")
        return
    found = connection.exec_driver_sql("PRAGMA user_version").scalar_one()
    if found != READ_LOG_SCHEMA:
        raise RuntimeError(
            f"{path}: its audit_log has shape {found}, this version of callgate writes "
            f"shape {READ_LOG_SCHEMA}; move the file aside (it is the audit log of reads: "
            "keep it) and start again to begin a new one"
        )


def _has_log_table(connection: Connection) -> bool:
    found = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (AUDIT_LOG.name,)
    )
    return found.first() is not None


def _log_engine(engine: AsyncEngine, path: Path) -> AsyncEngine:
    return make_engine(
        URL.create(SQLITE_DRIVER, database=str(path)),
        busy_timeout_ms=sqlite_busy_timeout_ms(engine),
    )


async def open_read_log(engine: AsyncEngine) -> AsyncEngine:
    """The engine reads' audit entries are written with: ``engine`` itself, or for a
    SQLite file store one on :func:`read_log_path`, whose ``audit_log`` table (the
    model's, with its index) is made when missing. Dispose of it when it is not
    ``engine``. ``RuntimeError`` for a file whose table has another shape
    (:data:`READ_LOG_SCHEMA`)."""
    path = read_log_path(engine)
    if path is None:
        return engine
    log_engine = _log_engine(engine, path)
    try:
        async with log_engine.connect() as connection:
            await connection.run_sync(_create_log_table, path)
            await connection.commit()
    except BaseException:
        await log_engine.dispose()
        raise
    return log_engine


async def _entries(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    query = select(AUDIT_LOG).where(AUDIT_LOG.c.tenant == tenant).order_by(AUDIT_LOG.c.id)
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite" and not await connection.run_sync(_has_log_table):
            return []
        return [record_dict(row) for row in (await connection.execute(query)).mappings()]


async def audit_entries(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    """A tenant's audit log, oldest first (by ``at``): the store's entries and, beside a
    SQLite file store, those of reads (:func:`read_log_path`; their ids count apart
    from the store's). Reads' entries are stamped when the read is made and written
    within :attr:`AuditBuffer.max_delay`, so on one table too ``at``, not ``id``, is
    the order things happened in."""
    entries = await _entries(engine, tenant)
    path = read_log_path(engine)
    if path is not None and path.exists():
        log_engine = _log_engine(engine, path)  # read only: nothing is made here
        try:
            entries += await _entries(log_engine, tenant)
        finally:
            await log_engine.dispose()
    return sorted(entries, key=lambda entry: datetime.fromisoformat(entry["at"]))


PURGE_BATCH = 5000
"""Entries removed per transaction: a purge of months of reads never holds the store's
write lock (SQLite) for long."""


async def purge_reads(engine: AsyncEngine, tenant: str, before: datetime) -> AsyncIterator[int]:
    """Remove a tenant's entries of reads (:data:`READ_ACTIONS`) stamped before
    ``before``, from the store's ``audit_log`` and from the reads' file beside a SQLite
    store; yields the count of each batch as it is committed.

    Entries of changes, erasures and purges stay: they are the record that a policy
    changed or a subject's data went. Each batch of :data:`PURGE_BATCH` is its own
    transaction. The caller records the purge (an entry stamped now, which this purge
    does not reach)."""
    async for removed in _purge_entries(engine, tenant, before):
        yield removed
    path = read_log_path(engine)
    if path is not None and path.exists():
        log_engine = _log_engine(engine, path)
        try:
            async for removed in _purge_entries(log_engine, tenant, before):
                yield removed
        finally:
            await log_engine.dispose()


async def _purge_entries(engine: AsyncEngine, tenant: str, before: datetime) -> AsyncIterator[int]:
    due = (
        select(AUDIT_LOG.c.id)
        .where(
            AUDIT_LOG.c.tenant == tenant,
            AUDIT_LOG.c.at < before,
            AUDIT_LOG.c.action.in_(sorted(READ_ACTIONS)),
        )
        .limit(PURGE_BATCH)
        .scalar_subquery()
    )
    while True:
        async with engine.begin() as connection:
            if engine.dialect.name == "sqlite" and not await connection.run_sync(_has_log_table):
                return
            deleted = await connection.execute(delete(AUDIT_LOG).where(AUDIT_LOG.c.id.in_(due)))
            batch = deleted.rowcount
        if batch:
            yield batch
        if batch < PURGE_BATCH:
            return
        await asyncio.sleep(0)  # let the loop's other work through between batches


_COPIED = ("at", "tenant", "key_id", "action", "target", "detail")
"""The columns a batch of entries fills (``id`` is the table's sequence)."""


async def _copy_entries(engine: AsyncEngine, entries: list[dict[str, Any]]) -> None:
    """Entries of :func:`audit_row` into PostgreSQL's ``audit_log`` in one ``COPY``
    (binary, encoded by asyncpg).

    SQLAlchemy's ``executemany`` of a batch of 600 took 3.5 ms of the event loop's
    time (each row's values processed in Python, then bound one by one), a stall every
    batch that every request in flight waited out; this takes 1.2 ms (each timed alone
    with a script; through ``bench_api`` the pages' p99 fell from 20.0-22.1 to 15.9-16.9
    ms). The values are those the columns' bind processors would give: ``audit_row``
    stamps entries in UTC already, and ``detail`` is the JSON text the engine writes. One
    statement: it stands or fails whole without a transaction of its own."""
    records = [
        (
            entry["at"],
            entry["tenant"],
            entry["key_id"],
            entry["action"],
            entry["target"],
            None if entry["detail"] is None else json_text(entry["detail"]),
        )
        for entry in entries
    ]
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            AUDIT_LOG.name, columns=list(_COPIED), records=records
        )


class AuditBuffer:
    """Audit entries of reads, written in batches off the request path.

    A read of personal data needs its entry, but not its own write
    transaction: on SQLite that would make every GET a serialised write. The
    entries wait here at most ``max_delay`` seconds and go in one statement into
    ``engine`` (:func:`open_read_log`'s; a ``COPY`` on PostgreSQL, an ``INSERT`` of
    every row on SQLite); :meth:`close` writes what is left. Changes
    and erasures do not come here: they write their entry in the act's transaction.
    """

    def __init__(self, engine: AsyncEngine, max_delay: float = 0.2, batch: int = 1000) -> None:
        self.engine = engine
        self.max_delay = max_delay
        self.batch = batch
        self._entries: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.written = 0

    def add(
        self,
        *,
        tenant: str,
        key_id: str | None,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._entries.append(
            audit_row(tenant=tenant, key_id=key_id, action=action, target=target, detail=detail)
        )
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._entries) >= self.batch:
            self._wake.set()

    async def _run(self) -> None:
        while self._entries:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.max_delay)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every waiting entry now (kept for the next try if the store fails, or if
        the write is interrupted)."""
        entries, self._entries = self._entries, []
        if not entries:
            return
        try:
            if self.engine.dialect.name == "postgresql":
                await _copy_entries(self.engine, entries)
            else:
                async with self.engine.begin() as connection:
                    await connection.execute(insert(AUDIT_LOG), entries)
        except BaseException as error:
            self._entries[:0] = entries
            if not isinstance(error, Exception):
                raise
            log.exception("audit log: %d entries not written yet; will retry", len(entries))
            await asyncio.sleep(self.max_delay)
            return
        self.written += len(entries)

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is waiting: let the running batch finish, then one last try."""
        self._wake.set()
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # its entries go back to the buffer (see flush)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._entries:
            log.error("audit log: %d entries could not be written at shutdown", len(self._entries))
