"""The API application and its server: in the gateway process, or alone (``callgate api``).

Background work that belongs to the API runs here too: retention (each
tenant's due recordings, transcripts, records and audit entries of reads removed
every ``api.retention_interval_s``)
and, in a gateway, taking up policies another instance stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.api import (
    routes_analysis,
    routes_calls,
    routes_health,
    routes_policy,
    routes_stats,
    routes_subjects,
)
from gateway.api.auth import KEY_CACHE, KeyCache, auth_middleware
from gateway.api.context import CONTEXT, ApiContext, LiveGateway
from gateway.api.openapi import add_routes as add_openapi
from gateway.api.problems import Handler, problem_middleware
from gateway.api.routes_subjects import remove_files
from gateway.config import RetentionSettings, Settings
from gateway.store.audit import AuditBuffer, open_read_log, purge_reads, write_audit
from gateway.store.capture_bus import CaptureBus
from gateway.store.engine import refresh_statistics
from gateway.store.prepared import PreparedReads
from gateway.store.secrets_store import SUBJECT_HASH_KEY, shared_secret
from gateway.store.stats import settle
from gateway.store.tenant_view import TenantView

log = logging.getLogger(__name__)


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count answers by route and status for ``/metrics``."""
    response = await handler(request)
    route = request.match_info.route.name or "unmatched"
    counts = request.app[CONTEXT].requests
    key = (route, response.status)
    counts[key] = counts.get(key, 0) + 1
    return response


def make_app(context: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[count_middleware, problem_middleware, auth_middleware],
        client_max_size=context.settings.api.max_body_bytes,
    )
    app[CONTEXT] = context
    app[KEY_CACHE] = KeyCache(context.settings.api.key_cache_s)
    for module in (
        routes_calls,
        routes_analysis,
        routes_stats,
        routes_policy,
        routes_subjects,
        routes_health,
    ):
        module.add_routes(app)
    add_openapi(app)
    return app


async def purge_due(context: ApiContext, now: datetime | None = None) -> dict[str, int]:
    """One retention pass over every tenant: what it removed (calls, recordings, their
    files, transcripts, entries of reads in the audit log)."""
    now = now or datetime.now(UTC)
    totals = {"calls": 0, "recordings": 0, "files": 0, "transcripts": 0, "audit_entries": 0}
    for tenant in context.settings.tenants:
        keep = tenant.retention
        if keep.recordings_days or keep.records_days or keep.transcripts_days:
            await _purge_data(context, tenant.name, now, keep, totals)
        if keep.audit_days:
            totals["audit_entries"] += await _purge_reads(
                context, tenant.name, now - timedelta(days=keep.audit_days)
            )
    return totals


async def _purge_data(
    context: ApiContext,
    tenant: str,
    now: datetime,
    keep: RetentionSettings,
    totals: dict[str, int],
) -> None:
    def before(days: int) -> datetime | None:
        return now - timedelta(days=days) if days else None

    # the hours about to lose records are aggregated first, so the stats keep them
    await settle(context.engine, tenant, now, fresh=True)
    view = TenantView(context.engine, tenant)
    removed = await view.purge(
        recordings_before=before(keep.recordings_days),
        records_before=before(keep.records_days),
        transcripts_before=before(keep.transcripts_days),
    )
    files = await asyncio.to_thread(remove_files, removed.files)
    if removed.calls or removed.recordings or removed.transcripts:
        log.info(
            "retention: tenant %s: removed %d call records, %d recordings (%d files), "
            "%d transcripts",
            tenant,
            removed.calls,
            removed.recordings,
            files,
            removed.transcripts,
        )
    totals["calls"] += removed.calls
    totals["recordings"] += removed.recordings
    totals["files"] += files
    totals["transcripts"] += removed.transcripts


async def _purge_reads(context: ApiContext, tenant: str, before: datetime) -> int:
    """The tenant's entries of reads stamped before ``before`` removed, and the purge
    recorded, with what was removed before any failure (which is logged: the next pass
    goes on where this one stopped)."""
    removed = 0
    try:
        async for batch in purge_reads(context.engine, tenant, before):
            removed += batch
    except Exception:
        log.exception("retention: tenant %s: purging the audit log's reads failed", tenant)
    finally:
        if removed:
            async with context.engine.begin() as connection:
                await write_audit(
                    connection,
                    tenant=tenant,
                    key_id=None,
                    action="retention.purge",
                    detail={"audit_entries": removed},
                )
            log.info("retention: tenant %s: removed %d audit entries of reads", tenant, removed)
    return removed


class ApiServer:
    """The API on ``api.host``:``api.port``, with retention and policy polling.

    ``reuse_port``: listen with ``SO_REUSEPORT``, beside the other workers of a
    ``callgate api --workers N`` (:mod:`gateway.api.workers`); ``retention``: run the
    retention task (one worker of several does).
    """

    def __init__(
        self,
        settings: Settings,
        engine: object,
        live: LiveGateway | None = None,
        *,
        reuse_port: bool = False,
        retention: bool = True,
    ):
        self.settings = settings
        self.reuse_port = reuse_port
        self.retention = retention
        self.context = ApiContext(settings=settings, engine=engine, live=live)  # type: ignore[arg-type]
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        api = self.settings.api
        self.context.subject_hash_key = api.subject_hash_key or await shared_secret(
            self.context.engine, SUBJECT_HASH_KEY
        )
        if self.context.engine.dialect.name == "postgresql":
            live = self.context.live
            bus = CaptureBus(self.context.engine.url, self.settings.instance_id)
            await bus.start(live.consent.capture_command if live is not None else None)
            self.context.bus = bus
        self.context.reads = AuditBuffer(await open_read_log(self.context.engine))
        self.context.prepared = PreparedReads(
            self.context.engine, timeout_s=self.context.settings.api.read_timeout_s
        )
        self.runner = web.AppRunner(make_app(self.context), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, api.host, api.port, reuse_address=True, reuse_port=self.reuse_port or None
        )
        await site.start()
        server = site._server  # the bound socket tells the port when 0 was asked
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else api.port
        log.info("API listening on http://%s:%d", api.host, self.port)
        if self.retention:
            self._tasks.append(asyncio.create_task(self._retention(), name="callgate-retention"))
        if self.context.live is not None:
            self._tasks.append(asyncio.create_task(self._policies(), name="callgate-policies"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.context.bus is not None:
            await self.context.bus.close()
            self.context.bus = None
        if self.context.reads is not None:
            await self.context.reads.close()
            if self.context.reads.engine is not self.context.engine:
                await self.context.reads.engine.dispose()
            self.context.reads = None
        if self.context.prepared is not None:
            await self.context.prepared.close()
            self.context.prepared = None

    async def _retention(self) -> None:
        while True:
            try:
                await purge_due(self.context)
                await refresh_statistics(self.context.engine)
            except Exception:
                log.exception("retention pass failed; trying again next interval")
            await asyncio.sleep(self.settings.api.retention_interval_s)

    async def _policies(self) -> None:
        live = self.context.live
        assert live is not None
        while True:
            await asyncio.sleep(self.settings.api.policy_poll_s)
            try:
                await live.consent.refresh(self.context.engine)
            except Exception:
                log.exception("reading stored policies failed; trying again")
