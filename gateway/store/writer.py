"""The record writer: the call path submits, a background task writes in batches.

``submit`` only appends to a queue, so the call path never waits for the
database. The task drains the queue in batches of up to ``batch_size``
operations, waiting at most ``max_delay`` seconds for a batch to fill; the
operations of one call in a batch are coalesced (:mod:`gateway.store.plan`)
and a batch is written in one transaction (:mod:`gateway.store.batch`).
Batches are written one after another in submission order, so a call's
consent events reach the store in the order they were submitted, after the
:class:`CallStart` that creates their call's row.

Failures: a batch that fails for a passing reason (connection lost, database
locked) is retried with exponential backoff until it is written; nothing is
dropped. A batch refused for its data (an integrity or data error) is split
per call and then per operation, so only the operation the database refuses
is set aside, with an error in the log.

Where: a SQLite file is written on a thread and a ``sqlite3`` connection of the
writer's own (:mod:`gateway.store.sqlite_writes`), a batch in one hop from the
event loop; PostgreSQL and an in-memory SQLite database (which no other
connection sees) through the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.batch import write_plans
from gateway.store.engine import SQLITE_DRIVER, sqlite_busy_timeout_ms, sqlite_file
from gateway.store.errors import is_permanent
from gateway.store.ops import (
    WRITE_OP_TYPES,
    CallEnd,
    CallStart,
    CallUpdate,
    ConsentEventRecord,
    RecordingRecord,
    WriteOp,
)
from gateway.store.plan import RowPlan, plan_batch
from gateway.store.sqlite_writes import SqliteWriteThread

__all__ = [
    "CallEnd",
    "CallStart",
    "CallUpdate",
    "ConsentEventRecord",
    "RecordWriter",
    "RecordingRecord",
    "WriteOp",
]

log = logging.getLogger(__name__)

_OP_NAMES = "CallStart, CallUpdate, CallEnd, ConsentEventRecord or RecordingRecord"


class RecordWriter:
    """Batched, coalescing, retrying writer of call records.

    Counters for metrics: :attr:`pending` (submitted, not yet written),
    :attr:`written` (operations written), :attr:`rejected` (operations the
    database refused for their data, or that change a record that does not
    exist), :attr:`batches` (transactions committed), :attr:`failures`
    (failed attempts that were retried).

    ``submit`` must be called from the thread running the event loop.
    ``own_sqlite_connection=False`` writes a SQLite file through the engine too.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 200,
        max_delay: float = 0.05,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        own_sqlite_connection: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {max_delay}")
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError(
                f"need 0 < retry_initial <= retry_max, got {retry_initial} and {retry_max}"
            )
        self.engine = engine
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.written = 0
        self.rejected = 0
        self.batches = 0
        self.failures = 0
        self._submitted = 0
        self._queue: deque[WriteOp] = deque()
        self._oldest_at = 0.0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sqlite = _own_sqlite_writer(engine) if own_sqlite_connection else None

    # ------------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Operations submitted and not yet written (queued or in the batch being written)."""
        return self._submitted - self.written - self.rejected

    def oldest_wait(self) -> float:
        """Seconds the oldest queued operation has waited; 0 when the queue is empty."""
        return time.monotonic() - self._oldest_at if self._queue else 0.0

    @property
    def submitted(self) -> int:
        """Operations accepted by :meth:`submit` since the writer was made."""
        return self._submitted

    @property
    def running(self) -> bool:
        """Whether the background task is draining the queue."""
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------- call path

    def submit(self, op: WriteOp) -> None:
        """Queue ``op`` for writing; returns at once and never waits for the database.

        Raises ``TypeError`` for anything but a :class:`CallStart`,
        :class:`CallUpdate`, :class:`CallEnd`, :class:`ConsentEventRecord` or
        :class:`RecordingRecord`, and ``RuntimeError`` once the writer is stopped.
        """
        if self._closed:
            raise RuntimeError(f"record writer is stopped; {op!r} was not recorded")
        if not isinstance(op, WRITE_OP_TYPES):
            raise TypeError(f"submit() takes {_OP_NAMES}, got {type(op).__name__}")
        queue = self._queue
        if not queue:
            self._oldest_at = time.monotonic()
        queue.append(op)
        self._submitted += 1
        wake = self._wake
        if wake is not None and (len(queue) == 1 or len(queue) >= self.batch_size):
            wake.set()

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the background task; operations submitted before are written too."""
        if self._closed:
            raise RuntimeError("record writer was stopped; make a new one")
        if self._task is not None:
            return
        self._launch()

    def _launch(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="callgate-record-writer")
        self._task.add_done_callback(self._on_task_done)
        if self._queue:
            self._wake.set()

    async def flush(self) -> None:
        """Return once every operation submitted before the call is written (or rejected)."""
        target = self._submitted
        if self._done() >= target:
            return
        if not self.running:
            raise RuntimeError(
                f"record writer is not running; {self.pending} operations cannot be written"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (target, future)
        self._flush_waiters.append(waiter)
        self._nudge()
        try:
            await future
        finally:
            if waiter in self._flush_waiters:
                self._flush_waiters.remove(waiter)

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new operations, write everything queued, then end the task.

        With ``timeout``, give up after that many seconds: the task is
        cancelled, the unwritten count is logged and ``TimeoutError`` raised.
        """
        self._closed = True
        if self._task is None:
            if not self._queue:
                return
            self._launch()
        assert self._task is not None
        self._stopping = True
        self._nudge()
        if timeout is None:
            await self._task
            return
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            log.error(
                "record writer stopped after %.1f s with %d operations unwritten",
                timeout,
                self.pending,
            )
            raise

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _done(self) -> int:
        return self.written + self.rejected

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            reason: BaseException = RuntimeError("record writer was cancelled")
        elif task.exception() is not None:
            reason = task.exception()  # type: ignore[assignment]
            log.error("record writer failed", exc_info=reason)
        else:
            reason = RuntimeError("record writer stopped")
        for _, future in self._flush_waiters:
            if not future.done():
                future.set_exception(reason)
        self._flush_waiters.clear()

    # ------------------------------------------------------------- the drain

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            if self._sqlite is not None and self._closed:
                await self._sqlite.close()

    async def _drain(self) -> None:
        assert self._wake is not None
        wake = self._wake
        queue = self._queue
        while True:
            if not queue:
                if self._stopping:
                    return
                wake.clear()
                await wake.wait()
                continue
            await self._gather(wake)
            count = min(self.batch_size, len(queue))
            batch = [queue.popleft() for _ in range(count)]
            if queue:
                self._oldest_at = time.monotonic()
            await self._write(batch)
            self._settle_flushes()

    async def _gather(self, wake: asyncio.Event) -> None:
        """Wait until a batch is full, ``max_delay`` has passed, or a flush or stop asks."""
        while len(self._queue) < self.batch_size and not self._stopping:
            if self._flush_waiters:
                return
            remaining = self._oldest_at + self.max_delay - time.monotonic()
            if remaining <= 0:
                return
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await wake.wait()

    def _settle_flushes(self) -> None:
        done = self._done()
        still_waiting: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._flush_waiters:
            if target <= done:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((target, future))
        self._flush_waiters = still_waiting

    async def _write(self, batch: list[WriteOp]) -> None:
        """Write ``batch`` until it is in the database; count what was written and refused."""
        attempt = 0
        isolate = False
        while True:
            try:
                if isolate:
                    written, rejected = await self._write_isolated(batch)
                else:
                    written, rejected = await self._write_together(batch, verify_new=attempt > 0)
                break
            except Exception as error:
                if not isolate and is_permanent(error):
                    log.warning(
                        "a batch of %d call-record operations was refused (%s); "
                        "writing its calls one by one",
                        len(batch),
                        _brief(error),
                    )
                    isolate = True
                    continue
                self.failures += 1
                delay = min(self.retry_max, self.retry_initial * 2**attempt)
                attempt += 1
                log.error(
                    "writing %d call-record operations failed (attempt %d), retrying in %.2f s: %s",
                    len(batch),
                    attempt,
                    delay,
                    _brief(error),
                )
                await asyncio.sleep(delay)
        self.written += written
        self.rejected += rejected
        self.batches += 1

    async def _write_together(self, ops: list[WriteOp], *, verify_new: bool) -> tuple[int, int]:
        """One transaction for all of ``ops``; ``(written, rejected)`` operation counts."""
        plans = plan_batch(ops)
        if self._sqlite is not None:
            orphans = await self._sqlite.write(plans, verify_new=verify_new)
        else:
            async with self.engine.begin() as connection:
                orphans = await write_plans(connection, plans, verify_new=verify_new)
        rejected = 0
        for orphan in orphans:
            rejected += len(orphan.ops)
            log.error(
                "call record %s does not exist; dropped %d operation(s) that change it: %r",
                orphan.record_id,
                len(orphan.ops),
                orphan.ops,
            )
        return len(ops) - rejected, rejected

    async def _write_isolated(self, ops: list[WriteOp]) -> tuple[int, int]:
        """Each call in its own transaction; a call that is refused, each of its operations.

        Only permanent errors are absorbed here; a passing one propagates so
        the whole batch is retried (rows already written are then updated,
        not inserted twice).
        """
        written = rejected = 0
        for plan in plan_batch(ops):
            try:
                done, refused = await self._write_together(plan.ops, verify_new=True)
            except Exception as error:
                if not is_permanent(error):
                    raise
                done, refused = await self._write_one_by_one(plan)
            written += done
            rejected += refused
        return written, rejected

    async def _write_one_by_one(self, plan: RowPlan) -> tuple[int, int]:
        written = rejected = 0
        for op in plan.ops:
            try:
                done, refused = await self._write_together([op], verify_new=True)
            except Exception as error:
                if not is_permanent(error):
                    raise
                log.error("call record %s: the database refused %r: %s", plan.record_id, op, error)
                done, refused = 0, 1
            written += done
            rejected += refused
        return written, rejected


def _own_sqlite_writer(engine: AsyncEngine) -> SqliteWriteThread | None:
    """A writing thread for a SQLite file; ``None`` for any other database."""
    url = engine.url
    if url.drivername != SQLITE_DRIVER or sqlite_file(url) is None:
        return None
    return SqliteWriteThread(str(sqlite_file(url)), engine.dialect, sqlite_busy_timeout_ms(engine))


def _brief(error: BaseException) -> str:
    """The first line of an error, with its type: driver messages can run long."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
