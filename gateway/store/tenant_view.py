"""One tenant's view of the store: every statement the API runs, bound to that tenant.

The API never builds a query of its own. A :class:`TenantView` is made from
the tenant of the request's key, and every statement it runs carries
``tenant = :tenant`` (through :meth:`TenantView._calls` and the like), so a
handler cannot forget it and one tenant's key can never reach another's rows:
another tenant's call id is simply not found.

Listing is keyset-paginated on (``started_at``, ``id``): each page continues
after the last row of the previous one, so deep pages cost what the first
does and rows written meanwhile neither repeat nor vanish.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    literal_column,
    or_,
    select,
    tuple_,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.audit import AuditBuffer, write_audit
from gateway.store.listing_rows import (
    LIST_COLUMNS,
    LIST_NAMES,
    instant_of,
    json_rows,
    listed_columns,
    listed_json_columns,
    listing_rows,
)
from gateway.store.models import (
    ANALYSES,
    ANALYSIS_JOBS,
    CALLS,
    CONSENT_EVENTS,
    RECORDINGS,
    REDACTIONS,
    TRANSCRIPTS,
)
from gateway.store.prepared import Prepared, PreparedReads
from gateway.store.queries import call_recordings, consent_trail, record_dict
from gateway.store.stats import Bucket, tenant_stats

Order = Literal["desc", "asc"]


ERASED_PREFIX = "erased:"
"""What an erased number becomes: this and a keyed hash (the same for the same number)."""


PAGE_SIZES = (10, 20, 25, 50, 100, 200, 250, 500, 1000)
"""The page sizes a page's statement is made for: a ``limit`` in between reads up to the
next one (the rows past ``limit`` are dropped)."""


def fetched_rows(limit: int) -> int:
    """The rows a page of ``limit`` asks the store for: ``limit`` rounded up to one of
    :data:`PAGE_SIZES` (past them, to thousands), and one more, which tells whether
    another page follows. The count is a literal in the statement, so each distinct count
    is a statement of its own, compiled and prepared apart: a client paging with every
    limit from 1 to 1000 makes nine, not a thousand."""
    if limit < 1:
        raise ValueError(f"a page holds at least one row, not {limit}")
    for size in PAGE_SIZES:
        if limit <= size:
            return size + 1
    return -(-limit // 1000) * 1000 + 1


@dataclass(frozen=True, slots=True)
class CallFilter:
    """The filters of a call listing; ``None`` or empty means no filter."""

    since: datetime | None = None
    until: datetime | None = None
    numbers: tuple[str, ...] = ()
    """Either party's number: every form the number may be stored in."""
    direction: str | None = None
    dispositions: tuple[str, ...] = ()
    consent_outcomes: tuple[str, ...] = ()
    min_duration_s: float | None = None

    def values(self) -> dict[str, Any]:
        """The filter's values by the names of the bind parameters that carry them; the
        names (in order) are the filter's shape: one compiled statement serves every
        filter of that shape."""
        found: dict[str, Any] = {}
        if self.since is not None:
            found["since"] = self.since
        if self.until is not None:
            found["until"] = self.until
        found.update((f"number_{i}", number) for i, number in enumerate(self.numbers))
        if self.direction is not None:
            found["direction"] = self.direction
        found.update((f"disposition_{i}", value) for i, value in enumerate(self.dispositions))
        found.update((f"consent_{i}", value) for i, value in enumerate(self.consent_outcomes))
        if self.min_duration_s is not None:
            found["min_duration"] = self.min_duration_s
        return found

    def conditions(self, tenant: str, dialect: str = "") -> list[ColumnElement[bool]]:
        """The filter as conditions on ``calls``, over the bind parameters of :meth:`values`,
        for the database named ``dialect`` (SQLAlchemy's dialect name)."""
        values = self.values()

        def bound(name: str, column: Any) -> BindParameter[Any]:
            # the column's type, not one guessed from the first value: an instant is
            # made UTC (and a naive one refused) as the column's type does
            return bindparam(name, values[name], type_=column.type)

        def bound_all(prefix: str, count: int, column: Any) -> list[BindParameter[Any]]:
            return [bound(f"{prefix}_{i}", column) for i in range(count)]

        found: list[ColumnElement[bool]] = []
        c = CALLS.c
        if self.since is not None:
            found.append(c.started_at >= bound("since", c.started_at))
        if self.until is not None:
            found.append(c.started_at < bound("until", c.started_at))
        if self.numbers:
            numbers = bound_all("number", len(self.numbers), c.source_number)
            if dialect == "sqlite":
                found.append(SQLITE_ROWID.in_(_ids_of_numbers(tenant, numbers, key=SQLITE_ROWID)))
            else:
                found.append(c.id.in_(_ids_of_numbers(tenant, numbers)))
        if self.direction is not None:
            found.append(c.direction == bound("direction", c.direction))
        if self.dispositions:
            dispositions = bound_all("disposition", len(self.dispositions), c.disposition)
            found.append(c.disposition.in_(dispositions))
        if self.consent_outcomes:
            outcomes = bound_all("consent", len(self.consent_outcomes), c.consent_outcome)
            found.append(c.consent_outcome.in_(outcomes))
        if self.min_duration_s is not None:
            found.append(c.duration_s >= bound("min_duration", c.duration_s))
        return found


SQLITE_ROWID: ColumnElement[Any] = literal_column("calls.rowid")
"""SQLite's row key of ``calls`` (its ``id`` has an index of its own)."""


def _ids_of_numbers(
    tenant: str,
    numbers: Sequence[str | BindParameter[Any]],
    *more: Select[Any],
    key: ColumnElement[Any] = CALLS.c.id,
) -> Any:
    """The ``key`` (ids by default) of the tenant's calls where either party is one of
    ``numbers`` (and of those ``more`` selects, too).

    Two index probes (``ix_calls_tenant_source_number``, ``..._destination_number``)
    joined by UNION: an ``OR`` of the two would leave SQLite without planner
    statistics scanning the whole tenant in start-time order. On SQLite the listing
    asks for rowids (:data:`SQLITE_ROWID`), which those indexes hold: each call found
    is then read by its rowid, with no look-up of its id in the primary key's index
    (a number's page of 21 calls over 1M: 156-162 us of SQLite's time against 210 us).
    """
    c = CALLS.c
    probes = [
        select(key).select_from(CALLS).where(c.tenant == tenant, party.in_(numbers))
        for party in (c.source_number, c.destination_number)
    ]
    return union(*probes, *more)


def _names_user(uri: Any, users: Sequence[str]) -> ColumnElement[bool]:
    """Whether the SIP, SIPS or tel URI in column ``uri`` has one of ``users`` as its user
    part (RFC 3261 19.1.1, RFC 3966 3). ``users`` are digits with maybe a ``+``, which
    hold no LIKE wildcard."""
    patterns = [
        pattern
        for user in users
        for pattern in (
            f"sip:{user}@%",
            f"sip:{user};%",
            f"sips:{user}@%",
            f"sips:{user};%",
            f"tel:{user}",
            f"tel:{user};%",
        )
    ]
    return or_(*(uri.like(pattern) for pattern in patterns))


def _ids_of_uri_users(tenant: str, users: Sequence[str]) -> Any:
    """The ids of the tenant's calls where either party's URI names one of ``users`` (a
    scan of the tenant's calls: numbers that are no valid E.164 number are not indexed)."""
    c = CALLS.c
    named = or_(_names_user(c.source_uri, users), _names_user(c.destination_uri, users))
    return select(c.id).where(c.tenant == tenant, named)


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom an export or erasure is about: valid numbers (E.164, as the records hold them),
    and dialled strings that are no valid number (an extension, a short code), which only
    the parties' URIs hold."""

    numbers: tuple[str, ...] = ()
    dialled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PageKey:
    """Where a page starts: after the row with this start time and id."""

    started_at: datetime
    record_id: str


@dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_key: PageKey | None


@dataclass(slots=True)
class JsonPage:
    """A page of calls as the JSON array of its ``rows`` rows."""

    json: bytes
    rows: int
    next_key: PageKey | None


@dataclass(slots=True)
class Erasure:
    """What erasing one number did."""

    calls: int = 0
    recordings: int = 0
    transcripts: int = 0
    files: list[str] = field(default_factory=list)


def subject_token(hash_key: str, tenant: str, number: str) -> str:
    """The keyed hash an erased number becomes (HMAC-SHA256, RFC 2104; 96 bits shown).

    Keyed so nobody without the key can test a guessed number against it; the
    same number of the same tenant always gives the same token, so counts of
    distinct callers stay right.
    """
    mac = hmac.new(hash_key.encode(), f"{tenant}\x00{number}".encode(), hashlib.sha256)
    return ERASED_PREFIX + mac.hexdigest()[:24]


class TenantView:
    """The store as one tenant sees it."""

    def __init__(
        self,
        engine: AsyncEngine,
        tenant: str,
        key_id: str | None = None,
        reads: AuditBuffer | None = None,
        prepared: PreparedReads | None = None,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self.key_id = key_id
        self.reads = reads
        """Where audit entries of reads go in batches; ``None``: in the read's transaction."""
        self.prepared = prepared
        """Hot reads on the driver (see :mod:`gateway.store.prepared`); ``None``: through
        SQLAlchemy's connections."""

    # -------------------------------------------------------------- scoping

    def _calls(self, *columns: Any) -> Select[Any]:
        """A select from ``calls`` of this tenant's rows only."""
        return select(*(columns or (CALLS,))).where(CALLS.c.tenant == self.tenant)

    async def audit(
        self,
        connection: AsyncConnection,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await write_audit(
            connection,
            tenant=self.tenant,
            key_id=self.key_id,
            action=action,
            target=target,
            detail=detail,
        )

    async def audit_read(
        self,
        connection: AsyncConnection | None,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The audit entry of a read: batched when there is a buffer, else in ``connection``."""
        if self.reads is not None:
            self.reads.add(
                tenant=self.tenant, key_id=self.key_id, action=action, target=target, detail=detail
            )
            return
        if connection is None:
            async with self.engine.begin() as connection:
                await self.audit(connection, action, target, detail)
            return
        await self.audit(connection, action, target, detail)

    # -------------------------------------------------------------- calls

    def listing(
        self,
        where: CallFilter,
        order: Order,
        after: PageKey | None,
        columns: Sequence[Any] = LIST_COLUMNS,
    ) -> Select[Any]:
        """The listing's statement of ``columns``: ``where``, after ``after`` in ``order``
        (values as bind parameters named by :meth:`CallFilter.values`, ``after_at``,
        ``after_id``)."""
        query = self._calls(*columns).where(
            *where.conditions(self.tenant, self.engine.dialect.name)
        )
        key = tuple_(CALLS.c.started_at, CALLS.c.id)
        if after is not None:
            position = tuple_(
                bindparam("after_at", after.started_at, type_=CALLS.c.started_at.type),
                bindparam("after_id", after.record_id),
            )
            query = query.where(key < position if order == "desc" else key > position)
        if order == "desc":
            return query.order_by(CALLS.c.started_at.desc(), CALLS.c.id.desc())
        return query.order_by(CALLS.c.started_at, CALLS.c.id)

    def _page_statement(
        self,
        where: CallFilter,
        order: Order,
        after: PageKey | None,
        rows: int,
        columns: Sequence[Any] = LIST_COLUMNS,
    ) -> Select[Any]:
        # the row count as a literal, not a parameter: with LIMIT $n PostgreSQL's generic
        # plan of a prepared statement looks costlier than its custom ones and it plans
        # every read again (220 against 150-173 us of PostgreSQL's CPU for a one-day page,
        # timed with a script); few distinct counts (fetched_rows), so few statements
        return self.listing(where, order, after, columns).limit(literal_column(str(int(rows))))

    async def list_calls(
        self,
        where: CallFilter,
        *,
        limit: int,
        order: Order = "desc",
        after: PageKey | None = None,
    ) -> Page:
        """One page of calls; ``next_key`` is set when more may follow. Audited.

        With :attr:`prepared` reads, the statement of the filter's shape is compiled
        once and instants come as RFC 3339 text; without, as UTC datetimes (the API's
        JSON encoder writes both the same)."""
        if self.prepared is None:
            query = self._page_statement(where, order, after, fetched_rows(limit))
            async with self.engine.connect() as connection:
                found = [
                    dict(zip(LIST_NAMES, row, strict=True))
                    for row in await connection.execute(query)
                ]
        else:
            statement, values = self._prepared_page(where, order, after, limit, "rows")
            found = await self.prepared.fetch(statement, values, listing_rows(self.engine))
        more = len(found) > limit
        found = found[:limit]
        await self.audit_read(None, "calls.list", detail={"rows": len(found)})
        next_key = None
        if more:
            last = found[-1]
            next_key = PageKey(instant_of(last["started_at"]), last["id"])
        return Page(found, next_key)

    async def list_calls_json(
        self,
        where: CallFilter,
        *,
        limit: int,
        order: Order = "desc",
        after: PageKey | None = None,
    ) -> JsonPage:
        """:meth:`list_calls` with the rows as the JSON array the API serves. Audited.

        With :attr:`prepared` reads, the store hands over each row's JSON object as it
        keeps it (:func:`~gateway.store.listing_rows.listed_json_columns`); without, the
        rows of :meth:`list_calls` are encoded (orjson)."""
        if (
            self.prepared is None
            or listed_json_columns(self.engine.dialect) is None
            or not await self.prepared.stored_listing()
        ):
            page = await self.list_calls(where, limit=limit, order=order, after=after)
            return JsonPage(orjson.dumps(page.rows), len(page.rows), page.next_key)
        statement, values = self._prepared_page(where, order, after, limit, "json")
        found = await self.prepared.fetch(statement, values, json_rows(limit))
        await self.audit_read(None, "calls.list", detail={"rows": found.count})
        next_key = None
        if found.last is not None:
            next_key = PageKey(instant_of(found.last[0]), found.last[1])
        return JsonPage(found.json, found.count, next_key)

    def _listed(self, form: Literal["rows", "json"]) -> Sequence[Any]:
        if form == "json":
            return listed_json_columns(self.engine.dialect) or ()
        return listed_columns(self.engine.dialect)

    def _prepared_page(
        self,
        where: CallFilter,
        order: Order,
        after: PageKey | None,
        limit: int,
        form: Literal["rows", "json"],
    ) -> tuple[Prepared, dict[str, Any]]:
        """The prepared statement of a page (:func:`fetched_rows` of ``limit``: at least one
        row more, to tell whether another page follows) as driver rows or as JSON objects,
        and its values."""
        assert self.prepared is not None
        values = where.values()
        if after is not None:
            values["after_at"], values["after_id"] = after.started_at, after.record_id
        rows = fetched_rows(limit)
        shape = ("calls.list", form, self.tenant, order, after is not None, rows, *values)
        statement = self.prepared.prepared(
            shape,
            lambda: self._page_statement(where, order, after, rows, self._listed(form)),
            values,
        )
        return statement, values

    async def get_call(self, record_id: str) -> dict[str, Any] | None:
        """One call with its consent trail and recordings; ``None`` if not this tenant's."""
        async with self.engine.begin() as connection:
            row = (
                (await connection.execute(self._calls().where(CALLS.c.id == record_id)))
                .mappings()
                .first()
            )
            if row is None:
                return None
            found = await _with_trail(connection, record_dict(row))
            await self.audit_read(connection, "call.read", target=record_id)
        return found

    async def transcript(self, record_id: str) -> dict[str, Any] | None:
        """The call's redacted transcripts (per party) and spans; ``None`` if not this
        tenant's call. Audited."""
        async with self.engine.begin() as connection:
            if not await self._owns(connection, record_id):
                return None
            rows = await connection.execute(
                select(TRANSCRIPTS)
                .where(
                    TRANSCRIPTS.c.tenant == self.tenant, TRANSCRIPTS.c.call_record_id == record_id
                )
                .order_by(TRANSCRIPTS.c.created_at, TRANSCRIPTS.c.party)
            )
            transcripts = [record_dict(row) for row in rows.mappings()]
            spans = await connection.execute(
                select(REDACTIONS)
                .where(REDACTIONS.c.tenant == self.tenant, REDACTIONS.c.call_record_id == record_id)
                .order_by(REDACTIONS.c.party, REDACTIONS.c.word_start)
            )
            redactions = [record_dict(row) for row in spans.mappings()]
            await self.audit_read(connection, "call.transcript", target=record_id)
        return {"transcripts": transcripts, "redactions": redactions}

    async def cues(self, record_id: str) -> list[dict[str, Any]] | None:
        """The talk-time cues of each of the call's analysed recordings. Audited."""
        async with self.engine.begin() as connection:
            if not await self._owns(connection, record_id):
                return None
            rows = await connection.execute(
                select(ANALYSES)
                .where(ANALYSES.c.tenant == self.tenant, ANALYSES.c.call_record_id == record_id)
                .order_by(ANALYSES.c.created_at)
            )
            found = [record_dict(row) for row in rows.mappings()]
            await self.audit_read(connection, "call.cues", target=record_id)
        return found

    async def _owns(self, connection: AsyncConnection, record_id: str) -> bool:
        query = self._calls(CALLS.c.id).where(CALLS.c.id == record_id)
        return (await connection.execute(query)).first() is not None

    async def call_state(self, record_id: str) -> dict[str, Any] | None:
        """Whether the call is this tenant's, and where it lives: id, instance, ended_at."""
        query = self._calls(CALLS.c.id, CALLS.c.gateway_instance, CALLS.c.ended_at).where(
            CALLS.c.id == record_id
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return None if row is None else record_dict(row)

    async def recording(self, record_id: str, recording_id: str | None) -> dict[str, Any] | None:
        """A recording of one of this tenant's calls (the first, or the one named)."""
        query = (
            select(RECORDINGS)
            .where(RECORDINGS.c.tenant == self.tenant, RECORDINGS.c.call_record_id == record_id)
            .order_by(RECORDINGS.c.started_at, RECORDINGS.c.id)
        )
        if recording_id is not None:
            query = query.where(RECORDINGS.c.id == recording_id)
        async with self.engine.begin() as connection:
            row = (await connection.execute(query.limit(1))).mappings().first()
            if row is None:
                return None
            await self.audit_read(
                connection, "call.recording", target=record_id, detail={"recording": row["id"]}
            )
        return record_dict(row)

    # -------------------------------------------------------------- stats

    async def stats(self, since: datetime, until: datetime, bucket: Bucket) -> list[dict[str, Any]]:
        """Per bucket: calls, answered, answer rate, total and mean duration, consent outcomes
        (:mod:`gateway.store.stats`)."""
        return await tenant_stats(
            self.engine, self.tenant, since, until, bucket, reads=self.prepared
        )

    # -------------------------------------------------------------- subjects

    def _of_subject(self, subject: Subject) -> ColumnElement[bool]:
        by_uri = [_ids_of_uri_users(self.tenant, subject.dialled)] if subject.dialled else []
        return CALLS.c.id.in_(_ids_of_numbers(self.tenant, subject.numbers, *by_uri))

    async def subject_export(self, subject: Subject, token: str) -> dict[str, Any]:
        """Every record, consent event and recording this tenant holds of the number."""
        query = self._calls().where(self._of_subject(subject)).order_by(CALLS.c.started_at)
        async with self.engine.begin() as connection:
            calls = [record_dict(row) for row in (await connection.execute(query)).mappings()]
            calls = [await _with_trail(connection, call) for call in calls]
            ids = [call["id"] for call in calls]
            transcribed = (
                select(TRANSCRIPTS.c.call_record_id, TRANSCRIPTS.c.party)
                .where(TRANSCRIPTS.c.tenant == self.tenant, TRANSCRIPTS.c.call_record_id.in_(ids))
                .order_by(TRANSCRIPTS.c.call_record_id, TRANSCRIPTS.c.party)
            )
            transcripts = [
                {"call": row[0], "party": row[1]}
                for row in (await connection.execute(transcribed)).all()
            ]
            await self.audit(
                connection, "subject.export", target=token, detail={"calls": len(calls)}
            )
        return {"calls": calls, "transcripts": transcripts}

    async def erase_subject(self, subject: Subject, token: str) -> Erasure:
        """Remove the number's recordings and transcripts; put ``token`` where the number was.

        The records stay (counts and stats stay right), the consent trail stays
        (it holds no number); URIs that named the number name the token. The
        recording rows go in the same transaction as the audit entry; the files
        are for the caller to delete (:attr:`Erasure.files`) once it commits.
        Running it again finds nothing and changes nothing.
        """
        erasure = Erasure()
        c = CALLS.c
        # the token too: a call still open at the first erasure may gain a recording later
        numbers = [*subject.numbers, token]
        found = Subject(tuple(numbers), subject.dialled)
        async with self.engine.begin() as connection:
            query = self._calls(c.id).where(self._of_subject(found))
            ids = [row[0] for row in await connection.execute(query)]
            if ids:
                recordings = select(RECORDINGS.c.id, RECORDINGS.c.path).where(
                    RECORDINGS.c.tenant == self.tenant, RECORDINGS.c.call_record_id.in_(ids)
                )
                for _, path in await connection.execute(recordings):
                    erasure.files.append(path)
                deleted = await connection.execute(
                    delete(RECORDINGS).where(
                        RECORDINGS.c.tenant == self.tenant, RECORDINGS.c.call_record_id.in_(ids)
                    )
                )
                erasure.recordings = deleted.rowcount or 0
                # what the subject said, even redacted (and the live pieces that never had a
                # recording): transcripts outlive recordings in retention, not in erasure
                for table in (REDACTIONS, TRANSCRIPTS):
                    gone = await connection.execute(
                        delete(table).where(
                            table.c.tenant == self.tenant, table.c.call_record_id.in_(ids)
                        )
                    )
                    if table is TRANSCRIPTS:
                        erasure.transcripts = gone.rowcount or 0
                for number_column, uri_column in (
                    (c.source_number, c.source_uri),
                    (c.destination_number, c.destination_uri),
                ):
                    named = number_column.in_(numbers)
                    if subject.dialled:
                        named = or_(named, _names_user(uri_column, subject.dialled))
                    await connection.execute(
                        update(CALLS)
                        .where(c.tenant == self.tenant, c.id.in_(ids), named)
                        .values({number_column: token, uri_column: token})
                    )
                erasure.calls = len(ids)
            await self.audit(
                connection,
                "subject.erase",
                target=token,
                detail={
                    "calls": erasure.calls,
                    "recordings": erasure.recordings,
                    **({"transcripts": erasure.transcripts} if erasure.transcripts else {}),
                },
            )
        return erasure

    # -------------------------------------------------------------- retention

    async def purge(
        self,
        *,
        recordings_before: datetime | None,
        records_before: datetime | None,
        transcripts_before: datetime | None = None,
    ) -> Erasure:
        """Remove transcripts, recordings and records made before their instants."""
        removed = Erasure()
        async with self.engine.begin() as connection:
            if transcripts_before is not None:
                removed.transcripts = await self._purge_transcripts(connection, transcripts_before)
            if recordings_before is not None:
                due = and_(
                    RECORDINGS.c.tenant == self.tenant, RECORDINGS.c.started_at < recordings_before
                )
                for (path,) in await connection.execute(select(RECORDINGS.c.path).where(due)):
                    removed.files.append(path)
                result = await connection.execute(delete(RECORDINGS).where(due))
                removed.recordings = result.rowcount or 0
            if records_before is not None:
                old = self._calls(CALLS.c.id).where(
                    CALLS.c.started_at < records_before, CALLS.c.ended_at.is_not(None)
                )
                ids = [row[0] for row in await connection.execute(old)]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    for (path,) in await connection.execute(
                        select(RECORDINGS.c.path).where(RECORDINGS.c.call_record_id.in_(chunk))
                    ):
                        removed.files.append(path)
                    for table in (
                        REDACTIONS,
                        TRANSCRIPTS,
                        ANALYSES,
                        ANALYSIS_JOBS,
                        CONSENT_EVENTS,
                        RECORDINGS,
                    ):
                        await connection.execute(
                            delete(table).where(table.c.call_record_id.in_(chunk))
                        )
                    await connection.execute(delete(CALLS).where(CALLS.c.id.in_(chunk)))
                removed.calls = len(ids)
            if removed.calls or removed.recordings or removed.transcripts:
                detail = {"calls": removed.calls, "recordings": removed.recordings}
                if removed.transcripts:
                    detail["transcripts"] = removed.transcripts
                await self.audit(connection, "retention.purge", detail=detail)
        return removed

    async def _purge_transcripts(self, connection: AsyncConnection, before: datetime) -> int:
        """Remove the transcripts made before ``before`` (live pieces too, and whether or not
        their recording is still kept), then the redaction spans of every call and party
        left with no transcript; the number of transcripts removed."""
        stale = and_(TRANSCRIPTS.c.tenant == self.tenant, TRANSCRIPTS.c.created_at < before)
        calls = [
            row[0]
            for row in await connection.execute(
                select(TRANSCRIPTS.c.call_record_id).where(stale).distinct()
            )
        ]
        result = await connection.execute(delete(TRANSCRIPTS).where(stale))
        left = (
            select(TRANSCRIPTS.c.id)
            .where(
                TRANSCRIPTS.c.call_record_id == REDACTIONS.c.call_record_id,
                TRANSCRIPTS.c.party == REDACTIONS.c.party,
            )
            .exists()
        )
        for start in range(0, len(calls), 500):
            await connection.execute(
                delete(REDACTIONS).where(
                    REDACTIONS.c.tenant == self.tenant,
                    REDACTIONS.c.call_record_id.in_(calls[start : start + 500]),
                    ~left,
                )
            )
        return result.rowcount or 0


async def _with_trail(connection: AsyncConnection, call: dict[str, Any]) -> dict[str, Any]:
    """A call record with its consent trail, recordings and analysis jobs."""
    record_id = call["id"]
    call["consent_events"] = await consent_trail(connection, record_id)
    call["recordings"] = await call_recordings(connection, record_id)
    jobs = select(
        ANALYSIS_JOBS.c.recording_id,
        ANALYSIS_JOBS.c.state,
        ANALYSIS_JOBS.c.attempts,
        ANALYSIS_JOBS.c.last_error,
        ANALYSIS_JOBS.c.finished_at,
    ).where(ANALYSIS_JOBS.c.call_record_id == record_id)
    call["analysis"] = [record_dict(job) for job in (await connection.execute(jobs)).mappings()]
    return call


__all__ = [
    "CallFilter",
    "Erasure",
    "Page",
    "PageKey",
    "TenantView",
    "subject_token",
]
