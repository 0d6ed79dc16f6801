"""What the call path tells the record writer: a call started, changed, ended;
a party's consent changed; a recording was finished.

Each operation checks its fields when it is built, so a malformed value is
refused with a reason at the call site instead of failing a whole batch later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.store.checks import (
    check_json,
    one_of,
    optional_instant,
    optional_one_of,
    optional_seconds,
    optional_sha256,
    optional_text,
    require_count,
    require_instant,
    require_seconds,
    require_sha256,
    require_text,
)
from gateway.store.models import (
    CONSENT_EVENT_PARTIES,
    CONSENT_METHODS,
    CONSENT_MODES,
    CONSENT_OUTCOMES,
    CONSENT_PARTIES,
    CONSENT_STATES,
    DIRECTIONS,
    DISPOSITIONS,
    HANGUP_PARTIES,
    RECORDING_FORMATS,
    new_record_id,
)

DTMF_DIGITS: tuple[str, ...] = tuple("0123456789*#ABCD")
"""The key presses a consent event may carry: DTMF events 0-15 of RFC 4733 3.2."""


def _check_rules(value: object) -> None:
    if value is None:
        return
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"consent_rules must be a list of mappings, got {type(value).__name__}")
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"consent_rules[{index}] must be a mapping, got {type(entry).__name__}"
            )
        check_json(f"consent_rules[{index}]", entry)


def utcnow() -> datetime:
    """The current instant, in UTC."""
    return datetime.now(UTC)


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
    consent_mode: str | None = None
    consent_parties: str | None = None
    consent_rules: Sequence[Mapping[str, Any]] | None = None
    """Which party's jurisdiction and rule applied and why, one mapping per contribution."""
    policy_version: str | None = None

    def __post_init__(self) -> None:
        for name in ("record_id", "tenant", "call_id", "gateway_instance"):
            require_text(name, getattr(self, name))
        for name in ("source_uri", "destination_uri", "source_addr"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("source_number", "destination_number", "destination_addr", "b_call_id"):
            optional_text(name, getattr(self, name))
        one_of("direction", self.direction, DIRECTIONS)
        require_instant("started_at", self.started_at)
        optional_one_of("consent_mode", self.consent_mode, CONSENT_MODES)
        optional_one_of("consent_parties", self.consent_parties, CONSENT_PARTIES)
        _check_rules(self.consent_rules)
        optional_text("policy_version", self.policy_version)

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
            "consent_mode": self.consent_mode,
            "consent_parties": self.consent_parties,
            "consent_rules": None
            if self.consent_rules is None
            else [dict(entry) for entry in self.consent_rules],
            "policy_version": self.policy_version,
        }


@dataclass(slots=True)
class CallUpdate:
    """Something learned mid-call; only the fields that are not ``None`` are set."""

    record_id: str
    answered_at: datetime | None = None
    b_call_id: str | None = None
    destination_addr: str | None = None
    consent_outcome: str | None = None
    notice_sha256: str | None = None

    def __post_init__(self) -> None:
        require_text("record_id", self.record_id)
        optional_instant("answered_at", self.answered_at)
        optional_text("b_call_id", self.b_call_id)
        optional_text("destination_addr", self.destination_addr)
        optional_one_of("consent_outcome", self.consent_outcome, CONSENT_OUTCOMES)
        optional_sha256("notice_sha256", self.notice_sha256)

    def columns(self) -> dict[str, Any]:
        """The row's columns this operation sets."""
        values = {
            "answered_at": self.answered_at,
            "b_call_id": self.b_call_id,
            "destination_addr": self.destination_addr,
            "consent_outcome": self.consent_outcome,
            "notice_sha256": self.notice_sha256,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(slots=True)
class CallEnd:
    """The call is over. The writer derives ``duration_s`` and ``billable_s``.

    ``final_status`` is the SIP status that settled the INVITE (RFC 3261 21);
    ``answered_at`` may repeat the value of an earlier :class:`CallUpdate`.
    ``consent_outcome``, ``capture_s`` and ``notice_sha256`` left ``None`` keep
    what the row holds (a call without a consent rule never sets them).
    """

    record_id: str
    ended_at: datetime
    disposition: str
    final_status: int | None = None
    hangup_by: str | None = None
    end_reason: str | None = None
    media_stats: Mapping[str, Any] | None = None
    answered_at: datetime | None = None
    consent_outcome: str | None = None
    capture_s: float | None = None
    notice_sha256: str | None = None

    def __post_init__(self) -> None:
        require_text("record_id", self.record_id)
        require_instant("ended_at", self.ended_at)
        optional_one_of("consent_outcome", self.consent_outcome, CONSENT_OUTCOMES)
        optional_seconds("capture_s", self.capture_s)
        optional_sha256("notice_sha256", self.notice_sha256)
        optional_instant("answered_at", self.answered_at)
        one_of("disposition", self.disposition, DISPOSITIONS)
        if self.hangup_by is not None:
            one_of("hangup_by", self.hangup_by, HANGUP_PARTIES)
        if self.final_status is not None and (
            isinstance(self.final_status, bool)
            or not isinstance(self.final_status, int)
            or not 100 <= self.final_status <= 699
        ):
            raise ValueError(
                f"final_status must be a SIP status 100-699, got {self.final_status!r}"
            )
        optional_text("end_reason", self.end_reason)
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
        optional = {
            "answered_at": self.answered_at,
            "consent_outcome": self.consent_outcome,
            "capture_s": None if self.capture_s is None else float(self.capture_s),
            "notice_sha256": self.notice_sha256,
        }
        values.update((name, value) for name, value in optional.items() if value is not None)
        return values


@dataclass(slots=True)
class ConsentEventRecord:
    """One change of a party's consent state, the call's trail entry number ``seq``.

    ``seq`` counts from 1 within the call and gives the trail its order; the
    writer keeps a call's events in the order they were submitted. ``state``
    is the state entered, ``previous`` the state left (``None`` for the
    first). ``digit`` is the key that caused it (RFC 4733 3.2 events 0-15),
    ``notice_sha256`` the notice the party heard.
    """

    record_id: str
    tenant: str
    seq: int
    at: datetime
    party: str
    state: str
    previous: str | None
    method: str
    policy_version: str
    digit: str | None = None
    notice_sha256: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        require_text("record_id", self.record_id)
        require_text("tenant", self.tenant)
        require_count("seq", self.seq, 1)
        require_instant("at", self.at)
        one_of("party", self.party, CONSENT_EVENT_PARTIES)
        one_of("state", self.state, CONSENT_STATES)
        optional_one_of("previous", self.previous, CONSENT_STATES)
        one_of("method", self.method, CONSENT_METHODS)
        require_text("policy_version", self.policy_version)
        optional_one_of("digit", self.digit, DTMF_DIGITS)
        optional_sha256("notice_sha256", self.notice_sha256)
        optional_text("detail", self.detail)

    def row(self) -> dict[str, Any]:
        """The ``consent_events`` row (without its generated ``id``)."""
        return {
            "call_record_id": self.record_id,
            "tenant": self.tenant,
            "seq": self.seq,
            "at": self.at,
            "party": self.party,
            "state": self.state,
            "previous": self.previous,
            "method": self.method,
            "digit": self.digit,
            "notice_sha256": self.notice_sha256,
            "policy_version": self.policy_version,
            "detail": self.detail,
        }


@dataclass(slots=True)
class RecordingRecord:
    """A finished recording of the call: where the file is, what it holds, its digest.

    ``recording_id`` is a fresh UUID 4 unless given; ``created_at`` is now.
    """

    record_id: str
    tenant: str
    path: str
    channels: int
    sample_rate: int
    started_at: datetime
    ended_at: datetime
    duration_s: float
    bytes: int
    sha256: str
    format: str = "wav"
    recording_id: str = field(default_factory=new_record_id)
    created_at: datetime = field(default_factory=utcnow)
    analyse: bool = False
    """Queue an analysis job with the row, in the same transaction (none is ever lost)."""
    key_id: str | None = None
    """The key that sealed the file, when it was sealed as it was listed."""

    def __post_init__(self) -> None:
        for name in ("record_id", "tenant", "path", "recording_id"):
            require_text(name, getattr(self, name))
        one_of("format", self.format, RECORDING_FORMATS)
        require_count("channels", self.channels, 1)
        require_count("sample_rate", self.sample_rate, 1)
        require_instant("started_at", self.started_at)
        require_instant("ended_at", self.ended_at)
        if self.ended_at < self.started_at:
            raise ValueError(
                f"ended_at {self.ended_at.isoformat()} is before "
                f"started_at {self.started_at.isoformat()}"
            )
        require_seconds("duration_s", self.duration_s)
        require_count("bytes", self.bytes, 0)
        require_sha256("sha256", self.sha256)
        require_instant("created_at", self.created_at)

    def job_row(self) -> dict[str, Any]:
        """The ``analysis_jobs`` row that queues this recording's analysis."""
        return {
            "id": new_record_id(),
            "recording_id": self.recording_id,
            "call_record_id": self.record_id,
            "tenant": self.tenant,
            "state": "queued",
            "attempts": 0,
            "not_before": self.created_at,
            "created_at": self.created_at,
        }

    def row(self) -> dict[str, Any]:
        """The ``recordings`` row."""
        return {
            "id": self.recording_id,
            "call_record_id": self.record_id,
            "tenant": self.tenant,
            "path": self.path,
            "format": self.format,
            "channels": self.channels,
            "sample_rate": self.sample_rate,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": float(self.duration_s),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "created_at": self.created_at,
            # only when set: a row without it stays valid on a schema before 0004
            **({"key_id": self.key_id} if self.key_id is not None else {}),
        }


CallOp = CallStart | CallUpdate | CallEnd
"""Operations that change the call's own row."""

WriteOp = CallStart | CallUpdate | CallEnd | ConsentEventRecord | RecordingRecord
"""Anything :meth:`RecordWriter.submit` accepts."""

WRITE_OP_TYPES: tuple[type, ...] = (
    CallStart,
    CallUpdate,
    CallEnd,
    ConsentEventRecord,
    RecordingRecord,
)
"""The classes of :data:`WriteOp`, for ``isinstance`` checks."""
