"""Builders of writer operations with plausible defaults, for the store tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store.writer import (
    CallEnd,
    CallStart,
    CallUpdate,
    ConsentEventRecord,
    RecordingRecord,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
INSTANCE = "gw-test-1"
NOTICE_SHA256 = hashlib.sha256(b"this call may be recorded").hexdigest()
POLICY_VERSION = "acme-2026-03"
RULES = [
    {"role": "caller", "jurisdiction": "US-CA", "rule": "US-CA", "mode": "notice", "why": "area"},
    {"role": "callee", "jurisdiction": "DE", "rule": "DE", "mode": "opt_in", "why": "+49"},
]


def new_id() -> str:
    return str(uuid.uuid4())


def start(record_id: str | None = None, *, at: datetime = T0, **fields: Any) -> CallStart:
    record_id = new_id() if record_id is None else record_id
    values: dict[str, Any] = {
        "record_id": record_id,
        "tenant": "acme",
        "call_id": f"{record_id}@pbx.example",
        "direction": "outbound",
        "source_number": "+14155550100",
        "source_uri": "sip:+14155550100@pbx.example",
        "destination_number": "+493012345678",
        "destination_uri": "sip:+493012345678@trunk.example",
        "source_addr": "127.0.0.1:5070",
        "started_at": at,
        "gateway_instance": INSTANCE,
    }
    values.update(fields)
    return CallStart(**values)


def answer(record_id: str, *, after_s: float = 5.0, **fields: Any) -> CallUpdate:
    return CallUpdate(record_id=record_id, answered_at=T0 + timedelta(seconds=after_s), **fields)


def end(
    record_id: str,
    *,
    after_s: float = 65.0,
    disposition: str = "answered",
    answered_after_s: float | None = None,
    **fields: Any,
) -> CallEnd:
    values: dict[str, Any] = {
        "record_id": record_id,
        "ended_at": T0 + timedelta(seconds=after_s),
        "disposition": disposition,
        "final_status": 200 if disposition == "answered" else 486,
        "hangup_by": "caller",
        "end_reason": "caller hung up",
        "media_stats": {
            "a": {"packets_in": 3000, "bytes_in": 516000, "lost": 2, "jitter_ms": 1.5},
            "b": {"packets_in": 2990, "bytes_in": 514280, "lost": 0, "jitter_ms": 0.75},
        },
        "answered_at": None
        if answered_after_s is None
        else T0 + timedelta(seconds=answered_after_s),
    }
    values.update(fields)
    return CallEnd(**values)


def consent_event(
    record_id: str, seq: int, *, at: datetime | None = None, **fields: Any
) -> ConsentEventRecord:
    values: dict[str, Any] = {
        "record_id": record_id,
        "tenant": "acme",
        "seq": seq,
        "at": T0 + timedelta(seconds=seq) if at is None else at,
        "party": "callee",
        "state": "notified",
        "previous": "pending",
        "method": "notice",
        "policy_version": POLICY_VERSION,
        "notice_sha256": NOTICE_SHA256,
    }
    values.update(fields)
    return ConsentEventRecord(**values)


def recording(record_id: str, **fields: Any) -> RecordingRecord:
    values: dict[str, Any] = {
        "record_id": record_id,
        "tenant": "acme",
        "path": f"/var/lib/callgate/recordings/{record_id}.wav",
        "channels": 2,
        "sample_rate": 8000,
        "started_at": T0 + timedelta(seconds=12),
        "ended_at": T0 + timedelta(seconds=64.5),
        "duration_s": 52.5,
        "bytes": 44 + 52 * 32000 + 16000,
        "sha256": hashlib.sha256(record_id.encode()).hexdigest(),
        "created_at": T0 + timedelta(seconds=65),
    }
    values.update(fields)
    return RecordingRecord(**values)
