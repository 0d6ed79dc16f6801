"""An API server on loopback (real HTTP) over a migrated store, SQLite and PostgreSQL.

Two tenants, ``acme`` (US) and ``globex`` (DE), each with keys; call records
are written through the gateway's own :class:`RecordWriter`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.context import ApiContext
from gateway.api.server import make_app
from gateway.config import PeerSettings, Settings, TenantSettings
from gateway.store.keys import create_key
from gateway.store.models import RECORDINGS, REDACTIONS, TRANSCRIPTS, new_record_id
from gateway.store.prepared import PreparedReads
from gateway.store.writer import RecordWriter

HASH_KEY = "test-subject-hash-key-0123456789"


async def add_transcript(
    engine: AsyncEngine, call: str, created_at: datetime, *, live: bool = False
) -> None:
    """A redacted transcript of each party of ``call`` and one CARD span, as the analysis
    stores them: of the call's recording, or, ``live``, a piece made while it ran."""
    async with engine.begin() as connection:
        recording_id = None
        if not live:
            found = select(RECORDINGS.c.id).where(RECORDINGS.c.call_record_id == call)
            recording_id = (await connection.execute(found)).scalar_one()
        for party in ("caller", "callee"):
            await connection.execute(
                insert(TRANSCRIPTS).values(
                    id=new_record_id(),
                    call_record_id=call,
                    recording_id=recording_id,
                    tenant="acme",
                    party=party,
                    language="en",
                    backend="none",
                    text="my card is [CARD]",
                    words=[],
                    created_at=created_at,
                    live=live,
                )
            )
        await connection.execute(
            insert(REDACTIONS).values(
                call_record_id=call,
                recording_id=recording_id,
                tenant="acme",
                party="caller",
                entity="CARD",
                word_start=3,
                word_end=19,
                start_s=4.0,
                end_s=9.5,
                score=1.0,
            )
        )


def api_settings(recording_dir: Path, **api: Any) -> Settings:
    tenants = [
        TenantSettings(
            name="acme",
            default_region="US",
            pbx=PeerSettings(host="127.0.0.2"),
            trunk=PeerSettings(host="127.0.0.3"),
        ),
        TenantSettings(
            name="globex",
            default_region="DE",
            pbx=PeerSettings(host="127.0.0.4"),
            trunk=PeerSettings(host="127.0.0.5"),
        ),
    ]
    return Settings.model_validate(
        {
            "tenants": [tenant.model_dump() for tenant in tenants],
            "recording": {"dir": str(recording_dir)},
            "api": {"key_cache_s": 0, **api},
        }
    )


@dataclass
class Api:
    """A running API and keys to call it with."""

    server: TestServer
    engine: AsyncEngine
    context: ApiContext
    session: aiohttp.ClientSession
    keys: dict[str, str] = field(default_factory=dict)
    """"acme", "acme-admin", "globex-admin" -> key."""

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def get(self, path: str, who: str = "acme", **kwargs: Any) -> aiohttp.ClientResponse:
        headers = {**self.auth(who), **kwargs.pop("headers", {})}
        return await self.session.get(self.url(path), headers=headers, **kwargs)

    async def json(self, method: str, path: str, who: str = "acme", **kwargs: Any) -> Any:
        headers = {**self.auth(who), **kwargs.pop("headers", {})}
        async with self.session.request(method, self.url(path), headers=headers, **kwargs) as r:
            return r.status, await r.json(content_type=None)

    async def write(self, *ops: object) -> None:
        writer = RecordWriter(self.engine)
        for op in ops:
            writer.submit(op)  # type: ignore[arg-type]
        await writer.stop()


@pytest.fixture
async def api(db_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Api]:
    settings = api_settings(tmp_path / "recordings")
    context = ApiContext(
        settings=settings,
        engine=db_engine,
        subject_hash_key=HASH_KEY,
        prepared=PreparedReads(db_engine),
    )
    server = TestServer(make_app(context), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        found = Api(server, db_engine, context, session)
        found.keys["acme"], _ = await create_key(db_engine, "acme", "reader")
        found.keys["acme-admin"], _ = await create_key(db_engine, "acme", "admin")
        found.keys["globex-admin"], _ = await create_key(db_engine, "globex", "admin")
        try:
            yield found
        finally:
            await server.close()
            await context.prepared.close()
