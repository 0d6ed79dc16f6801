"""A call listing's columns, and its rows as the API serves them, made from the driver's rows.

On SQLite an instant is stored as SQLAlchemy's UTC text
(``2026-03-01 22:48:33.261624``); a listing turns it straight into the
RFC 3339 text the API's JSON encoder (orjson) would write for the instant
(``2026-03-01T22:48:33.261624+00:00``, no fraction when it is zero), with no
datetime in between: three instants a row, a hundred rows a page. Every other
column gets SQLAlchemy's own result processing for its type. asyncpg's rows
need none: it decodes each column to the type SQLAlchemy's asyncpg dialect
returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.columns import UtcDateTime
from gateway.store.models import CALLS

__all__ = [
    "LIST_COLUMNS",
    "LIST_EXCLUDED",
    "LIST_NAMES",
    "instant_of",
    "listing_rows",
    "rfc3339_of_sqlite",
]

LIST_EXCLUDED = ("media_stats", "consent_rules")
"""Columns a listing leaves out (the single call has them): the large JSON ones."""

LIST_COLUMNS = tuple(column for column in CALLS.c if column.name not in LIST_EXCLUDED)
LIST_NAMES = tuple(column.name for column in LIST_COLUMNS)

Rows = Sequence[Sequence[Any]]
_ZERO_FRACTION = ".000000"


def rfc3339_of_sqlite(text: str) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite, as RFC 3339 text (the form
    ``orjson`` gives the same instant as a datetime)."""
    if len(text) == 26 and text[10] == " " and text[19] == ".":
        if text.endswith(_ZERO_FRACTION):
            return f"{text[:10]}T{text[11:19]}+00:00"
        return f"{text[:10]}T{text[11:]}+00:00"
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def instant_of(value: datetime | str) -> datetime:
    """An instant of a listed row as a datetime (rows may hold it as RFC 3339 text)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def listing_rows(engine: AsyncEngine) -> Callable[[Rows], list[dict[str, Any]]]:
    """The conversion of driver rows of :data:`LIST_COLUMNS` to the listing's dicts."""
    return _converter(engine.dialect)


@functools.lru_cache(maxsize=8)
def _converter(dialect: Dialect) -> Callable[[Rows], list[dict[str, Any]]]:
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    if dialect.name == "sqlite":
        for index, column in enumerate(LIST_COLUMNS):
            if isinstance(column.type, UtcDateTime):
                processors.append((index, rfc3339_of_sqlite))
                continue
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                processors.append((index, process))
    # asyncpg decodes every column to the Python type SQLAlchemy's asyncpg dialect gives
    # (an instant as an aware UTC datetime): nothing to convert
    names = LIST_NAMES

    def convert(rows: Rows) -> list[dict[str, Any]]:
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
