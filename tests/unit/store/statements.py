"""Counting what an engine sends: statements on the ``calls`` table and commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Statement:
    verb: str
    executemany: bool
    rows: int


@dataclass
class StatementLog:
    """Statements touching ``calls`` and transaction commits, as the driver saw them."""

    engine: AsyncEngine
    statements: list[Statement] = field(default_factory=list)
    commits: int = 0

    def __post_init__(self) -> None:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._on_execute)
        event.listen(self.engine.sync_engine, "commit", self._on_commit)

    def close(self) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._on_execute)
        event.remove(self.engine.sync_engine, "commit", self._on_commit)

    def _on_execute(
        self,
        connection: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if "calls" not in statement:
            return
        rows = len(parameters) if executemany else 1
        self.statements.append(Statement(statement.split(None, 1)[0].upper(), executemany, rows))

    def _on_commit(self, connection: Any) -> None:
        self.commits += 1

    def verbs(self) -> list[str]:
        return [statement.verb for statement in self.statements]

    def clear(self) -> None:
        self.statements.clear()
        self.commits = 0
