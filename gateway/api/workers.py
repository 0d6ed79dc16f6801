"""``callgate api --workers N``: the API served by N processes on one port.

One Python process serves the API on one core (its event loop and its
SQLite reader share the interpreter lock). A standalone API host with more
cores runs several workers: each is a process of its own with its own event
loop, store connections and reader, listening on the same address with
``SO_REUSEPORT``, so the kernel spreads new connections over them
(Linux hashes each connection to one listener).

Each worker is pinned to one CPU of those the parent may use, round robin (a
single ``callgate api`` process pins itself the same way, to the first):
a worker's event loop and its reading thread hand the interpreter lock back
and forth for every read, and across two cores each hand-over waits on the
other core's wake-up. Measured (one worker, 1M calls on SQLite, 32 clients):
a 100-row page 2,821 req/s with the worker on one core, 1,375 req/s free to
run on two.

The parent migrates the store once, reserves the port (a bound socket that
never listens, so the workers can join it; a port another process listens on
is refused, as for one process), starts the workers, starts again one that
dies (after :data:`RESTART_DELAY_S`, doubled for each quick death in a row;
after :data:`QUICK_DEATHS_TO_GIVE_UP` it stops, failed), and on
SIGTERM/SIGINT stops them all (each drains like a single ``callgate api``)
within :data:`STOP_TIMEOUT_S`. A worker whose parent was killed outright
stops within a second. Only the first worker runs retention. Linux only
(:func:`check_workers_supported`). Each worker has its own store connections:
on PostgreSQL, count them per worker against ``max_connections`` (the engine's
pool and four for the API's reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess

from gateway.config import Settings

log = logging.getLogger("gateway.api.workers")

RESTART_DELAY_S = 1.0
"""Wait before starting a worker again that died; doubled for each quick death in a row
(up to :data:`RESTART_DELAY_MAX_S`)."""
RESTART_DELAY_MAX_S = 30.0
QUICK_DEATH_S = 10.0
"""A worker that dies sooner than this after it started died quickly."""
QUICK_DEATHS_TO_GIVE_UP = 5
"""Quick deaths in a row of one worker after which ``callgate api`` stops, failed (it
cannot serve: the store is unreachable, say), rather than start it forever."""
STOP_TIMEOUT_S = 30.0
"""How long stopping workers may take before they are killed."""
WATCH_INTERVAL_S = 0.5


def worker_cpus(count: int, allowed: set[int] | None = None) -> list[int | None]:
    """The CPU each of ``count`` workers is pinned to, round robin over ``allowed`` (the
    process's own set by default); ``None`` for all when there is a single CPU or the
    platform cannot pin."""
    if allowed is None:
        getter = getattr(os, "sched_getaffinity", None)
        allowed = set(getter(0)) if getter is not None else set()
    cpus = sorted(allowed)
    if len(cpus) < 2:
        return [None] * count
    return [cpus[index % len(cpus)] for index in range(count)]


class WorkersUnavailable(Exception):
    """Several workers cannot serve here (no ``SO_REUSEPORT`` spreading connections)."""


def check_workers_supported() -> None:
    """Several workers need Linux: elsewhere ``SO_REUSEPORT`` is missing (Windows) or does
    not spread connections over the listeners (macOS, the BSDs)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise WorkersUnavailable(
            f"api.workers above 1 needs Linux (SO_REUSEPORT), not {sys.platform}: "
            "run one worker, or several `callgate api` behind a load balancer"
        )


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A bound, never listening ``SO_REUSEPORT`` socket on ``host``:``port`` (a free port
    for 0) that keeps the port while the workers join it, and the port.

    A port some other process listens on is refused first (``OSError``,
    EADDRINUSE), as one ``callgate api`` is: with ``SO_REUSEPORT`` alone a second
    instance of the same user would join the port and take half its connections.
    ``host`` may be a name: its first address is reserved."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(address)
    except OSError:
        holder.close()
        raise
    return holder, holder.getsockname()[1]


def _with_port(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})


def pin_process(index: int) -> int | None:
    """Pin this process to the CPU worker ``index`` gets (:func:`worker_cpus`); the CPU, or
    ``None`` where there is one CPU or no pinning."""
    cpu = worker_cpus(index + 1)[index]
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return cpu


def worker_main(settings: Settings, index: int, cpu: int | None, parent: int) -> None:
    """One worker process: logging as the parent's, pinned, serving until SIGTERM."""
    from gateway.api.commands import serve_api
    from gateway.app import new_event_loop
    from gateway.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_api(settings, worker=index, parent=parent))


class Workers:
    """The worker processes of one ``callgate api``."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.cpus = worker_cpus(count)
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess | None] = [None] * count
        self.started_at: list[float] = [0.0] * count
        self.quick_deaths: list[int] = [0] * count

    def start(self, index: int) -> None:
        process = self._context.Process(
            target=worker_main,
            args=(self.settings, index, self.cpus[index], os.getpid()),
            name=f"callgate-api-{index}",
        )
        process.start()
        self.processes[index] = process
        self.started_at[index] = time.monotonic()
        log.info("API worker %d started (pid %s, cpu %s)", index, process.pid, self.cpus[index])

    def dead(self) -> list[int]:
        """Workers that exited on their own."""
        return [
            index
            for index, process in enumerate(self.processes)
            if process is not None and process.exitcode is not None
        ]

    def died(self, index: int) -> float | None:
        """Note that worker ``index`` died: the wait before starting it again, or ``None``
        when it died quickly too many times in a row."""
        self.processes[index] = None
        quick = time.monotonic() - self.started_at[index] < QUICK_DEATH_S
        self.quick_deaths[index] = self.quick_deaths[index] + 1 if quick else 0
        if self.quick_deaths[index] >= QUICK_DEATHS_TO_GIVE_UP:
            return None
        return min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** max(0, self.quick_deaths[index] - 1))

    async def stop(self) -> None:
        live = [process for process in self.processes if process is not None]
        for process in live:
            if process.exitcode is None:
                process.terminate()  # SIGTERM: the worker drains and exits
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT_S
        for process in live:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.to_thread(process.join, left)
            if process.exitcode is None:
                log.error("API worker pid %s did not stop in time: killed", process.pid)
                process.kill()
                await asyncio.to_thread(process.join, 5.0)


async def serve_workers(settings: Settings, count: int) -> int:
    """Serve the API with ``count`` worker processes until SIGTERM/SIGINT."""
    from gateway.store.engine import make_engine, migrate, refresh_statistics

    engine = make_engine(settings.store.url)
    try:
        await migrate(engine)
        await refresh_statistics(engine)
    finally:
        await engine.dispose()
    holder, port = reserve_port(settings.api.host, settings.api.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    workers = Workers(_with_port(settings, port), count)
    failed = False
    try:
        for index in range(count):
            workers.start(index)
        log.info("API on http://%s:%d with %d workers", settings.api.host, port, count)
        while not stop.is_set() and not failed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_S)
            for index in workers.dead() if not stop.is_set() else ():
                process = workers.processes[index]
                assert process is not None
                delay = workers.died(index)
                if delay is None:
                    log.error(
                        "API worker %d (pid %s) exited with %s, the %dth time in a row within "
                        "%g s of starting: stopping the API",
                        index,
                        process.pid,
                        process.exitcode,
                        QUICK_DEATHS_TO_GIVE_UP,
                        QUICK_DEATH_S,
                    )
                    failed = True
                    break
                log.error(
                    "API worker %d (pid %s) exited with %s; starting it again in %g s",
                    index,
                    process.pid,
                    process.exitcode,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                workers.start(index)
    finally:
        await workers.stop()
        holder.close()
    return 1 if failed else 0
