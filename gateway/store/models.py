"""ORM models of the call-record store.

One row per call in ``calls``: the parties, addresses, times, disposition and
final SIP status (RFC 3261 21) of the call, and per-leg media counters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, MetaData, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway.store.columns import UtcDateTime

DISPOSITIONS: tuple[str, ...] = (
    "answered",
    "busy",
    "no_answer",
    "cancelled",
    "rejected",
    "failed",
    "media_timeout",
    "gateway_restart",
)
"""How a closed call ended; ``None`` in the row while the call is open."""

DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
"""``inbound``: trunk to PBX; ``outbound``: PBX to trunk."""

HANGUP_PARTIES: tuple[str, ...] = ("caller", "callee", "gateway")
"""Who ended the call."""

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_record_id() -> str:
    """A fresh record id: a random (version 4) UUID as text."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    """Declarative base: shared metadata, naming convention and type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: Text(),
        int: Integer(),
        float: Float(),
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(none_as_null=True),
    }


class CallRecord(Base):
    """One call through the gateway, from the A leg's INVITE to its end."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_tenant_started_at", "tenant", "started_at"),
        Index("ix_calls_call_id", "call_id"),
        Index("ix_calls_gateway_instance_ended_at", "gateway_instance", "ended_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True, default=new_record_id)
    tenant: Mapped[str]
    call_id: Mapped[str]
    b_call_id: Mapped[str | None]
    direction: Mapped[str]

    source_number: Mapped[str | None]
    source_uri: Mapped[str]
    destination_number: Mapped[str | None]
    destination_uri: Mapped[str]
    source_addr: Mapped[str]
    destination_addr: Mapped[str | None]

    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[float | None]
    billable_s: Mapped[float | None]

    disposition: Mapped[str | None]
    final_status: Mapped[int | None]
    hangup_by: Mapped[str | None]
    end_reason: Mapped[str | None]

    media_stats: Mapped[dict[str, Any] | None]
    gateway_instance: Mapped[str]

    def __repr__(self) -> str:
        return f"CallRecord(id={self.id!r}, call_id={self.call_id!r}, tenant={self.tenant!r})"


CALLS: Table = CallRecord.__table__  # type: ignore[assignment]
"""The ``calls`` table, for Core statements."""
