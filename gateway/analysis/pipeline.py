"""The post-call analysis queue: jobs claimed from the store, run in worker processes.

A job is queued in the same transaction as its recording's row
(:meth:`~gateway.store.ops.RecordingRecord.job_row`), so none is lost. A
worker claims one with a conditional update (the row changes only if it is
still claimable, so two instances never both take it), runs
:func:`gateway.analysis.job.analyse` in a process pool (the CPU-bound
transcriber never stalls the event loop that relays media), then stores
transcripts, spans, cues and the redacted recording's place in one
transaction with the job's ``done``: a job is never repeated once done.
The original, unredacted file is removed after that commit.

A failure is retried after ``retry_s``, doubling, up to ``max_attempts``;
then the job is ``failed`` with the reason. A job left ``running`` by an
instance that stopped (its lease, ``lease_s``, ran out) is claimed again;
an instance that stops cleanly puts its running jobs back first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from dsp.redact import words
from gateway.analysis.job import SEALED_SUFFIX, JobResult, JobSpec, analyse
from gateway.analysis.sealed import Keyring, SealedError, seal_in_place
from gateway.config import Settings, TenantSettings
from gateway.store.models import (
    ANALYSES,
    ANALYSIS_JOBS,
    RECORDINGS,
    REDACTIONS,
    TRANSCRIPTS,
    new_record_id,
)

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
ERROR_LIMIT = 2000
CANDIDATES = 16
"""Jobs looked at per claim, so instances claiming at once do not all want the same one."""


def tenant_keys(tenant: TenantSettings) -> tuple[dict[str, str], str | None]:
    """The tenant's sealing keys (the file's, then ``keys_env``'s) and the current id."""
    keys = dict(tenant.sealing.keys)
    if tenant.sealing.keys_env:
        for item in os.environ.get(tenant.sealing.keys_env, "").split(","):
            key_id, _, value = item.strip().partition(":")
            if key_id and value:
                keys[key_id] = value
    current = tenant.sealing.current or (list(keys)[-1] if keys else None)
    return keys, current


def job_spec(tenant: TenantSettings, recording_path: str, attempt: int = 1) -> JobSpec:
    analysis = tenant.analysis
    options: dict[str, Any] = {"language": analysis.language}
    if analysis.transcriber == "http":
        options["url"] = analysis.http_url
        if analysis.http_token_env:
            options["token"] = os.environ.get(analysis.http_token_env)
    keys, current = tenant_keys(tenant)
    return JobSpec(
        recording_path=recording_path,
        transcriber=analysis.transcriber,
        transcriber_options=options,
        language=analysis.language,
        entities=tuple(analysis.entities),
        replacement=analysis.replacement,
        audio=analysis.audio,
        margin_s=analysis.margin_ms / 1000,
        keys=keys,
        current_key=current,
        attempt=attempt,
    )


class StaleClaim(Exception):
    """The job's lease passed to another claim: this run's results are dropped."""


def _mine(job: dict[str, Any]) -> Any:
    """The job row as this run claimed it: same id, same claimant, same attempt."""
    c = ANALYSIS_JOBS.c
    return and_(
        c.id == job["id"],
        c.state == "running",
        c.claimed_by == job["claimed_by"],
        c.attempts == job["attempts"],
    )


class AnalysisPipeline:
    """Claims and runs analysis jobs, at most ``analysis.workers`` at a time."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.instance = settings.instance_id
        self.workers = settings.analysis.workers
        self.done = 0
        self.failed = 0
        self._executor: ProcessPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if self.workers < 1:
            return
        await self._release(every_instance=False)
        if words.NATIVE_MISSING is not None:
            log.warning("transcript redaction reads each word in Python: %s", words.NATIVE_MISSING)
        self._executor = ProcessPoolExecutor(self.workers, mp_context=_SPAWN)
        self._task = asyncio.create_task(self._loop(), name="callgate-analysis")

    @property
    def executor(self) -> ProcessPoolExecutor | None:
        """The worker pool (None before start, after stop, or with no workers)."""
        return self._executor

    def nudge(self) -> None:
        """Look for work now (a recording was just listed)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        await self._release(every_instance=False)

    async def _release(self, every_instance: bool) -> None:
        """Put this instance's running jobs back in the queue (an interrupted attempt is free)."""
        where = [ANALYSIS_JOBS.c.state == "running"]
        if not every_instance:
            where.append(ANALYSIS_JOBS.c.claimed_by == self.instance)
        async with self.engine.begin() as connection:
            await connection.execute(
                update(ANALYSIS_JOBS)
                .where(*where)
                .values(state="queued", claimed_by=None, attempts=ANALYSIS_JOBS.c.attempts - 1)
            )

    async def _loop(self) -> None:
        slots = asyncio.Semaphore(self.workers)
        while True:
            await slots.acquire()
            try:
                job = await self._claim()
            except Exception:
                log.exception("analysis: claiming a job failed; trying again")
                job = None
            if job is None:
                slots.release()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.analysis.poll_s)
                continue
            task = asyncio.create_task(self._run(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _claim(self) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        c = ANALYSIS_JOBS.c
        claimable = or_(
            and_(c.state == "queued", c.not_before <= now),
            and_(
                c.state == "running",
                c.claimed_at < now - timedelta(seconds=self.settings.analysis.lease_s),
            ),
        )
        async with self.engine.begin() as connection:
            candidates = (
                (
                    await connection.execute(
                        select(ANALYSIS_JOBS)
                        .where(claimable)
                        .order_by(c.created_at)
                        .limit(CANDIDATES)
                    )
                )
                .mappings()
                .all()
            )
            candidate = None
            for row in candidates:  # another instance may take the first: try the next
                taken = await connection.execute(
                    update(ANALYSIS_JOBS)
                    .where(c.id == row["id"], claimable)
                    .values(
                        state="running",
                        claimed_by=self.instance,
                        claimed_at=now,
                        attempts=c.attempts + 1,
                    )
                )
                if taken.rowcount == 1:
                    candidate = row
                    break
            if candidate is None:
                return None
            recording = (
                await connection.execute(
                    select(RECORDINGS.c.path, RECORDINGS.c.redacted_at).where(
                        RECORDINGS.c.id == candidate["recording_id"]
                    )
                )
            ).first()
        job = dict(candidate)
        job["attempts"] += 1
        job["claimed_by"] = self.instance
        job["path"] = recording[0] if recording else None
        job["redacted"] = recording is not None and recording[1] is not None
        return job

    async def _run(self, job: dict[str, Any]) -> None:
        record = job["call_record_id"]
        heartbeat = asyncio.create_task(self._renew(job))
        try:
            if job["path"] is None:
                raise FileNotFoundError("the recording's row is gone")
            if job["redacted"]:
                raise RuntimeError("the recording was already redacted; not analysed twice")
            if not Path(job["path"]).is_file():
                raise FileNotFoundError(f"recording file {Path(job['path']).name} is gone")
            tenant = self.settings.tenant_named(job["tenant"])
            spec = job_spec(tenant, job["path"], attempt=job["attempts"])
            loop = asyncio.get_running_loop()
            assert self._executor is not None
            try:
                result: JobResult = await loop.run_in_executor(self._executor, analyse, spec)
            except BrokenProcessPool:
                # a worker died (killed, out of memory): a new pool, and this try is free
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = ProcessPoolExecutor(self.workers, mp_context=_SPAWN)
                await self._requeue(job)
                log.error("call %s: an analysis worker died; job queued again", record)
                return
            try:
                await self._store(job, result)
            except (IntegrityError, StaleClaim):
                # erased, purged, or taken over after a lost lease: keep nothing of this run
                Path(result.path).unlink(missing_ok=True)
                log.warning(
                    "call %s: analysis results dropped (recording gone or job taken over)", record
                )
                return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure is recorded, none stops the queue
            await self._failed(job, error)
            return
        finally:
            heartbeat.cancel()
        self.done += 1
        log.info(
            "call %s: analysed (%s): %d redacted span(s), %.1f s muted",
            record,
            result.transcriber,
            sum(len(t.spans) for t in result.transcripts),
            result.muted_s,
        )
        with contextlib.suppress(FileNotFoundError):
            Path(job["path"]).unlink()

    async def _seal_original(self, job: dict[str, Any]) -> None:
        """Analysis gave up: the unredacted original is at least sealed, if the tenant has
        keys (the API still refuses it: it was never redacted)."""
        path = job.get("path")
        try:
            keys, current = tenant_keys(self.settings.tenant_named(job["tenant"]))
        except KeyError:
            return
        if not keys or not path or not Path(path).is_file() or path.endswith(SEALED_SUFFIX):
            return
        try:
            keyring = Keyring.from_base64(keys, current)
            sealed = await asyncio.to_thread(seal_in_place, path, keyring)
        except (OSError, SealedError) as error:
            log.error("call %s: could not seal the recording: %s", job["call_record_id"], error)
            return
        async with self.engine.begin() as connection:
            await connection.execute(
                update(RECORDINGS)
                .where(RECORDINGS.c.id == job["recording_id"])
                .values(path=str(sealed), key_id=keyring.current)
            )

    async def _renew(self, job: dict[str, Any]) -> None:
        """Keep the lease while the job runs, so no other claim takes it over."""
        every = self.settings.analysis.lease_s / 3
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                async with self.engine.begin() as connection:
                    await connection.execute(
                        update(ANALYSIS_JOBS).where(_mine(job)).values(claimed_at=datetime.now(UTC))
                    )

    async def _requeue(self, job: dict[str, Any]) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(ANALYSIS_JOBS)
                .where(_mine(job))
                .values(state="queued", claimed_by=None, attempts=ANALYSIS_JOBS.c.attempts - 1)
            )

    async def _store(self, job: dict[str, Any], result: JobResult) -> None:
        now = datetime.now(UTC)
        record, recording, tenant = job["call_record_id"], job["recording_id"], job["tenant"]
        async with self.engine.begin() as connection:
            finished = await connection.execute(
                update(ANALYSIS_JOBS)
                .where(_mine(job))
                .values(state="done", finished_at=now, last_error=None)
            )
            if finished.rowcount != 1:
                raise StaleClaim(job["id"])
            # the whole recording's transcript replaces the pieces made while the call ran
            await connection.execute(
                delete(TRANSCRIPTS).where(
                    TRANSCRIPTS.c.call_record_id == record, TRANSCRIPTS.c.live.is_(True)
                )
            )
            await connection.execute(
                delete(REDACTIONS).where(
                    REDACTIONS.c.call_record_id == record, REDACTIONS.c.recording_id.is_(None)
                )
            )
            for transcript in result.transcripts:
                await connection.execute(
                    insert(TRANSCRIPTS).values(
                        id=new_record_id(),
                        call_record_id=record,
                        recording_id=recording,
                        tenant=tenant,
                        party=transcript.party,
                        language=self.settings.tenant_named(tenant).analysis.language,
                        backend=result.transcriber,
                        text=transcript.text,
                        words=transcript.words,
                        created_at=now,
                        live=False,
                    )
                )
                spans = [
                    {
                        "call_record_id": record,
                        "recording_id": recording,
                        "tenant": tenant,
                        "party": transcript.party,
                        **span,
                    }
                    for span in transcript.spans
                ]
                if spans:
                    await connection.execute(insert(REDACTIONS), spans)
            await connection.execute(
                insert(ANALYSES).values(
                    recording_id=recording,
                    call_record_id=record,
                    tenant=tenant,
                    cues=result.cues,
                    muted_s=result.muted_s,
                    spans=sum(len(t.spans) for t in result.transcripts),
                    transcriber=result.transcriber,
                    created_at=now,
                )
            )
            await connection.execute(
                update(RECORDINGS)
                .where(RECORDINGS.c.id == recording)
                .values(
                    path=result.path,
                    key_id=result.key_id,
                    redacted_at=now,
                    bytes=result.bytes,
                    sha256=result.sha256,
                )
            )

    async def _failed(self, job: dict[str, Any], error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:ERROR_LIMIT]
        now = datetime.now(UTC)
        analysis = self.settings.analysis
        final = job["attempts"] >= analysis.max_attempts
        values: dict[str, Any] = {"last_error": reason, "claimed_by": None}
        if final:
            values.update(state="failed", finished_at=now)
            self.failed += 1
            await self._seal_original(job)
        else:
            delay = analysis.retry_s * 2 ** (job["attempts"] - 1)
            values.update(state="queued", not_before=now + timedelta(seconds=delay))
        async with self.engine.begin() as connection:
            await connection.execute(update(ANALYSIS_JOBS).where(_mine(job)).values(**values))
        log.log(
            logging.ERROR if final else logging.WARNING,
            "call %s: analysis attempt %d %s: %s",
            job["call_record_id"],
            job["attempts"],
            "failed for good" if final else "failed, will retry",
            reason,
        )
