"""Bulk loader of realistic call records for the API benchmark (:mod:`tests.bench.bench_api`).

The schema is the real one: :func:`gateway.store.engine.migrate` runs first.
Rows then go in through the database driver, not the ORM: PostgreSQL by
``COPY`` (asyncpg ``copy_records_to_table``), SQLite by ``executemany`` in one
transaction. The ``calls`` indexes other than the primary key are dropped
before the load and made again afterwards from their own stored definitions
(``pg_indexes.indexdef``, ``sqlite_master.sql``), so the schema ends as
``migrate`` left it. PostgreSQL then gets ``VACUUM ANALYZE calls`` (what
autovacuum would leave behind) and a ``CHECKPOINT``, as SQLite gets a WAL
checkpoint, so the load's writes are done before anything is measured.
SQLite is left as the gateway leaves it otherwise (no ``ANALYZE``: the
gateway never runs one).

SQLite has no date type: instants are stored as the text SQLAlchemy's
``DateTime`` writes. Before loading, one row is written through SQLAlchemy
(:class:`gateway.store.columns.UtcDateTime`), read back raw, compared with
this loader's own formatting and deleted, so a change of that form stops
the load instead of silently breaking the API's range filters and stats.

The data: ``rows`` calls of the measured tenant (``acme``, region US) and
``other_share`` times as many of a second tenant (``globex``, region DE),
over :data:`DAYS` days up to :data:`END`. Start times follow office hours
(weekdays busier than weekends, a midday peak). Each call joins one of the
tenant's own numbers (a pool of :data:`DID_POOL`) and an outside number (a
pool of :data:`EXTERNAL_POOL`, valid E.164), so a number filter on an
outside number matches a few dozen rows. Directions, dispositions, final SIP
statuses, ring and talk times, consent outcomes and capture seconds have
plausible shares; ``answered_at``, ``ended_at``, ``duration_s`` and
``billable_s`` agree as :func:`gateway.store.durations.call_durations` would
make them. Everything is drawn from one seeded generator: the same seed
gives the same rows, and the same numbers to query.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import phonenumbers
from sqlalchemy import delete, insert
from sqlalchemy.engine import make_url

from gateway.store.engine import POSTGRES_DRIVER, SQLITE_DRIVER, async_url, make_engine, migrate
from gateway.store.models import CALLS

END = datetime(2026, 3, 2, tzinfo=UTC)
"""The end of the seeded period (exclusive): a Monday, so weekly buckets line up."""
DAYS = 90
START = END - timedelta(days=DAYS)

TENANT = "acme"
OTHER_TENANT = "globex"
EXTERNAL_POOL = 50_000
DID_POOL = 2_000
BATCH = 50_000
DEFAULT_SEED = 1_000_003

FIELDS: tuple[str, ...] = (
    "id",
    "tenant",
    "call_id",
    "b_call_id",
    "direction",
    "source_number",
    "source_uri",
    "destination_number",
    "destination_uri",
    "source_addr",
    "destination_addr",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "billable_s",
    "disposition",
    "final_status",
    "hangup_by",
    "end_reason",
    "media_stats",
    "gateway_instance",
    "consent_mode",
    "consent_parties",
    "consent_rules",
    "policy_version",
    "consent_outcome",
    "notice_sha256",
    "capture_s",
)
"""The loader's column order (every ``calls`` column, checked at load time)."""

TIMESTAMP_FIELDS = tuple(FIELDS.index(name) for name in ("started_at", "answered_at", "ended_at"))

DISPOSITION_SHARES: tuple[tuple[str, float], ...] = (
    ("answered", 0.71),
    ("no_answer", 0.12),
    ("busy", 0.05),
    ("cancelled", 0.07),
    ("rejected", 0.02),
    ("failed", 0.02),
    ("media_timeout", 0.005),
    ("gateway_restart", 0.005),
)
ANSWERED_OUTCOMES: tuple[tuple[str, float], ...] = (
    ("granted", 0.87),
    ("declined", 0.03),
    ("timed_out", 0.03),
    ("withdrawn", 0.02),
    ("pending", 0.03),
    ("unavailable", 0.02),
)
HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 2, 4, 10, 30, 55, 65, 62, 50, 55, 62, 60, 52, 35, 18, 10, 6, 4, 2, 1,
)  # fmt: skip
"""Relative call volume by UTC hour of the day: office hours, a dip at lunch."""

US_AREA_CODES = (
    "201", "202", "206", "212", "213", "214", "267", "303", "305", "310", "312", "313", "404",
    "415", "469", "503", "512", "602", "617", "646", "678", "702", "713", "718", "770", "773",
    "786", "818", "832", "917",
)  # fmt: skip


@dataclass(frozen=True)
class TenantShape:
    """What differs between the seeded tenants: numbers, hosts and consent rule."""

    name: str
    region: str
    did_prefix: str
    domain: str
    trunk: str
    consent_mode: str
    consent_parties: str
    jurisdiction: str


SHAPES = {
    TENANT: TenantShape(
        TENANT, "US", "+1404", "pbx.acme.example", "trunk.carrier.example", "notice", "one", "US-GA"
    ),
    OTHER_TENANT: TenantShape(
        OTHER_TENANT,
        "DE",
        "+4930",
        "pbx.globex.example",
        "sip.carrier.example",
        "opt_in",
        "all",
        "DE",
    ),
}


@dataclass
class SeedReport:
    """What the loader did and how long each part took."""

    rows: dict[str, int]
    generate_s: float = 0.0
    load_s: float = 0.0
    index_s: float = 0.0
    analyze_s: float = 0.0
    checkpoint_s: float = 0.0
    checkpoint_refused: str = ""
    """Why PostgreSQL refused the ``CHECKPOINT`` (it needs a superuser or pg_checkpoint)."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


# ------------------------------------------------------------------------------- numbers


def _valid(number: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return False


def _number_pool(rng: random.Random, size: int, make: Any) -> list[str]:
    pool: dict[str, None] = {}
    while len(pool) < size:
        number = make(rng)
        if number not in pool and _valid(number):
            pool[number] = None
    return list(pool)


def _us_number(rng: random.Random) -> str:
    exchange = rng.randrange(200, 1000)
    if exchange % 100 == 11 or exchange == 555:
        exchange += 1
    return f"+1{rng.choice(US_AREA_CODES)}{exchange}{rng.randrange(10_000):04d}"


def external_numbers(seed: int = DEFAULT_SEED) -> list[str]:
    """The outside parties' numbers (valid E.164, US), the same for the same seed."""
    return _number_pool(random.Random(seed), EXTERNAL_POOL, _us_number)


def _did_pool(rng: random.Random, shape: TenantShape) -> list[str]:
    if shape.region == "US":
        return _number_pool(
            rng,
            DID_POOL,
            lambda r: f"{shape.did_prefix}{r.randrange(200, 1000)}{r.randrange(10_000):04d}",
        )
    return _number_pool(rng, DID_POOL, lambda r: f"{shape.did_prefix}{r.randrange(10**7, 10**8)}")


# ------------------------------------------------------------------------------- rows


def _start_times(np_rng: np.random.Generator, count: int) -> np.ndarray:
    """Sorted epoch seconds over the period: weekdays 1, weekends 0.3, hours by weight."""
    day_weights = np.array(
        [0.3 if (START + timedelta(days=day)).weekday() >= 5 else 1.0 for day in range(DAYS)]
    )
    days = np_rng.choice(DAYS, size=count, p=day_weights / day_weights.sum())
    hours = np.array(HOUR_WEIGHTS, dtype=float)
    hour = np_rng.choice(24, size=count, p=hours / hours.sum())
    seconds = np_rng.random(count) * 3600.0
    epoch = START.timestamp() + days * 86400.0 + hour * 3600.0 + seconds
    epoch = np.round(epoch, 6)
    epoch.sort()
    return epoch


def _choice(np_rng: np.random.Generator, shares: Sequence[tuple[str, float]], n: int) -> list[str]:
    names = [name for name, _ in shares]
    weights = np.array([share for _, share in shares])
    return [names[i] for i in np_rng.choice(len(names), size=n, p=weights / weights.sum())]


FINAL_STATUS = {
    "answered": (200,),
    "no_answer": (480, 408),
    "busy": (486, 600),
    "cancelled": (487,),
    "rejected": (603, 403),
    "failed": (503, 500, 404),
    "media_timeout": (200,),
    "gateway_restart": (200,),
}
END_REASON = {
    "no_answer": "no answer",
    "busy": "busy",
    "cancelled": "caller cancelled",
    "rejected": "declined",
    "failed": "upstream failure",
    "media_timeout": "no media for 30 s",
    "gateway_restart": "gateway restarted",
}


def tenant_rows(shape: TenantShape, count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """``count`` calls of one tenant in :data:`FIELDS` order, oldest first.

    Instants are timezone-aware ``datetime``; JSON columns are already text.
    """
    rng = random.Random(f"{seed}:{shape.name}")
    np_rng = np.random.default_rng([seed, zlib.crc32(shape.name.encode())])
    outside = (
        external_numbers(seed)
        if shape.region == "US"
        else _number_pool(
            rng,
            EXTERNAL_POOL // 5,
            lambda r: f"+49{r.choice(('30', '40', '89', '69', '221'))}{r.randrange(10**6, 10**7)}",
        )
    )
    dids = _did_pool(rng, shape)
    epochs = _start_times(np_rng, count)
    inbound = np_rng.random(count) < 0.55
    dispositions = _choice(np_rng, DISPOSITION_SHARES, count)
    outcomes = _choice(np_rng, ANSWERED_OUTCOMES, count)
    talk = np.clip(np_rng.lognormal(np.log(140.0), 1.0, count), 2.0, 4 * 3600.0)
    ring = np_rng.uniform(1.5, 22.0, count)
    no_mode = np_rng.random(count) < 0.04
    outside_pick = np_rng.integers(0, len(outside), count)
    did_pick = np_rng.integers(0, len(dids), count)
    jitter = np_rng.gamma(2.0, 1.2, (count, 2))
    loss = np_rng.poisson(0.8, (count, 2))
    instances = ("gw-1", "gw-2")
    rule = json.dumps(
        [
            {
                "party": "caller",
                "jurisdiction": shape.jurisdiction,
                "mode": shape.consent_mode,
                "parties": shape.consent_parties,
                "why": f"number prefix {shape.did_prefix}",
            }
        ]
    )
    notice = f"{rng.getrandbits(256):064x}"
    for i in range(count):
        record_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        started = datetime.fromtimestamp(float(epochs[i]), UTC)
        disposition = dispositions[i]
        outside_number = outside[outside_pick[i]]
        did = dids[did_pick[i]]
        if inbound[i]:
            direction = "inbound"
            source, destination = outside_number, did
            source_host, destination_host = shape.trunk, shape.domain
            source_addr, destination_addr = "198.51.100.20:5060", "10.0.0.10:5060"
        else:
            direction = "outbound"
            source, destination = did, outside_number
            source_host, destination_host = shape.domain, shape.trunk
            source_addr, destination_addr = "10.0.0.10:5060", "198.51.100.20:5060"
        answered_at: datetime | None = None
        media: str | None = None
        capture_s: float | None = None
        if disposition in ("answered", "media_timeout", "gateway_restart"):
            answered_at = started + timedelta(seconds=round(float(ring[i]), 3))
            talk_s = round(float(talk[i]), 3)
            if disposition == "media_timeout":
                talk_s += 30.0
            ended_at = answered_at + timedelta(seconds=talk_s)
            packets = int(talk_s * 50)
            media = json.dumps(
                {
                    leg: {
                        "packets_in": packets - int(loss[i, j]),
                        "packets_out": packets,
                        "bytes_in": (packets - int(loss[i, j])) * 172,
                        "lost": int(loss[i, j]),
                        "jitter_ms": round(float(jitter[i, j]), 2),
                    }
                    for j, leg in enumerate(("a", "b"))
                }
            )
        elif disposition == "no_answer":
            ended_at = started + timedelta(seconds=round(30.0 + float(ring[i]) % 5, 3))
        elif disposition == "cancelled":
            ended_at = started + timedelta(seconds=round(float(ring[i]), 3))
        else:
            ended_at = started + timedelta(seconds=round(float(ring[i]) / 10.0, 3))
        duration_s = round((ended_at - started).total_seconds(), 3)
        billable_s = (
            0.0 if answered_at is None else round((ended_at - answered_at).total_seconds(), 3)
        )
        if no_mode[i]:
            mode, parties, outcome, rules, notice_hash = "none", None, "none", None, None
        else:
            mode, parties, rules, notice_hash = (
                shape.consent_mode,
                shape.consent_parties,
                rule,
                notice,
            )
            outcome = outcomes[i] if answered_at is not None else "pending"
            if outcome == "granted":
                capture_s = round(max(0.0, billable_s - 6.5), 3)
        if disposition == "answered":
            hangup_by = "caller" if (i % 5) < 3 else "callee"
            end_reason = f"{hangup_by} hung up"
        elif disposition == "cancelled":
            hangup_by, end_reason = "caller", END_REASON[disposition]
        else:
            hangup_by = "gateway" if disposition in ("media_timeout", "gateway_restart") else None
            end_reason = END_REASON[disposition]
        statuses = FINAL_STATUS[disposition]
        yield (
            record_id,
            shape.name,
            f"{record_id[:18]}@{source_host}",
            f"b-{record_id[:18]}@gw.{shape.domain}",
            direction,
            source,
            f"sip:{source}@{source_host}",
            destination,
            f"sip:{destination}@{destination_host}",
            source_addr,
            destination_addr,
            started,
            answered_at,
            ended_at,
            duration_s,
            billable_s,
            disposition,
            statuses[i % len(statuses)],
            hangup_by,
            end_reason,
            media,
            instances[i % 2],
            mode,
            parties,
            rules,
            "2026-01-15.3",
            outcome,
            notice_hash,
            capture_s,
        )


# ------------------------------------------------------------------------------- loading


def sqlite_text(value: datetime) -> str:
    """An instant as SQLAlchemy's SQLite ``DateTime`` stores it (UTC, microseconds)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


async def _check_sqlite_form(engine: Any, path: Path) -> None:
    """Write one row through SQLAlchemy and compare its stored instants with :func:`sqlite_text`."""
    probe = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values = {
        "id": "seed-probe",
        "tenant": "seed-probe",
        "call_id": "probe",
        "direction": "inbound",
        "source_uri": "sip:probe@example.invalid",
        "destination_uri": "sip:probe@example.invalid",
        "source_addr": "127.0.0.1:5060",
        "gateway_instance": "probe",
        "started_at": probe,
        "answered_at": whole,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(CALLS).values(**values))
    with sqlite3.connect(path) as raw:
        stored = raw.execute(
            "SELECT started_at, answered_at FROM calls WHERE id = 'seed-probe'"
        ).fetchone()
    async with engine.begin() as connection:
        await connection.execute(delete(CALLS).where(CALLS.c.id == "seed-probe"))
    expected = (sqlite_text(probe), sqlite_text(whole))
    if tuple(stored) != expected:
        raise RuntimeError(
            f"SQLAlchemy stores instants as {tuple(stored)!r} in SQLite, the loader would "
            f"write {expected!r}: fix sqlite_text before loading"
        )


def _check_fields() -> None:
    columns = {column.name for column in CALLS.c}
    if set(FIELDS) != columns:
        raise RuntimeError(
            f"calls columns changed: missing {sorted(columns - set(FIELDS))}, "
            f"unknown {sorted(set(FIELDS) - columns)}"
        )


def _all_rows(rows: int, other_share: float, seed: int) -> tuple[dict[str, int], Iterator[Any]]:
    counts = {TENANT: rows, OTHER_TENANT: int(rows * other_share)}

    def chained() -> Iterator[tuple[Any, ...]]:
        for name, count in counts.items():
            yield from tenant_rows(SHAPES[name], count, seed)

    return counts, chained()


def _batches(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_sqlite(path: Path, rows: Iterator[tuple[Any, ...]], report: SeedReport) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' "
            "AND sql IS NOT NULL"
        ).fetchall()
        statement = (
            f"INSERT INTO calls ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"
        )
        connection.execute("BEGIN")
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        generate = load = 0.0
        batches = _batches(rows, BATCH)
        while True:
            began = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            converted = [
                tuple(sqlite_text(value) if isinstance(value, datetime) else value for value in row)
                for row in batch
            ]
            made = time.perf_counter()
            connection.executemany(statement, converted)
            load += time.perf_counter() - made
            generate += made - began
        began = time.perf_counter()
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        report.index_s = time.perf_counter() - began
        report.generate_s, report.load_s = generate, load
    finally:
        connection.close()


async def _load_postgres(url: Any, rows: Iterator[tuple[Any, ...]], report: SeedReport) -> None:
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await connection.execute("SET maintenance_work_mem = '512MB'")
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'calls'::regclass)"
        )
        generate = load = 0.0
        async with connection.transaction():
            for index in indexes:
                await connection.execute(f'DROP INDEX "{index["indexname"]}"')
            batches = _batches(rows, BATCH)
            while True:
                began = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                made = time.perf_counter()
                await connection.copy_records_to_table("calls", records=batch, columns=FIELDS)
                load += time.perf_counter() - made
                generate += made - began
            began = time.perf_counter()
            for index in indexes:
                await connection.execute(index["indexdef"])
            report.index_s = time.perf_counter() - began
        report.generate_s, report.load_s = generate, load
        began = time.perf_counter()
        await connection.execute("VACUUM ANALYZE calls")
        report.analyze_s = time.perf_counter() - began
        # the load's pages are written now, not by a checkpoint that runs on through
        # the first measurements (seen: a 59 s checkpoint and a missed p99 right after)
        began = time.perf_counter()
        try:
            await connection.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError as refused:
            report.checkpoint_refused = str(refused)
        report.checkpoint_s = time.perf_counter() - began
    finally:
        await connection.close()


async def seed(
    url: str, rows: int, *, other_share: float = 0.1, seed: int = DEFAULT_SEED
) -> SeedReport:
    """Migrate the store at ``url`` and load the calls; what was loaded and how long it took."""
    _check_fields()
    resolved = async_url(url)
    engine = make_engine(resolved)
    try:
        await migrate(engine)
        if resolved.drivername == SQLITE_DRIVER:
            assert resolved.database is not None
            await _check_sqlite_form(engine, Path(resolved.database))
    finally:
        await engine.dispose()
    counts, generated = _all_rows(rows, other_share, seed)
    report = SeedReport(counts)
    if resolved.drivername == SQLITE_DRIVER:
        assert resolved.database is not None
        await asyncio.to_thread(_load_sqlite, Path(resolved.database), generated, report)
    elif resolved.drivername == POSTGRES_DRIVER:
        await _load_postgres(make_url(resolved), generated, report)
    else:
        raise ValueError(f"cannot bulk-load into {resolved.drivername}")
    return report


__all__ = [
    "DAYS",
    "END",
    "FIELDS",
    "OTHER_TENANT",
    "START",
    "TENANT",
    "SeedReport",
    "external_numbers",
    "seed",
    "sqlite_text",
    "tenant_rows",
]
