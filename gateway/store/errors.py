"""Which database errors go away by themselves and which never will."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

_PERMANENT_SQLSTATE_CLASSES = frozenset({"22", "23"})
"""SQLSTATE classes naming bad data: 22 data exception, 23 integrity violation."""


def _sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE code of a driver error, where the driver reports one."""
    candidates = (error.orig, getattr(error.orig, "__cause__", None))
    for candidate in candidates:
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_permanent(error: BaseException) -> bool:
    """Whether retrying the same statement with the same values must fail again.

    Data and integrity errors and values the driver cannot even bind are
    permanent. Everything else (lost connections, a locked SQLite file, a
    server restart, a table being migrated) is worth retrying.
    """
    if isinstance(error, IntegrityError | DataError):
        return True
    if isinstance(error, sqlite3.Error):  # the record writer's own SQLite connection
        return _sqlite_permanent(error)
    if isinstance(error, DBAPIError):
        code = _sqlstate(error)
        return code is not None and code[:2] in _PERMANENT_SQLSTATE_CLASSES
    if isinstance(error, StatementError):
        return True
    return isinstance(error, TypeError | ValueError)


def _sqlite_permanent(error: sqlite3.Error) -> bool:
    """``sqlite3``'s errors sorted as SQLAlchemy wraps them: constraint and data errors,
    and values it cannot bind (``ProgrammingError``, ``InterfaceError``), are permanent;
    a closed connection, a locked or busy file, a missing table or a failing disk is not."""
    if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError):
        return True
    return isinstance(error, sqlite3.ProgrammingError) and "closed" not in str(error)
