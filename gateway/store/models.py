"""ORM models of the call-record store.

One row per call in ``calls``: the parties, addresses, times, disposition and
final SIP status (RFC 3261 21) of the call, per-leg media counters, and the
consent rule that applied and its outcome. ``consent_events`` is each call's
consent trail, one row per state change in order; ``recordings`` lists the
audio files captured after consent. ``api_keys``, ``audit_log``,
``tenant_policies`` and ``store_secrets`` serve the HTTP API.

The consent vocabularies below are the ones the consent state machine
(:mod:`gateway.consent.machine`) emits; the store checks values against them
so the trail stays readable whatever writes to it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
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

CONSENT_MODES: tuple[str, ...] = ("notice", "opt_out", "opt_in", "none")
"""What had to happen before a party's audio could be captured (the call's rule)."""

CONSENT_PARTIES: tuple[str, ...] = ("one", "all")
"""Whose consent the rule needs: one party's or every party's."""

CONSENT_OUTCOMES: tuple[str, ...] = (
    "granted",
    "declined",
    "timed_out",
    "withdrawn",
    "pending",
    "none",
    "unavailable",
)
"""The call's consent outcome: ``pending`` when the call ended before every party decided,
``none`` when the rule never captures, ``unavailable`` when the notice could not play."""

CONSENT_EVENT_PARTIES: tuple[str, ...] = ("caller", "callee", "call")
"""Whose state an event changes; ``call`` for call-wide changes (pause, resume)."""

CONSENT_STATES: tuple[str, ...] = (
    "pending",
    "notified",
    "granted",
    "declined",
    "timed_out",
    "withdrawn",
    "paused",
)
"""The states a consent event enters (and leaves)."""

CONSENT_METHODS: tuple[str, ...] = (
    "implied",
    "digit",
    "info",
    "header",
    "api",
    "policy",
    "timeout",
    "hangup",
    "notice",
)
"""How a consent change came about: DTMF (RFC 4733 or in-band), SIP INFO, a SIP header,
the HTTP API, the tenant's policy, a timer, a hang-up or the notice itself."""

RECORDING_FORMATS: tuple[str, ...] = ("wav",)
"""File formats of captured audio."""

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
        list[dict[str, Any]]: JSON(none_as_null=True),
    }


class CallRecord(Base):
    """One call through the gateway, from the A leg's INVITE to its end."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_tenant_started_at_id", "tenant", "started_at", "id"),
        Index("ix_calls_tenant_source_number", "tenant", "source_number", "started_at"),
        Index("ix_calls_tenant_destination_number", "tenant", "destination_number", "started_at"),
        Index(
            "ix_calls_open",
            "tenant",
            "started_at",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "ix_calls_tenant_stats",
            "tenant",
            "started_at",
            "answered_at",
            "billable_s",
            "duration_s",
            "consent_outcome",
        ),
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

    consent_mode: Mapped[str | None]
    consent_parties: Mapped[str | None]
    consent_rules: Mapped[list[dict[str, Any]] | None]
    """Which party's jurisdiction and rule applied, and why: one entry per contribution."""
    policy_version: Mapped[str | None]
    consent_outcome: Mapped[str | None]
    notice_sha256: Mapped[str | None]
    capture_s: Mapped[float | None]
    """Seconds of audio captured (after consent, pauses excluded)."""

    def __repr__(self) -> str:
        return f"CallRecord(id={self.id!r}, call_id={self.call_id!r}, tenant={self.tenant!r})"


CALLS: Table = CallRecord.__table__  # type: ignore[assignment]
"""The ``calls`` table, for Core statements."""

TRIGGER_COLUMNS: frozenset[tuple[str, str]] = frozenset({("calls", "listed")})
"""Columns the migrations make outside these models, written by the database's own
triggers: ``calls.listed``, each call's listing JSON (revision 0007, read by
:mod:`gateway.store.listing_rows`; never written by the application, and missing on a
SQLite built without JSON functions)."""


def in_models(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object`` for comparing a database with these models: leaves
    out :data:`TRIGGER_COLUMNS`."""
    if kind == "column" and reflected and compare_to is None:
        return (obj.table.name, name) not in TRIGGER_COLUMNS
    return True


class ConsentEvent(Base):
    """One change of a party's consent state: the call's consent trail, in ``seq`` order.

    ``seq`` counts from 1 within the call; the pair (call, ``seq``) is unique
    and its index also serves lookups of a call's trail.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        UniqueConstraint("call_record_id", "seq"),
        Index("ix_consent_events_tenant_at", "tenant", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    call_record_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    tenant: Mapped[str]
    seq: Mapped[int]
    at: Mapped[datetime]
    party: Mapped[str]
    state: Mapped[str]
    previous: Mapped[str | None]
    method: Mapped[str]
    digit: Mapped[str | None]
    notice_sha256: Mapped[str | None]
    policy_version: Mapped[str]
    detail: Mapped[str | None]

    def __repr__(self) -> str:
        return (
            f"ConsentEvent(call_record_id={self.call_record_id!r}, seq={self.seq!r}, "
            f"party={self.party!r}, state={self.state!r})"
        )


CONSENT_EVENTS: Table = ConsentEvent.__table__  # type: ignore[assignment]
"""The ``consent_events`` table, for Core statements."""


class Recording(Base):
    """One audio file captured from a call (a channel per party)."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(primary_key=True, default=new_record_id)
    call_record_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    tenant: Mapped[str]
    path: Mapped[str]
    format: Mapped[str]
    channels: Mapped[int]
    sample_rate: Mapped[int]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    duration_s: Mapped[float]
    bytes: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[str]
    created_at: Mapped[datetime]
    key_id: Mapped[str | None]
    """The key that sealed the file (AES-256-GCM); ``None`` for a plain file."""
    redacted_at: Mapped[datetime | None]
    """When the analysis muted the sensitive spans in the audio; ``None`` before."""

    def __repr__(self) -> str:
        return f"Recording(id={self.id!r}, call_record_id={self.call_record_id!r})"


RECORDINGS: Table = Recording.__table__  # type: ignore[assignment]
"""The ``recordings`` table, for Core statements."""


API_ROLES: tuple[str, ...] = ("reader", "admin")
"""``reader``: read calls, stats and policy. ``admin``: also change the policy, control
capture and serve data-subject requests."""

AUDIT_ACTIONS: tuple[str, ...] = (
    "calls.list",
    "calls.export",
    "call.read",
    "call.transcript",
    "call.recording",
    "call.cues",
    "call.capture",
    "policy.update",
    "subject.export",
    "subject.erase",
    "retention.purge",
)
"""What an audit entry records: reads of personal data, changes, erasures, purges."""
READ_ACTIONS: frozenset[str] = frozenset(
    ("calls.list", "calls.export", "call.read", "call.transcript", "call.recording", "call.cues")
)
"""The entries of reads (batched by :class:`~gateway.store.audit.AuditBuffer`); the
others record changes, a data subject's export or erasure, and purges."""


class ApiKey(Base):
    """A bearer key of the API, bound to one tenant; only its SHA-256 is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant", "tenant"),)

    id: Mapped[str] = mapped_column(primary_key=True, default=new_record_id)
    tenant: Mapped[str]
    role: Mapped[str]
    name: Mapped[str | None]
    prefix: Mapped[str]
    """The key's first characters, shown in listings so an operator can tell keys apart."""
    key_hash: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]


class AuditEntry(Base):
    """One read of personal data, change or erasure, by which key, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    tenant: Mapped[str]
    key_id: Mapped[str | None]
    """The API key that acted; ``None`` for the gateway itself (retention)."""
    action: Mapped[str]
    target: Mapped[str | None]
    detail: Mapped[dict[str, Any] | None]


AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]


class TenantPolicy(Base):
    """One version of a tenant's consent policy set through the API; the newest is in force."""

    __tablename__ = "tenant_policies"
    __table_args__ = (UniqueConstraint("tenant", "revision"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant: Mapped[str]
    revision: Mapped[int]
    version: Mapped[str]
    policy: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    key_id: Mapped[str | None]


TENANT_POLICIES: Table = TenantPolicy.__table__  # type: ignore[assignment]


class StoreSecret(Base):
    """A secret shared by every instance on the store, made once."""

    __tablename__ = "store_secrets"

    name: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str]
    created_at: Mapped[datetime]


STORE_SECRETS: Table = StoreSecret.__table__  # type: ignore[assignment]


JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "failed")
"""An analysis job: waiting (maybe until ``not_before``), claimed, finished, given up."""


def _call_fk() -> Any:
    return ForeignKey("calls.id", ondelete="CASCADE")


def _recording_fk() -> Any:
    return ForeignKey("recordings.id", ondelete="CASCADE")


def _recording_ref() -> Any:
    """What outlives its recording (a transcript kept longer than the audio) forgets it."""
    return ForeignKey("recordings.id", ondelete="SET NULL")


class AnalysisJob(Base):
    """The analysis of one recording: queued with it, claimed by a worker, retried, finished."""

    __tablename__ = "analysis_jobs"
    __table_args__ = (
        Index("ix_analysis_jobs_state_not_before", "state", "not_before"),
        Index("ix_analysis_jobs_call_record_id", "call_record_id"),
    )

    id: Mapped[str] = mapped_column(primary_key=True, default=new_record_id)
    recording_id: Mapped[str] = mapped_column(_recording_fk(), unique=True)
    call_record_id: Mapped[str] = mapped_column(_call_fk())
    tenant: Mapped[str]
    state: Mapped[str]
    attempts: Mapped[int]
    not_before: Mapped[datetime]
    claimed_by: Mapped[str | None]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


ANALYSIS_JOBS: Table = AnalysisJob.__table__  # type: ignore[assignment]


class TranscriptRow(Base):
    """One party's transcript of a recording, redacted: no sensitive span survives in it."""

    __tablename__ = "transcripts"
    __table_args__ = (Index("ix_transcripts_call_record_id", "call_record_id"),)

    id: Mapped[str] = mapped_column(primary_key=True, default=new_record_id)
    call_record_id: Mapped[str] = mapped_column(_call_fk())
    recording_id: Mapped[str | None] = mapped_column(_recording_ref())
    """``None`` for a live piece, made while the call ran (before its recording existed), and
    once the recording was removed (retention keeps transcripts longer than audio)."""
    tenant: Mapped[str]
    party: Mapped[str]
    language: Mapped[str]
    backend: Mapped[str]
    text: Mapped[str]
    words: Mapped[list[dict[str, Any]]]
    created_at: Mapped[datetime]
    live: Mapped[bool] = mapped_column(Boolean())


TRANSCRIPTS: Table = TranscriptRow.__table__  # type: ignore[assignment]


class RedactionRow(Base):
    """One span removed from a transcript and the audio: its type, words and times."""

    __tablename__ = "redactions"
    __table_args__ = (Index("ix_redactions_call_record_id", "call_record_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    call_record_id: Mapped[str] = mapped_column(_call_fk())
    recording_id: Mapped[str | None] = mapped_column(_recording_ref())
    tenant: Mapped[str]
    party: Mapped[str]
    entity: Mapped[str]
    word_start: Mapped[int]
    word_end: Mapped[int]
    start_s: Mapped[float]
    end_s: Mapped[float]
    score: Mapped[float]


REDACTIONS: Table = RedactionRow.__table__  # type: ignore[assignment]


class AnalysisRow(Base):
    """What the analysis of one recording found: talk-time cues, and what it muted."""

    __tablename__ = "analyses"
    __table_args__ = (Index("ix_analyses_call_record_id", "call_record_id"),)

    recording_id: Mapped[str] = mapped_column(_recording_fk(), primary_key=True)
    call_record_id: Mapped[str] = mapped_column(_call_fk())
    tenant: Mapped[str]
    cues: Mapped[dict[str, Any]]
    muted_s: Mapped[float]
    spans: Mapped[int]
    transcriber: Mapped[str]
    created_at: Mapped[datetime]


ANALYSES: Table = AnalysisRow.__table__  # type: ignore[assignment]


def _stats_counts() -> list[Column[Any]]:
    """The counts an aggregate row of the stats holds."""
    return [
        Column("calls", Integer(), nullable=False),
        Column("answered", Integer(), nullable=False),
        Column("duration_s", Float(), nullable=False),
        Column("billable_s", Float(), nullable=False),
        *(Column(f"o_{outcome}", Integer(), nullable=False) for outcome in CONSENT_OUTCOMES),
    ]


CALL_STATS_HOURLY: Table = Table(
    "call_stats_hourly",
    Base.metadata,
    Column("tenant", Text(), primary_key=True),
    Column("hour", UtcDateTime(), primary_key=True),
    *_stats_counts(),
)
"""Per tenant and UTC hour of start: the counts /v1/stats sums, for settled hours only."""

CALL_STATS_DAILY: Table = Table(
    "call_stats_daily",
    Base.metadata,
    Column("tenant", Text(), primary_key=True),
    Column("day", UtcDateTime(), primary_key=True),
    *_stats_counts(),
)
"""Per tenant and UTC day: the sums of the day's settled hours, once all 24 are settled."""

CALL_STATS_MARKS: Table = Table(
    "call_stats_marks",
    Base.metadata,
    Column("tenant", Text(), primary_key=True),
    Column("settled_until", UtcDateTime(), nullable=False),
    Column("days_until", UtcDateTime(), nullable=True),
)
"""Per tenant: ``call_stats_hourly`` holds every hour before ``settled_until``,
``call_stats_daily`` every day before ``days_until`` (null: no day yet)."""
