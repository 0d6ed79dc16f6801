"""A call listing's columns, and its rows as the API serves them, made from the driver's rows.

On SQLite an instant is stored as SQLAlchemy's UTC text
(``2026-03-01 22:48:33.261624``); a listing has SQLite turn it straight into
the RFC 3339 text the API's JSON encoder (orjson) would write for the instant
(``2026-03-01T22:48:33.261624+00:00``, no fraction when it is zero), with no
datetime in between: three instants a row, a hundred rows a page. The API's
pages go one step further: the store keeps each row's JSON object as the API
serves it (``calls.listed``, written by triggers: SQLite's ``json_object``,
:func:`listing_object`, and PostgreSQL's ``row_to_json``), so a page is a
hundred stored strings joined, not 2,700 values turned into Python objects,
dicts and JSON again. Every other column gets SQLAlchemy's own result
processing for its type. asyncpg's rows need none: it decodes each column to
the type SQLAlchemy's asyncpg dialect returns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Float, func, literal_column, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.columns import UtcDateTime
from gateway.store.models import CALLS
from gateway.store.prepared import Rows

__all__ = [
    "LISTED_JSON",
    "LIST_COLUMNS",
    "LIST_EXCLUDED",
    "LIST_NAMES",
    "JsonRows",
    "instant_of",
    "json_rows",
    "listed_columns",
    "listed_json_columns",
    "listing_json",
    "listing_object",
    "listing_rows",
    "sqlite_rfc3339",
    "stored_listing_ready",
]

LIST_EXCLUDED = ("media_stats", "consent_rules")
"""Columns a listing leaves out (the single call has them): the large JSON ones."""

LIST_COLUMNS = tuple(column for column in CALLS.c if column.name not in LIST_EXCLUDED)
LIST_NAMES = tuple(column.name for column in LIST_COLUMNS)

# SQLAlchemy's SQLite text of a UTC instant, "2026-03-01 22:48:33.261624" (or without
# the fraction), as RFC 3339 the way orjson writes the instant as a datetime: no
# fraction when it is zero. NULL stays NULL.
_SQLITE_RFC3339 = "replace(replace({x}, '.000000', ''), ' ', 'T') || '+00:00'"


def _rfc3339_of(column: ColumnElement[Any]) -> ColumnElement[Any]:
    compiled = column.compile(dialect=sqlite.dialect())
    return literal_column(_SQLITE_RFC3339.format(x=compiled))


def sqlite_rfc3339(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    """``column`` (a UTC instant in SQLite) as RFC 3339 text, labelled ``name``."""
    return _rfc3339_of(column).label(name)


@functools.lru_cache(maxsize=8)
def listed_columns(dialect: Dialect) -> tuple[ColumnElement[Any], ...]:
    """What a listing selects on ``dialect``: :data:`LIST_COLUMNS`, instants as RFC 3339
    text on SQLite (made by SQLite, three a row, no datetimes in between). Built once per
    dialect, not per request."""
    if dialect.name != "sqlite":
        return LIST_COLUMNS
    return tuple(
        sqlite_rfc3339(column, column.name) if isinstance(column.type, UtcDateTime) else column
        for column in LIST_COLUMNS
    )


LISTED_JSON = "listed"
"""The column of each call's listing JSON object (kept by triggers, revision 0007)."""
LISTED_TRIGGERS = {
    "sqlite": frozenset({"calls_listed_on_insert", "calls_listed_on_update"}),
    "postgresql": frozenset({"calls_listed"}),
}
"""The triggers that write :data:`LISTED_JSON`, by database (revision 0007)."""

log = logging.getLogger(__name__)


async def stored_listing_ready(engine: AsyncEngine) -> bool:
    """Whether the store keeps the listing JSON: ``calls.listed`` and every trigger that
    writes it are there (and, on SQLite, its JSON functions). A table rebuilt by a later
    migration loses its triggers; a store migrated by a SQLite without JSON functions
    has no column: the listing is then encoded from the columns, never read stale."""
    name = engine.dialect.name
    if name not in LISTED_TRIGGERS or (name == "sqlite" and not _sqlite_writes_json()):
        return False
    async with engine.connect() as connection:
        if name == "sqlite":
            triggers = await connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'calls'")
            )
            columns = await connection.execute(text("PRAGMA table_info(calls)"))
            found = set(triggers.scalars()), {row[1] for row in columns}
        else:
            triggers = await connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'calls'::regclass "
                    "AND NOT tgisinternal AND tgenabled <> 'D'"
                )
            )
            columns = await connection.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'calls'"
                )
            )
            found = set(triggers.scalars()), set(columns.scalars())
    ready = LISTED_TRIGGERS[name] <= found[0] and LISTED_JSON in found[1]
    if not ready:
        log.error(
            "calls.%s or its triggers (%s) are missing: the API encodes listings from the "
            "columns instead (slower); migrate the store again to restore them",
            LISTED_JSON,
            ", ".join(sorted(LISTED_TRIGGERS[name])),
        )
    return ready


def listing_object() -> ColumnElement[Any]:
    """SQLite's ``json_object`` of a call's listing (keys and values as
    :func:`listed_columns` gives them, in that order): what ``calls.listed`` holds.

    SQLite writes a REAL with up to 15 significant digits, orjson with as many as
    the value needs: the same text for the durations the store holds (whole
    microseconds, ``capture_s`` in milliseconds, up to 10^9 s), except under
    0.0001 s, where both write the same number in exponent form but differently
    (``1.0e-06`` and ``1e-6``)."""
    pairs: list[ColumnElement[Any]] = []
    for column in LIST_COLUMNS:
        value = _rfc3339_of(column) if isinstance(column.type, UtcDateTime) else column
        pairs += [literal_column(f"'{column.name}'"), value]
    return func.json_object(*pairs)


_FLOAT_NAMES = tuple(column.name for column in LIST_COLUMNS if isinstance(column.type, Float))
_INSTANT_NAMES = tuple(
    column.name for column in LIST_COLUMNS if isinstance(column.type, UtcDateTime)
)


def listed_value(name: str, value: Any) -> Any:
    """``value`` of column ``name`` as a listing read from the column holds it: an instant
    in UTC, a REAL column's number as a float (``65`` is stored, and listed, as ``65.0``)."""
    if value is None:
        return None
    if name in _INSTANT_NAMES:
        return value.astimezone(UTC)
    if name in _FLOAT_NAMES:
        return float(value)
    return value


def listing_json(values: Mapping[str, Any]) -> str:
    """The listing object of a call whose columns hold ``values`` (Python values as a
    writer binds them; a column not in them is NULL), encoded as the API encodes a row it
    read from the columns (orjson): the text ``calls.listed`` keeps."""
    listed = {name: values.get(name) for name in LIST_NAMES}
    for name in _INSTANT_NAMES:
        instant = listed[name]
        if instant is not None:
            listed[name] = instant.astimezone(UTC)
    for name in _FLOAT_NAMES:
        number = listed[name]
        if number is not None:
            listed[name] = float(number)
    return orjson.dumps(listed).decode()


@functools.lru_cache(maxsize=8)
def listed_json_columns(dialect: Dialect) -> tuple[ColumnElement[Any], ...] | None:
    """What a listing selects to have each row as its JSON object: the object the store
    keeps (``calls.listed``, written by triggers, revision 0007), alone: the next page's
    key is read from the last row's object (:func:`json_rows`); ``None`` where the store
    keeps none (a SQLite built without JSON functions, another database).

    Reading one stored text a row is about five times less of SQLite's time for a
    100-row page than having SQLite build the object from 27 columns while it reads
    (80 against 400 us, 1M calls), and spares the API decoding 2,700 values a page and
    encoding them again on PostgreSQL (where having PostgreSQL build the objects while
    it read was slower still: 1,270-1,570 us a read against 580 us for the columns).
    Selecting the start and id of every row beside it, for the one key a page needs,
    cost asyncpg a hundred datetimes a page."""
    if (dialect.name == "sqlite" and _sqlite_writes_json()) or dialect.name == "postgresql":
        return (literal_column(f"{CALLS.name}.{LISTED_JSON}").label("listed"),)
    return None


def _sqlite_writes_json() -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38; a build may omit them)."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("SELECT json_object('a', 1)")
    except sqlite3.OperationalError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class JsonRows:
    """A page of :func:`listed_json_columns` rows: the JSON array of the first ``count``
    and, when a row beyond them came, the last one's start and id (the next page's key)."""

    json: bytes
    count: int
    last: tuple[str, str] | None


def json_rows(limit: int) -> Callable[[Rows], JsonRows]:
    """The conversion of up to ``limit + 1`` rows of :func:`listed_json_columns`; when
    there are more than ``limit``, the last shown row's start (RFC 3339, as exact as
    the store keeps it) and id are the next page's key."""

    def convert(rows: Rows) -> JsonRows:
        shown = rows[:limit]
        body = "[" + ",".join([row[0] for row in shown]) + "]"
        last = None
        if len(rows) > limit and shown:
            listed = orjson.loads(shown[-1][0])
            last = (listed["started_at"], listed["id"])
        return JsonRows(body.encode(), len(shown), last)

    return convert


def instant_of(value: datetime | str) -> datetime:
    """An instant of a listed row as a datetime (rows may hold it as RFC 3339 text)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def listing_rows(engine: AsyncEngine) -> Callable[[Rows], list[dict[str, Any]]]:
    """The conversion of driver rows of :func:`listed_columns` to the listing's dicts."""
    return _converter(engine.dialect)


@functools.lru_cache(maxsize=8)
def _converter(dialect: Dialect) -> Callable[[Rows], list[dict[str, Any]]]:
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    if dialect.name == "sqlite":
        for index, column in enumerate(LIST_COLUMNS):
            if isinstance(column.type, UtcDateTime):
                continue  # RFC 3339 text already
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                processors.append((index, process))
    # asyncpg decodes every column to the Python type SQLAlchemy's asyncpg dialect gives
    # (an instant as an aware UTC datetime): nothing to convert
    names = LIST_NAMES

    def convert(rows: Rows) -> list[dict[str, Any]]:
        if not processors:
            return [dict(zip(names, row, strict=True)) for row in rows]
        found = []
        for row in rows:
            values = list(row)
            for index, process in processors:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            found.append(dict(zip(names, values, strict=True)))
        return found

    return convert
