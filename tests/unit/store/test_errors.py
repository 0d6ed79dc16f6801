"""Telling passing database errors from permanent ones."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)

from gateway.store.errors import is_permanent


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        DataError("INSERT", {}, Exception("value too long")),
        DBAPIError("INSERT", {}, _DriverError("invalid byte sequence", "22021")),
        DBAPIError("INSERT", {}, _DriverError("duplicate key", "23505")),
        StatementError("bind failed", "INSERT", {}, TypeError("set is not JSON")),
        TypeError("unexpected type"),
        # the record writer's own sqlite3 connection raises the driver's errors as they are
        sqlite3.IntegrityError("UNIQUE constraint failed: calls.id"),
        sqlite3.DataError("string or blob too big"),
        sqlite3.InterfaceError("Error binding parameter 3"),
        sqlite3.ProgrammingError("Error binding parameter 3: type 'set' is not supported"),
        sqlite3.ProgrammingError("Incorrect number of bindings supplied"),
    ],
)
def test_permanent(error: BaseException) -> None:
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")),
        InterfaceError("INSERT", {}, Exception("connection is closed")),
        DBAPIError("INSERT", {}, _DriverError("terminating connection", "57P01")),
        DBAPIError("INSERT", {}, _DriverError("connection lost", None)),
        ProgrammingError("INSERT", {}, _DriverError('relation "calls" does not exist', "42P01")),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("no such table: calls"),
        sqlite3.OperationalError("disk I/O error"),
        sqlite3.ProgrammingError("Cannot operate on a closed database."),
    ],
)
def test_passing(error: BaseException) -> None:
    assert not is_permanent(error)
