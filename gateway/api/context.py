"""What the API's handlers share: settings, the store, and the live gateway when there is one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.calls.consent_service import ConsentService
from gateway.config import Settings
from gateway.store.audit import AuditBuffer
from gateway.store.capture_bus import CaptureBus
from gateway.store.prepared import PreparedReads


class LiveGateway(Protocol):
    """The parts of a running gateway the API reads (readiness, metrics) and drives."""

    consent: ConsentService

    def ready(self) -> tuple[bool, str]:
        """Whether SIP is listening and calls are accepted, and if not, why."""
        ...

    def metrics(self) -> dict[str, float | dict[tuple[tuple[str, str], ...], float]]:
        """Gauges and counters, by Prometheus name."""
        ...


@dataclass(slots=True)
class ApiContext:
    settings: Settings
    engine: AsyncEngine
    live: LiveGateway | None = None
    subject_hash_key: str = ""
    reads: AuditBuffer | None = None
    """Audit entries of reads, written in batches (set while the server runs)."""
    prepared: PreparedReads | None = None
    """Hot reads on the database driver (set while the server runs)."""
    bus: CaptureBus | None = None
    """Capture commands to other instances (PostgreSQL stores only)."""
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    """Requests served by (route name, status), for /metrics."""


CONTEXT: web.AppKey[ApiContext] = web.AppKey("callgate_api", ApiContext)


def context_of(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
