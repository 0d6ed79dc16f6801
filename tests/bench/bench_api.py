"""Benchmark of the HTTP API over a million call records: latency, requests/s, CSV export.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_api
    /work/main/.venv/bin/python -m tests.bench.bench_api --quick
    /work/main/.venv/bin/python -m tests.bench.bench_api --backends postgresql --profile
    /work/main/.venv/bin/python -m tests.bench --only bench_api

Method
------
For each backend a fresh store is made (a SQLite file in a temporary
directory; a throwaway PostgreSQL database ``callgate_bench_<random>`` on the
server the store tests use, see :mod:`tests.support.databases`), migrated
and filled by :mod:`tests.bench.api_seed`: ``--rows`` calls of tenant
``acme`` over 90 days and a tenth as many of tenant ``globex`` (so every
query really is scoped to its tenant), loaded through the driver (COPY on
PostgreSQL, ``executemany`` on SQLite) with the real schema and indexes.
A reader key of ``acme`` is made with :func:`gateway.store.keys.create_key`.

Three processes, or more. The API server runs as ``callgate api`` does
(:func:`gateway.api.commands.serve_api`: ``make_engine``, ``migrate``,
:class:`gateway.api.server.ApiServer` on the gateway's event loop,
:func:`gateway.app.new_event_loop`, uvloop when installed; default pools,
the default key cache; :func:`gateway.app.settle_for_serving` once it is
up), on 127.0.0.1 with a free port. Each measurement is made with each
count of ``--workers`` in turn (1 and 2 by default): one worker is pinned to
one core (``--server-cpu``), as one ``callgate api`` process pins itself;
several are pinned as ``callgate api --workers N`` pins them (round robin
over the machine's CPUs, :mod:`gateway.api.workers`) and listen on one port
with ``SO_REUSEPORT``, the first running retention. The load generator runs
pinned to another core (``--client-cpu``) against one worker, and where the
kernel puts it against several (on a 2-core machine it shares the workers'
cores; pinned to one of them it made that worker the slow one and the p99
worse): ``--clients`` concurrent clients, each on a keep-alive connection of
its own (:mod:`tests.bench.http_load`: prepared requests, answers read as
far as their ``Content-Length``, so the generator takes as little of the
machine's two cores as it can), each sending its next request as soon as
the previous answer has been read in full (a closed loop). Then the same clients send ``--rate``
requests/s between them (2,200 by default) on a schedule: client ``i`` is due
at ``i / rate`` and every ``clients / rate`` seconds after, and sends when due
or, if its previous answer came late, at once. The parent only orchestrates.
PostgreSQL's own processes are not pinned: they share the two cores.

Each measurement runs ``--warmup`` seconds unmeasured, then ``--duration``
seconds measured. In a closed loop a request counts when its answer's last
byte arrives in the measured window, and its latency runs from the request
being sent to that last byte. On a schedule a request counts when it was due
in the window (its answer may come after it), and its latency runs from when
it was due if it went out late (so a stall counts for every request it held
up, the correction for coordinated omission that wrk2 makes; the
generator's timers have 1 ms resolution, so this can only add). An answer
slower than 30 s is an error. Requests/s is the count over the window.

"over 20 ms" counts the stretches of the window in which answers took longer
than the target (answers under 0.1 s apart make one stretch) and gives the
longest: slow answers spread over the window are a load near capacity, a few
long stretches a stall of the server or the host.

The closed loop measures capacity: with 32 requests always outstanding, its
mean latency is 32 / throughput (Little's law) and its p99 is mostly the
queue. The latency target is judged on the scheduled load, which holds the
rate the target names; "target" says which row judges what. Every request
picks its URL at random from the measurement's set:

- ``first page``: ``/v1/calls?limit=100``, the newest 100 calls;
- ``1-day range``: ``from``/``to`` one of the 90 days (UTC midnight to midnight);
- ``number``: one of 500 outside numbers (each in a few dozen calls);
- ``answered``: ``disposition=answered``; ``direction``: inbound or outbound;
- ``next page``: the ``next`` link (cursor) of the first page of a 1-day range,
  and pages 2 to 101 of the unfiltered listing, gathered before the run;
- ``stats 7 d/day``: ``/v1/stats`` over one of the 7-day windows by day;
- ``stats 90 d/week``: ``/v1/stats`` over the whole 90 days by week.

Every listing has ``limit=100``. The answers are checked before the run
(status 200; "rows" is the mean of rows per page over a sample, or of
buckets for stats). "server CPU" is the server process's user + system time
over the measured window (``/proc/<pid>/stat``, summed over the workers) as %
of one core, and "loop" the share of it in the event-loop threads (the rest is the database
driver's threads: aiosqlite runs each connection in a thread of its own);
"GC > 25 ms / full" counts the server's collector pauses over 25 ms in the
window and its full collections, from each worker's own timing of them
(:mod:`gateway.collector_pauses`): a slow spell with such a pause in it is
the collector's;
"client CPU" is the generator's: near 100 % means it, not the server, set
the pace. "machine" is the busy cores of the whole machine (``/proc/stat``),
PostgreSQL and any other load on the host included. "fails" counts
connection errors and answers other than 200 from the warm-up on, those that
came after the window included (a request that waits 30 s for a pooled
database connection gets a 500).

CSV export (with the first worker count): ``GET /v1/calls?format=csv`` of all
of ``acme``'s calls, by one client reading the stream as it comes; the time to
the last byte, the bytes and lines, and the server's memory: VmRSS before, its peak (VmHWM, reset
through ``/proc/<pid>/clear_refs`` just before the export, and VmRSS
sampled every 20 ms) and after. Memory counts as flat when the peak is
within :data:`FLAT_MIB` MiB of the start.

``--profile`` repeats (with the first worker count) the first-page and the
7-day stats measurements with cProfile on in the first server's event-loop
thread (not the driver threads) and prints where that thread's own time goes.
cProfile inflates every Python call: read it for shares, not for figures.

Targets: a 100-row page with p99 under 20 ms at over 2,000 requests/s;
the CSV export of a million rows in under 10 s with flat memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing
import multiprocessing.connection
import os
import pstats
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from sqlalchemy import func, select

from gateway.api.server import ApiServer
from gateway.api.workers import worker_cpus
from gateway.app import API_GC_THRESHOLDS, new_event_loop, settle_for_serving
from gateway.collector_pauses import PAUSES
from gateway.config import Settings
from gateway.store.engine import make_engine, migrate
from gateway.store.export import SQLITE_SHELL
from gateway.store.keys import create_key
from gateway.store.models import CALLS
from tests.bench.api_seed import DAYS, DEFAULT_SEED, END, START, TENANT, external_numbers
from tests.bench.api_seed import seed as seed_rows
from tests.bench.collector import (
    LONG_PAUSE_S,
    GenerationPauses,
    pauses_of_record,
    step_pauses,
)
from tests.bench.common import (
    MachineCpu,
    format_table,
    machine_lines,
    print_title,
    process_cpu_s,
    process_rss_bytes,
)
from tests.bench.http_load import LoadResult, run_load, slow_spells

TARGET_P99_MS = 20.0
TARGET_RPS = 2000.0
TARGET_CSV_S = 10.0
DEFAULT_RATE = 2200.0
FLAT_MIB = 64
PAGE = 100
NUMBER_SAMPLE = 500
DEEP_PAGES = 100
BENCH_DB_PREFIX = "callgate_bench_"
SUBJECT_HASH_KEY = "bench-subject-hash-key-0123456789"
PROFILE_SCENARIOS = ("first page", "stats 7 d/day")
PROFILE_TOP = 22
MIB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    """One measurement: a name, and the URLs (path and query) its requests pick from."""

    name: str
    urls: tuple[str, ...]
    listing: bool = True


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _calls_url(**params: Any) -> str:
    return "/v1/calls?" + urlencode({"limit": PAGE, **params})


def base_scenarios(numbers: Sequence[str]) -> list[Scenario]:
    """Every measurement but ``next page`` (its links come from the server)."""
    days = [START + timedelta(days=day) for day in range(DAYS)]
    weeks = [START + timedelta(days=day) for day in range(DAYS - 6)]
    stats = "/v1/stats?"
    return [
        Scenario("first page", (_calls_url(),)),
        Scenario(
            "1-day range",
            tuple(
                _calls_url(**{"from": _instant(d), "to": _instant(d + timedelta(1))}) for d in days
            ),
        ),
        Scenario("number", tuple(_calls_url(number=number) for number in numbers)),
        Scenario("answered", (_calls_url(disposition="answered"),)),
        Scenario("direction", (_calls_url(direction="inbound"), _calls_url(direction="outbound"))),
        Scenario(
            "stats 7 d/day",
            tuple(
                stats
                + urlencode(
                    {"from": _instant(w), "to": _instant(w + timedelta(7)), "bucket": "day"}
                )
                for w in weeks
            ),
            listing=False,
        ),
        Scenario(
            "stats 90 d/week",
            (stats + urlencode({"from": _instant(START), "to": _instant(END), "bucket": "week"}),),
            listing=False,
        ),
    ]


# ------------------------------------------------------------------------ the server process


def bench_settings(url: str, recording_dir: str, port: int = 0) -> Any:
    """Settings of the measured API: the two seeded tenants, ``port`` (0: a free one) on
    loopback."""
    return Settings.model_validate(
        {
            "instance_id": "bench",
            "store": {"url": url},
            "recording": {"dir": recording_dir},
            "api": {"host": "127.0.0.1", "port": port, "subject_hash_key": SUBJECT_HASH_KEY},
            "tenants": [
                {
                    "name": "acme",
                    "default_region": "US",
                    "pbx": {"host": "10.0.0.10"},
                    "trunk": {"host": "198.51.100.20"},
                },
                {
                    "name": "globex",
                    "default_region": "DE",
                    "pbx": {"host": "10.0.1.10"},
                    "trunk": {"host": "198.51.100.30"},
                },
            ],
        }
    )


def _place(filename: str) -> str:
    if filename == "~":
        return "(built-in)"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    root = Path(__file__).resolve().parents[2]
    with contextlib.suppress(ValueError):
        return str(Path(filename).resolve().relative_to(root))
    return Path(filename).name


def profile_lines(profiler: cProfile.Profile) -> list[str]:
    """The functions with the most own time, and own time summed by file or package.

    Only own time is shown: a coroutine's cumulative time under cProfile also
    counts the time it spent suspended, so it says nothing about CPU.
    """
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    lines = [f"event-loop thread: {total:.2f} s of own time; by function:"]
    for (filename, line, name), (_, calls, own, _, _) in sorted(
        stats.items(), key=lambda item: item[1][2], reverse=True
    )[:PROFILE_TOP]:
        where = name if filename == "~" else f"{_place(filename)}:{line} {name}"
        lines.append(f"  {100 * own / total:5.1f}%  {calls:>9} calls  {where}")
    by_place: Counter[str] = Counter()
    for (filename, _, _), entry in stats.items():
        place = _place(filename)
        by_place[
            place.split("/", 1)[0] if "/" in place and not place.startswith("gateway") else place
        ] += entry[2]
    lines.append("by file (gateway) or package:")
    for place, own in by_place.most_common(12):
        lines.append(f"  {100 * own / total:5.1f}%  {place}")
    return lines


async def _serve(
    conn: multiprocessing.connection.Connection, url: str, recording_dir: str, worker: Worker
) -> None:
    settings = bench_settings(url, recording_dir, worker.port)
    engine = make_engine(settings.store.url)
    # as serve_api does in a worker of `callgate api --workers N`
    several = worker.count > 1
    server = ApiServer(settings, engine, reuse_port=several, retention=worker.index == 0)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    profiler: cProfile.Profile | None = None
    try:
        await migrate(engine)
        await server.start()
        settle_for_serving(API_GC_THRESHOLDS)
        conn.send(("ready", server.port))
        while True:
            message = await inbox.get()
            if message == "profile-start":
                profiler = cProfile.Profile()
                profiler.enable()
                conn.send("ok")
            elif message == "pauses":
                conn.send(pauses_of_record(PAUSES))
            elif message == "profile-stop" and profiler is not None:
                profiler.disable()
                conn.send(profile_lines(profiler))
                profiler = None
            else:
                break
    finally:
        loop.remove_reader(conn.fileno())
        await server.stop()
        await engine.dispose()


@dataclass(frozen=True)
class Worker:
    """One server process of ``count``: its index, CPU, and port (0 for the first)."""

    index: int
    count: int
    cpu: int
    port: int = 0


def server_main(
    conn: multiprocessing.connection.Connection, url: str, recording_dir: str, worker: Worker
) -> None:
    os.sched_setaffinity(0, {worker.cpu})
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(conn, url, recording_dir, worker))


# ------------------------------------------------------------------------ the load generator


@dataclass
class CsvResult:
    status: int
    seconds: float
    first_byte_s: float
    bytes_read: int
    lines: int


async def _fetch(base: str, key: str, urls: Sequence[str]) -> list[tuple[int, Any]]:
    answers: list[tuple[int, Any]] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        for path in urls:
            async with session.get(base + path, headers=headers) as response:
                answers.append((response.status, await response.json(content_type=None)))
    return answers


async def _csv(base: str, key: str, path: str) -> CsvResult:
    lines = read = 0
    first = 0.0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        began = time.perf_counter()
        async with session.get(base + path, headers={"Authorization": f"Bearer {key}"}) as answer:
            async for chunk in answer.content.iter_chunked(1 << 16):
                if not read:
                    first = time.perf_counter() - began
                read += len(chunk)
                lines += chunk.count(b"\n")
            status = answer.status
        seconds = time.perf_counter() - began
    return CsvResult(status, seconds, first, read, lines)


async def _generator(conn: multiprocessing.connection.Connection) -> None:
    while True:
        job = await asyncio.to_thread(conn.recv)
        kind, args = job
        if kind == "load":
            conn.send(await run_load(*args))
        elif kind == "fetch":
            conn.send(await _fetch(*args))
        elif kind == "csv":
            conn.send(await _csv(*args))
        else:
            return


def generator_main(conn: multiprocessing.connection.Connection, cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_generator(conn))


# ------------------------------------------------------------------------ databases


@contextlib.contextmanager
def bench_database(backend: str, args: argparse.Namespace) -> Iterator[tuple[str, bool]]:
    """The store's URL, and whether it still needs its rows; dropped unless kept."""
    if backend == "sqlite":
        if args.sqlite_file:
            path = Path(args.sqlite_file).resolve()
            yield f"sqlite:///{path}", not _sqlite_has_rows(path)
            return
        directory = tempfile.mkdtemp(prefix="callgate-bench-api-")
        path = Path(directory) / "calls.sqlite3"
        try:
            yield f"sqlite:///{path}", True
        finally:
            if args.keep_db:
                print(f"kept the SQLite store: {path}")
            else:
                for leftover in Path(directory).iterdir():
                    leftover.unlink()
                os.rmdir(directory)
        return
    from tests.support.databases import connect_admin, postgres_admin_url, run_blocking

    admin = postgres_admin_url()
    if args.pg_database:
        url = admin.set(database=args.pg_database)

        async def has_rows() -> bool:
            connection = await connect_admin(url)
            try:
                return bool(
                    await connection.fetchval(
                        "SELECT to_regclass('calls') IS NOT NULL AND EXISTS (SELECT 1 FROM calls)"
                    )
                )
            except Exception:
                return False
            finally:
                await connection.close()

        exists = run_blocking(_database_exists(admin, args.pg_database))
        if not exists:
            run_blocking(_create_database(admin, args.pg_database))
        yield url.render_as_string(hide_password=False), not run_blocking(has_rows)
        return
    name = f"{BENCH_DB_PREFIX}{secrets.token_hex(5)}"
    run_blocking(_create_database(admin, name))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False), True
    finally:
        if args.keep_db:
            print(f"kept the PostgreSQL database: {name}")
        else:
            run_blocking(_drop_database(admin, name))


def _database_exists(admin: Any, name: str) -> Any:
    from tests.support.databases import connect_admin

    async def check() -> bool:
        connection = await connect_admin(admin)
        try:
            return bool(
                await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
            )
        finally:
            await connection.close()

    return check


def _create_database(admin: Any, name: str) -> Any:
    from tests.support.databases import connect_admin

    async def create() -> None:
        connection = await connect_admin(admin)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    return create


def _drop_database(admin: Any, name: str) -> Any:
    from tests.support.databases import connect_admin

    if not name.startswith(BENCH_DB_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database")

    async def drop() -> None:
        connection = await connect_admin(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    return drop


def _sqlite_has_rows(path: Path) -> bool:
    import sqlite3

    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(path)) as connection:
        try:
            return connection.execute("SELECT EXISTS (SELECT 1 FROM calls)").fetchone()[0] == 1
        except sqlite3.OperationalError:
            return False


async def _prepare(url: str, rows: int, needs_rows: bool, seed: int) -> tuple[str, str, Any]:
    """Seed when needed, make a reader key of ``acme``; (key, summary line, seed report)."""
    report = None
    if needs_rows:
        report = await seed_rows(url, rows, seed=seed)
    engine = make_engine(url)
    try:
        key, _ = await create_key(engine, TENANT, "reader", name="bench")
        async with engine.connect() as connection:
            counts = dict(
                (
                    await connection.execute(
                        select(CALLS.c.tenant, func.count()).group_by(CALLS.c.tenant)
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    summary = ", ".join(f"{tenant} {count:,}" for tenant, count in sorted(counts.items()))
    return key, summary, report


# ------------------------------------------------------------------------ measuring


@dataclass
class Measurement:
    backend: str
    workers: int
    scenario: str
    offered: float
    """Requests/s sent on a schedule; 0 for a closed loop."""
    result: LoadResult
    rows: float
    server_cpu: float
    loop_share: float
    client_cpu: float
    machine_cores: float
    collector: list[GenerationPauses] | None
    """The server's collector pauses in the window, per generation, summed over its
    workers; None when it does not time them."""

    @property
    def rps(self) -> float:
        return len(self.result.latencies_ms) / self.result.window_s

    def percentile(self, share: float) -> float:
        values = sorted(self.result.latencies_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(share * len(values)))]

    def spells(self) -> str:
        """Stretches with answers over the p99 target: how many, the longest (``-``: none)."""
        found = slow_spells(self.result, TARGET_P99_MS)
        if not found:
            return "-"
        return f"{len(found)}, {max(length for _, length in found):.2f} s"

    def long_pauses(self) -> str:
        """Collector pauses over :data:`LONG_PAUSE_S` in the window, and the full
        collections among all of them (``-``: not timed)."""
        if self.collector is None:
            return "-"
        long = sum(generation.over(LONG_PAUSE_S) for generation in self.collector)
        return f"{long} / {self.collector[-1].count}"

    @property
    def failures(self) -> int:
        return self.result.errors + self.result.failed

    @property
    def load(self) -> str:
        return f"{self.offered:,.0f}/s" if self.offered else "closed"

    def verdict(self) -> str:
        """Latency is judged at a scheduled load; a closed loop shows the capacity.

        With N clients in a closed loop the mean latency is N / throughput
        (Little's law), so its p99 says how long N queued requests wait, not
        how fast the server answers at a given rate.
        """
        p99 = self.percentile(0.99)
        misses = []
        if self.offered and p99 >= TARGET_P99_MS:
            misses.append(f"p99 {p99 / TARGET_P99_MS:.1f}x the {TARGET_P99_MS:.0f} ms")
        if self.rps <= TARGET_RPS:
            misses.append(f"{self.rps / TARGET_RPS:.0%} of {TARGET_RPS:,.0f}/s")
        return "met" if not misses else "MISSED: " + ", ".join(misses)


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of every thread of ``pid`` (``/proc/<pid>/task/<tid>/stat``)."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ProcessLookupError):
            found[int(task.name)] = process_cpu_s_path(task / "stat")
    return found


def process_cpu_s_path(path: Path) -> float:
    text = path.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (``/proc/<pid>/status``)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current VmRSS (proc(5) clear_refs, value 5); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class CsvMeasurement:
    backend: str
    result: CsvResult
    rss_before_kib: int
    peak_kib: int
    rss_after_kib: int
    peak_from_hwm: bool

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.rss_before_kib) / 1024

    def verdict(self) -> str:
        misses = []
        if self.result.seconds >= TARGET_CSV_S:
            misses.append(f"{self.result.seconds:.1f} s")
        if self.growth_mib > FLAT_MIB:
            misses.append(f"memory grew {self.growth_mib:.0f} MiB")
        return "met" if not misses else "MISSED: " + ", ".join(misses)


@dataclass
class Backend:
    """One backend's server and generator processes, and what was measured on them."""

    name: str
    base: str
    key: str
    servers: list[multiprocessing.process.BaseProcess]
    server_conns: list[multiprocessing.connection.Connection]
    generator: multiprocessing.process.BaseProcess
    generator_conn: multiprocessing.connection.Connection
    measurements: list[Measurement] = field(default_factory=list)

    def ask(self, kind: str, *args: Any) -> Any:
        self.generator_conn.send((kind, args))
        return self.generator_conn.recv()

    @property
    def server(self) -> multiprocessing.process.BaseProcess:
        """The first (or only) server process."""
        return self.servers[0]

    @property
    def server_conn(self) -> multiprocessing.connection.Connection:
        return self.server_conns[0]

    def _collector_pauses(self) -> list[GenerationPauses]:
        """Every server's collector pauses so far, per generation, summed; empty when a
        server does not time them."""
        readings: list[list[GenerationPauses]] = []
        for conn in self.server_conns:
            conn.send("pauses")
            readings.append(conn.recv())
        if not all(readings):
            return []
        return [sum(generation[1:], generation[0]) for generation in zip(*readings, strict=True)]

    def _server_threads(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for server in self.servers:
            assert server.pid is not None
            found.update(thread_cpu_s(server.pid))
        return found

    def measure(
        self, scenario: Scenario, rows: float, args: argparse.Namespace, rate: float = 0.0
    ) -> Measurement:
        generator_pid = self.generator.pid
        assert generator_pid is not None
        loops = {server.pid for server in self.servers}
        load = (self.base, self.key, scenario.urls, args.clients, args.warmup, args.duration, rate)
        self.generator_conn.send(("load", load))
        time.sleep(args.warmup)
        # the pauses' window holds the CPU window, which the sleep alone times: asking a
        # busy worker for its pauses may take a while
        pauses = self._collector_pauses()
        machine = MachineCpu.read()
        threads = self._server_threads()
        client = process_cpu_s(generator_pid)
        began = time.perf_counter()
        time.sleep(args.duration)
        wall = time.perf_counter() - began
        machine_after = MachineCpu.read()
        threads_after = self._server_threads()
        client_after = process_cpu_s(generator_pid)
        pauses_after = self._collector_pauses()
        result: LoadResult = self.generator_conn.recv()
        used = {tid: threads_after[tid] - threads.get(tid, 0.0) for tid in threads_after}
        total = sum(used.values())
        in_loops = sum(cpu for tid, cpu in used.items() if tid in loops)
        measurement = Measurement(
            self.name,
            len(self.servers),
            scenario.name,
            rate,
            result,
            rows,
            total / wall,
            in_loops / total if total else 0.0,
            (client_after - client) / wall,
            machine_after.busy_cores_since(machine, wall),
            step_pauses(pauses, pauses_after),
        )
        return measurement

    def export_csv(self, path: str) -> CsvMeasurement:
        pid = self.server.pid
        assert pid is not None
        before = memory_kib(pid)
        reset = reset_peak(pid)
        peak = before["VmRSS"]
        self.generator_conn.send(("csv", (self.base, self.key, path)))
        while not self.generator_conn.poll(0.02):
            peak = max(peak, process_rss_bytes(pid) // 1024)
        result: CsvResult = self.generator_conn.recv()
        after = memory_kib(pid)
        if reset:
            peak = max(peak, after["VmHWM"])
        return CsvMeasurement(self.name, result, before["VmRSS"], peak, after["VmRSS"], reset)

    def profile(self, scenario: Scenario, args: argparse.Namespace) -> list[str]:
        self.server_conn.send("profile-start")
        self.server_conn.recv()
        self.measure(scenario, 0.0, args)
        self.server_conn.send("profile-stop")
        lines: list[str] = self.server_conn.recv()
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.generator_conn.send(("stop", ()))
        for conn in self.server_conns:
            with contextlib.suppress(OSError):
                conn.send("stop")
        for process in (self.generator, *self.servers):
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)


def server_cpus(workers: int, args: argparse.Namespace) -> list[int]:
    """One worker on ``--server-cpu``; several pinned as ``callgate api --workers`` pins
    them (round robin over the machine's CPUs)."""
    if workers == 1:
        return [args.server_cpu]
    pinned = worker_cpus(workers, set(args.cpus))
    return [cpu if cpu is not None else args.server_cpu for cpu in pinned]


def start_backend(
    name: str, url: str, key: str, args: argparse.Namespace, recording_dir: str, workers: int
) -> Backend:
    ctx = multiprocessing.get_context("spawn")
    servers: list[multiprocessing.process.BaseProcess] = []
    conns: list[multiprocessing.connection.Connection] = []
    port = 0
    for index, cpu in enumerate(server_cpus(workers, args)):
        server_conn, server_end = ctx.Pipe()
        server = ctx.Process(
            target=server_main,
            args=(server_end, url, recording_dir, Worker(index, workers, cpu, port)),
            name=f"callgate-api-{index}",
            daemon=True,
        )
        server.start()
        servers.append(server)
        conns.append(server_conn)
        deadline = time.monotonic() + 120
        while not server_conn.poll(0.5) and server.is_alive() and time.monotonic() < deadline:
            pass
        if not server_conn.poll(0):
            for started in servers:
                started.terminate()
            raise RuntimeError(
                f"the API server exited with {server.exitcode} (its error is above)"
                if not server.is_alive()
                else "the API server did not start within 120 s"
            )
        _, port = server_conn.recv()
    generator_conn, generator_end = ctx.Pipe()
    generator = ctx.Process(
        target=generator_main,
        # its own core against one worker; where the kernel puts it against several
        args=(generator_end, {args.client_cpu} if workers == 1 else set(args.cpus)),
        name="callgate-api-load",
        daemon=True,
    )
    generator.start()
    return Backend(name, f"http://127.0.0.1:{port}", key, servers, conns, generator, generator_conn)


def rows_per_answer(answers: Sequence[tuple[int, Any]], listing: bool) -> tuple[float, list[int]]:
    """Mean rows (or stats buckets) per answer, and the statuses that were not 200."""
    counts = []
    bad = []
    for status, body in answers:
        if status != 200:
            bad.append(status)
            continue
        counts.append(len(body["calls"]) if listing else len(body["buckets"]))
    return (sum(counts) / len(counts) if counts else 0.0), bad


def next_page_scenario(backend: Backend, scenarios: Sequence[Scenario]) -> Scenario:
    """Page 2 of every 1-day range, and pages 2 to 101 of the whole listing."""
    days = next(s for s in scenarios if s.name == "1-day range")
    links = [
        body["next"] for status, body in backend.ask("fetch", backend.base, backend.key, days.urls)
    ]
    path = _calls_url()
    for _ in range(DEEP_PAGES):
        ((status, body),) = backend.ask("fetch", backend.base, backend.key, [path])
        if status != 200 or not body["next"]:
            break
        path = body["next"]
        links.append(path)
    return Scenario("next page", tuple(link for link in links if link))


def measure_scenarios(
    backend: Backend, scenarios: Sequence[Scenario], args: argparse.Namespace
) -> list[Measurement]:
    measurements = []
    for scenario in scenarios:
        sample = list(scenario.urls[:50])
        rows, bad = rows_per_answer(
            backend.ask("fetch", backend.base, backend.key, sample), scenario.listing
        )
        if bad:
            raise RuntimeError(f"{backend.name} {scenario.name}: answers {sorted(set(bad))}")
        for rate in (0.0, args.rate) if args.rate else (0.0,):
            measurement = backend.measure(scenario, rows, args, rate)
            measurements.append(measurement)
            print(
                f"{backend.name:<10} {len(backend.servers)} worker(s) {scenario.name:<16} "
                f"{measurement.load:>8} {measurement.rps:8,.0f}/s  "
                f"p50 {measurement.percentile(0.5):6.1f} ms  "
                f"p99 {measurement.percentile(0.99):6.1f} ms  "
                f"server CPU {measurement.server_cpu:.0%}",
                flush=True,
            )
    return measurements


def run_backend(
    name: str, args: argparse.Namespace, numbers: Sequence[str]
) -> tuple[list[Measurement], CsvMeasurement | None, dict[str, list[str]]]:
    measurements: list[Measurement] = []
    profiles: dict[str, list[str]] = {}
    csv: CsvMeasurement | None = None
    with bench_database(name, args) as (url, needs_rows), tempfile.TemporaryDirectory() as rec:
        began = time.perf_counter()
        key, summary, report = asyncio.run(_prepare(url, args.rows, needs_rows, args.seed))
        if report is not None:
            total = report.total_rows
            print(
                f"{name}: loaded {total:,} calls in {time.perf_counter() - began:.0f} s "
                f"(generating {report.generate_s:.0f} s, loading {report.load_s:.0f} s "
                f"= {total / max(report.load_s, 1e-9):,.0f} rows/s, indexes {report.index_s:.0f} s"
                + (f", VACUUM ANALYZE {report.analyze_s:.0f} s" if report.analyze_s else "")
                + (f", CHECKPOINT {report.checkpoint_s:.0f} s" if report.checkpoint_s else "")
                + (
                    f", CHECKPOINT refused: {report.checkpoint_refused}"
                    if report.checkpoint_refused
                    else ""
                )
                + ")"
            )
        print(f"{name}: calls per tenant: {summary}", flush=True)
        scenarios: list[Scenario] | None = None
        for workers in args.workers:
            backend = start_backend(name, url, key, args, rec, workers)
            try:
                if scenarios is None:
                    scenarios = base_scenarios(numbers)
                    scenarios.insert(5, next_page_scenario(backend, scenarios))
                    if args.requests:
                        scenarios = [s for s in scenarios if s.name in args.requests]
                measurements += measure_scenarios(backend, scenarios, args)
                if workers != args.workers[0]:
                    continue  # profile and CSV export with the first worker count only
                if args.profile:
                    for scenario in scenarios:
                        if scenario.name in PROFILE_SCENARIOS:
                            profiles[scenario.name] = backend.profile(scenario, args)
                if not args.no_csv:
                    csv = backend.export_csv("/v1/calls?format=csv")
                    print(
                        f"{name:<10} CSV export: {csv.result.lines - 1:,} rows in "
                        f"{csv.result.seconds:.1f} s, peak RSS +{csv.growth_mib:.0f} MiB",
                        flush=True,
                    )
            finally:
                backend.close()
    return measurements, csv, profiles


# ------------------------------------------------------------------------ report


def print_method(args: argparse.Namespace) -> None:
    print(__doc__.split("Method\n------\n", 1)[1].rstrip())
    print()
    print(
        f"rows: {args.rows:,} of acme (+{args.rows // 10:,} of globex); backends "
        f"{','.join(args.backends)}; {args.clients} clients, closed loop"
        + (f" then {args.rate:,.0f} requests/s on a schedule" if args.rate else "")
        + f"; {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured per row; one worker on CPU {args.server_cpu}; "
        + "".join(
            f"{count} workers on CPUs {','.join(map(str, server_cpus(count, args)))}; "
            for count in args.workers
            if count > 1
        )
        + f"generator on CPU {args.client_cpu} (on any with several workers)"
    )
    if not args.rate:
        print("p99 is not judged: no scheduled load (--rate 0); closed loops show capacity")
    elif args.rate <= TARGET_RPS:
        print(f"note: --rate {args.rate:,.0f} is not over the target's {TARGET_RPS:,.0f}/s")
    print(flush=True)


HEADERS = [
    "backend",
    "workers",
    "request",
    "load",
    "rows",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    f"over {TARGET_P99_MS:.0f} ms (spells, longest)",
    f"GC > {LONG_PAUSE_S * 1000:g} ms / full",
    "server CPU",
    "loop",
    "client CPU",
    "machine",
    "fails",
    "target (>2,000/s; p99<20 ms at a scheduled load)",
]


def measurement_row(m: Measurement) -> list[str]:
    return [
        m.backend,
        str(m.workers),
        m.scenario,
        m.load,
        f"{m.rows:.0f}",
        f"{m.rps:,.0f}",
        f"{m.percentile(0.5):.1f}",
        f"{m.percentile(0.9):.1f}",
        f"{m.percentile(0.99):.1f}",
        f"{max(m.result.latencies_ms, default=float('nan')):.1f}",
        m.spells(),
        m.long_pauses(),
        f"{m.server_cpu:.0%}",
        f"{m.loop_share:.0%}",
        f"{m.client_cpu:.0%}",
        f"{m.machine_cores:.2f}",
        str(m.failures),
        m.verdict(),
    ]


CSV_HEADERS = [
    "backend",
    "rows",
    "MiB",
    "seconds",
    "first byte s",
    "rows/s",
    "RSS before MiB",
    "peak +MiB",
    "after +MiB",
    f"target (<{TARGET_CSV_S:.0f} s, flat memory)",
]


def csv_row(c: CsvMeasurement) -> list[str]:
    rows = max(0, c.result.lines - 1)
    return [
        c.backend,
        f"{rows:,}",
        f"{c.result.bytes_read / MIB:.0f}",
        f"{c.result.seconds:.1f}",
        f"{c.result.first_byte_s:.2f}",
        f"{rows / c.result.seconds:,.0f}",
        f"{c.rss_before_kib / 1024:.0f}",
        f"{c.growth_mib:.0f}" + ("" if c.peak_from_hwm else " (sampled)"),
        f"{(c.rss_after_kib - c.rss_before_kib) / 1024:.0f}",
        c.verdict() + ("" if c.result.status == 200 else f" (status {c.result.status})"),
    ]


# ------------------------------------------------------------------------ main


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_api", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, help="calls of the measured tenant (1,000,000)")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        type=lambda text: [item.strip() for item in text.split(",") if item.strip()],
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"after each closed loop, the same clients at this many requests/s on a "
        f"schedule ({DEFAULT_RATE:,.0f}); 0: closed loops only",
    )
    parser.add_argument("--duration", type=float, help="measured seconds per row (10)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each (2)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 3 s per row")
    parser.add_argument("--keep-db", action="store_true", help="keep the stores made")
    parser.add_argument("--sqlite-file", help="use (and seed if empty) this SQLite file; kept")
    parser.add_argument("--pg-database", help="use (and seed if empty) this database; kept")
    parser.add_argument("--server-cpu", type=int, default=cpus[0])
    parser.add_argument("--client-cpu", type=int, default=cpus[-1])
    parser.add_argument(
        "--workers",
        default="1,2",
        type=lambda text: [int(item) for item in text.split(",") if item.strip()],
        help="server processes to measure with, in turn (1,2); CSV and profile with the first",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV export")
    parser.add_argument(
        "--requests",
        type=lambda text: [item.strip() for item in text.split(",") if item.strip()],
        help="measure only these requests, by name ('first page,stats 7 d/day'); default all",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the first page and 7-day stats"
    )
    args = parser.parse_args(argv)
    args.cpus = cpus  # the machine's, before this process pins itself to the generator's
    if args.rows is None:
        args.rows = 100_000 if args.quick else 1_000_000
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown or not args.backends:
        parser.error(f"--backends: sqlite and/or postgresql, not {','.join(sorted(unknown))}")
    names = [scenario.name for scenario in base_scenarios(["+15550100"])] + ["next page"]
    if args.requests and set(args.requests) - set(names):
        parser.error(f"--requests: names among {', '.join(names)}")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers: counts of 1 or more, such as 1,2")
    if args.rows < 1000 or args.clients < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rows >= 1000, --clients >= 1, --duration > 0, --warmup >= 0")
    if args.rate < 0:
        parser.error("--rate: requests/s >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_options(argv)
    if args.seed is None:
        args.seed = DEFAULT_SEED
    os.sched_setaffinity(0, {args.client_cpu})
    print_title("bench_api: " + __doc__.split("\n")[0])
    for line in machine_lines():
        print(line)
    if args.server_cpu == args.client_cpu:
        print("note: server and generator share one CPU; the figures are not one core's")
    print_method(args)
    numbers = random.Random(args.seed).sample(external_numbers(args.seed), NUMBER_SAMPLE)
    measurements: list[Measurement] = []
    exports: list[CsvMeasurement] = []
    profiles: dict[tuple[str, str], list[str]] = {}
    for backend in args.backends:
        if backend == "postgresql":
            from tests.support.databases import PostgresUnavailable, postgres_admin_url

            try:
                postgres_admin_url()
            except PostgresUnavailable as error:
                print(f"postgresql skipped: {error}")
                continue
        found, csv, profiled = run_backend(backend, args, numbers)
        measurements.extend(found)
        if csv is not None:
            exports.append(csv)
        profiles.update({(backend, name): lines for name, lines in profiled.items()})
    print()
    print(format_table(HEADERS, [measurement_row(m) for m in measurements]))
    if exports:
        print()
        print("CSV export of every call of acme (one client):")
        print(format_table(CSV_HEADERS, [csv_row(c) for c in exports]))
        if any(c.backend == "sqlite" for c in exports):
            shell = shutil.which(SQLITE_SHELL)
            made_by = f"the {SQLITE_SHELL} shell ({shell})" if shell else "the driver and csv"
            print(f"SQLite's CSV was made by {made_by}; PostgreSQL's by COPY")
    for (backend, name), lines in profiles.items():
        print()
        print(f"profile, {backend}, {name} (cProfile, server event-loop thread):")
        for line in lines:
            print(line)
    failed = any(m.failures for m in measurements) or any(c.result.status != 200 for c in exports)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
