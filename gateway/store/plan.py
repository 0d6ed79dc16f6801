"""Coalescing: the operations of one batch folded into one change per call.

A start, an update and an end of the same call in one batch become a single
INSERT carrying the final values; later operations win over earlier ones.
A call's consent events and recordings ride along with its row change, in
the order they were submitted, so they are written after the row exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.store.ops import CallStart, ConsentEventRecord, RecordingRecord, WriteOp


@dataclass(slots=True)
class RowPlan:
    """The change one batch makes to one call: its row, and the rows that hang off it."""

    record_id: str
    ops: list[WriteOp] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    starts: bool = False
    """A :class:`CallStart` is among the operations: the row may not exist yet."""
    events: list[ConsentEventRecord] = field(default_factory=list)
    """The call's consent events, in submission order."""
    recordings: list[RecordingRecord] = field(default_factory=list)
    """The call's finished recordings, in submission order."""

    def add(self, op: WriteOp) -> None:
        """Fold ``op`` in after the operations already added."""
        self.ops.append(op)
        if isinstance(op, ConsentEventRecord):
            self.events.append(op)
            return
        if isinstance(op, RecordingRecord):
            self.recordings.append(op)
            return
        self.values.update(op.columns())
        if isinstance(op, CallStart):
            self.starts = True


def plan_batch(ops: Iterable[WriteOp]) -> list[RowPlan]:
    """One plan per record, in order of each record's first operation."""
    plans: dict[str, RowPlan] = {}
    for op in ops:
        plan = plans.get(op.record_id)
        if plan is None:
            plan = plans[op.record_id] = RowPlan(op.record_id)
        plan.add(op)
    return list(plans.values())
