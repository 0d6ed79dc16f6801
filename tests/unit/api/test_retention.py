"""Retention: recordings, records and audit entries past the tenant's days are removed,
and logged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api import server
from gateway.api.server import purge_due
from gateway.store import audit
from gateway.store.audit import audit_entries, audit_row, open_read_log
from gateway.store.models import AUDIT_LOG
from tests.unit.api.conftest import Api, add_transcript, api_settings
from tests.unit.store.records import T0, consent_event, end, new_id, recording, start


def _removed(**counts: int) -> dict[str, int]:
    """What a retention pass returns: these counts, 0 for the rest."""
    return {"calls": 0, "recordings": 0, "files": 0, "transcripts": 0, "audit_entries": 0} | counts


async def test_due_recordings_then_records_go(api: Api, tmp_path: Path) -> None:
    old, recent, theirs = new_id(), new_id(), new_id()
    files = {}
    for call in (old, recent, theirs):
        files[call] = tmp_path / f"{call}.wav"
        files[call].write_bytes(b"RIFF")
    at_recent = T0 + timedelta(days=20)
    await api.write(
        start(old),
        consent_event(old, 1),
        recording(old, path=str(files[old])),
        end(old),
        start(recent, at=at_recent),
        recording(
            recent,
            path=str(files[recent]),
            started_at=at_recent + timedelta(seconds=5),
            ended_at=at_recent + timedelta(seconds=50),
        ),
        end(recent, after_s=20 * 86400 + 60),
        start(theirs, tenant="globex"),
        recording(theirs, tenant="globex", path=str(files[theirs])),
        end(theirs),
    )
    settings = api_settings(tmp_path)
    settings.tenants[0].retention.recordings_days = 10
    settings.tenants[0].retention.records_days = 30
    api.context.settings = settings
    now = T0 + timedelta(days=25)

    removed = await purge_due(api.context, now)
    assert removed == _removed(recordings=1, files=1)
    assert not files[old].exists() and files[recent].exists() and files[theirs].exists()
    _, body = await api.json("GET", f"/v1/calls/{old}")
    assert body["recordings"] == [] and len(body["consent_events"]) == 1

    removed = await purge_due(api.context, T0 + timedelta(days=40))
    assert removed == _removed(calls=1, recordings=1, files=1)
    status, _ = await api.json("GET", f"/v1/calls/{old}")
    assert status == 404
    status, _ = await api.json("GET", f"/v1/calls/{recent}")
    assert status == 200  # 20 days old: kept
    status, _ = await api.json("GET", f"/v1/calls/{theirs}", who="globex-admin")
    assert status == 200 and files[theirs].exists()  # globex keeps everything
    purges = [
        e for e in await audit_entries(api.engine, "acme") if e["action"] == "retention.purge"
    ]
    assert [p["detail"] for p in purges] == [
        {"calls": 0, "recordings": 1},
        {"calls": 1, "recordings": 1},
    ]
    assert purges[0]["key_id"] is None


async def test_transcripts_outlive_their_recording_and_go_on_their_own_days(
    api: Api, tmp_path: Path
) -> None:
    call = new_id()
    audio = tmp_path / f"{call}.wav"
    audio.write_bytes(b"RIFF")
    await api.write(start(call), recording(call, path=str(audio)), end(call))
    await add_transcript(api.engine, call, T0 + timedelta(minutes=5))
    settings = api_settings(tmp_path)
    settings.tenants[0].retention.recordings_days = 10
    settings.tenants[0].retention.transcripts_days = 30
    api.context.settings = settings

    removed = await purge_due(api.context, T0 + timedelta(days=20))
    assert removed == _removed(recordings=1, files=1)
    assert not audio.exists()
    _, kept = await api.json("GET", f"/v1/calls/{call}/transcript")
    assert [t["party"] for t in kept["transcripts"]] == ["callee", "caller"]
    assert all(t["recording_id"] is None for t in kept["transcripts"])  # the audio is gone
    assert [r["entity"] for r in kept["redactions"]] == ["CARD"]

    removed = await purge_due(api.context, T0 + timedelta(days=31))
    assert removed == _removed(transcripts=2)
    _, gone = await api.json("GET", f"/v1/calls/{call}/transcript")
    assert gone["transcripts"] == [] and gone["redactions"] == []
    status, _ = await api.json("GET", f"/v1/calls/{call}")
    assert status == 200  # the record has days of its own


async def test_entries_of_reads_past_their_days_go_and_changes_stay(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "PURGE_BATCH", 2)  # several batches
    read_log = await open_read_log(api.engine)
    old, recent = T0, T0 + timedelta(days=20)
    try:
        await _add_entries(
            api.engine, ("acme", "subject.erase", old), ("globex", "policy.update", old)
        )
        await _add_entries(
            read_log,
            *(("acme", "call.read", old + timedelta(seconds=n)) for n in range(3)),
            ("acme", "calls.list", recent),
            ("globex", "calls.list", old),
        )
        await _add_entries(api.engine, ("acme", "policy.update", recent + timedelta(seconds=1)))
    finally:
        if read_log is not api.engine:
            await read_log.dispose()
    _keep_audit_days(api, tmp_path, 10)

    removed = await purge_due(api.context, T0 + timedelta(days=25))
    assert removed == _removed(audit_entries=3)
    kept = await audit_entries(api.engine, "acme")
    assert [(e["action"], e["detail"]) for e in kept] == [
        ("subject.erase", None),  # the record of an erasure outlives the days of reads
        ("calls.list", None),
        ("policy.update", None),
        ("retention.purge", {"audit_entries": 3}),  # the purge itself, stamped now
    ]
    assert [e["action"] for e in await audit_entries(api.engine, "globex")] == [
        "policy.update",
        "calls.list",
    ]  # globex keeps every entry
    assert await purge_due(api.context, T0 + timedelta(days=25)) == _removed()


async def test_a_failed_purge_of_reads_is_logged_and_what_went_is_recorded(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def fails_after_one_batch(*_: object) -> AsyncIterator[int]:
        yield 5
        raise OperationalError("DELETE", {}, Exception("database is locked"))

    monkeypatch.setattr(server, "purge_reads", fails_after_one_batch)
    _keep_audit_days(api, tmp_path, 10)

    assert await purge_due(api.context, T0) == _removed(audit_entries=5)
    assert "purging the audit log's reads failed" in caplog.text
    entries = await audit_entries(api.engine, "acme")
    assert [(e["action"], e["detail"]) for e in entries] == [
        ("retention.purge", {"audit_entries": 5})
    ]


def _keep_audit_days(api: Api, tmp_path: Path, days: int) -> None:
    settings = api_settings(tmp_path)
    settings.tenants[0].retention.audit_days = days
    api.context.settings = settings


async def _add_entries(engine: AsyncEngine, *entries: tuple[str, str, datetime]) -> None:
    rows = []
    for tenant, action, at in entries:
        row = audit_row(tenant=tenant, key_id=None, action=action, target=None, detail=None)
        rows.append({**row, "at": at})
    async with engine.begin() as connection:
        await connection.execute(insert(AUDIT_LOG), rows)
