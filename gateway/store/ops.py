"""What the call path tells the record writer: a call started, changed, ended.

Each operation checks its fields when it is built, so a malformed value is
refused with a reason at the call site instead of failing a whole batch later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.store.models import DIRECTIONS, DISPOSITIONS, HANGUP_PARTIES


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _optional_text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {type(value).__name__}")


def _require_instant(name: str, value: object) -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} is naive; give a timezone-aware (UTC) time")


def _optional_instant(name: str, value: object) -> None:
    if value is not None:
        _require_instant(name, value)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(slots=True)
class CallStart:
    """A new call: the A leg's INVITE arrived and was routed."""

    record_id: str
    tenant: str
    call_id: str
    direction: str
    source_number: str | None
    source_uri: str
    destination_number: str | None
    destination_uri: str
    source_addr: str
    started_at: datetime
    gateway_instance: str
    destination_addr: str | None = None
    b_call_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("record_id", "tenant", "call_id", "gateway_instance"):
            _require_text(name, getattr(self, name))
        for name in ("source_uri", "destination_uri", "source_addr"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("source_number", "destination_number", "destination_addr", "b_call_id"):
            _optional_text(name, getattr(self, name))
        _one_of("direction", self.direction, DIRECTIONS)
        _require_instant("started_at", self.started_at)

    def columns(self) -> dict[str, Any]:
        """The row's columns this operation sets."""
        return {
            "id": self.record_id,
            "tenant": self.tenant,
            "call_id": self.call_id,
            "b_call_id": self.b_call_id,
            "direction": self.direction,
            "source_number": self.source_number,
            "source_uri": self.source_uri,
            "destination_number": self.destination_number,
            "destination_uri": self.destination_uri,
            "source_addr": self.source_addr,
            "destination_addr": self.destination_addr,
            "started_at": self.started_at,
            "gateway_instance": self.gateway_instance,
        }


@dataclass(slots=True)
class CallUpdate:
    """Something learned mid-call; only the fields that are not ``None`` are set."""

    record_id: str
    answered_at: datetime | None = None
    b_call_id: str | None = None
    destination_addr: str | None = None

    def __post_init__(self) -> None:
        _require_text("record_id", self.record_id)
        _optional_instant("answered_at", self.answered_at)
        _optional_text("b_call_id", self.b_call_id)
        _optional_text("destination_addr", self.destination_addr)

    def columns(self) -> dict[str, Any]:
        """The row's columns this operation sets."""
        values = {
            "answered_at": self.answered_at,
            "b_call_id": self.b_call_id,
            "destination_addr": self.destination_addr,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(slots=True)
class CallEnd:
    """The call is over. The writer derives ``duration_s`` and ``billable_s``.

    ``final_status`` is the SIP status that settled the INVITE (RFC 3261 21);
    ``answered_at`` may repeat the value of an earlier :class:`CallUpdate`.
    """

    record_id: str
    ended_at: datetime
    disposition: str
    final_status: int | None = None
    hangup_by: str | None = None
    end_reason: str | None = None
    media_stats: Mapping[str, Any] | None = None
    answered_at: datetime | None = None

    def __post_init__(self) -> None:
        _require_text("record_id", self.record_id)
        _require_instant("ended_at", self.ended_at)
        _optional_instant("answered_at", self.answered_at)
        _one_of("disposition", self.disposition, DISPOSITIONS)
        if self.hangup_by is not None:
            _one_of("hangup_by", self.hangup_by, HANGUP_PARTIES)
        if self.final_status is not None and (
            isinstance(self.final_status, bool)
            or not isinstance(self.final_status, int)
            or not 100 <= self.final_status <= 699
        ):
            raise ValueError(
                f"final_status must be a SIP status 100-699, got {self.final_status!r}"
            )
        _optional_text("end_reason", self.end_reason)
        if self.media_stats is not None and not isinstance(self.media_stats, Mapping):
            raise ValueError(
                f"media_stats must be a mapping of leg to counters, "
                f"got {type(self.media_stats).__name__}"
            )

    def columns(self) -> dict[str, Any]:
        """The row's columns this operation sets."""
        values: dict[str, Any] = {
            "ended_at": self.ended_at,
            "disposition": self.disposition,
            "final_status": self.final_status,
            "hangup_by": self.hangup_by,
            "end_reason": self.end_reason,
            "media_stats": None if self.media_stats is None else dict(self.media_stats),
        }
        if self.answered_at is not None:
            values["answered_at"] = self.answered_at
        return values


WriteOp = CallStart | CallUpdate | CallEnd
"""Anything :meth:`RecordWriter.submit` accepts."""
