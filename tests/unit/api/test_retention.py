"""Retention: recordings and records past the tenant's days are removed, and logged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.api.server import purge_due
from gateway.store.audit import audit_entries
from tests.unit.api.conftest import Api, add_transcript, api_settings
from tests.unit.store.records import T0, consent_event, end, new_id, recording, start


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
    assert removed == {"calls": 0, "recordings": 1, "files": 1, "transcripts": 0}
    assert not files[old].exists() and files[recent].exists() and files[theirs].exists()
    _, body = await api.json("GET", f"/v1/calls/{old}")
    assert body["recordings"] == [] and len(body["consent_events"]) == 1

    removed = await purge_due(api.context, T0 + timedelta(days=40))
    assert removed == {"calls": 1, "recordings": 1, "files": 1, "transcripts": 0}
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
    assert removed == {"calls": 0, "recordings": 1, "files": 1, "transcripts": 0}
    assert not audio.exists()
    _, kept = await api.json("GET", f"/v1/calls/{call}/transcript")
    assert [t["party"] for t in kept["transcripts"]] == ["callee", "caller"]
    assert all(t["recording_id"] is None for t in kept["transcripts"])  # the audio is gone
    assert [r["entity"] for r in kept["redactions"]] == ["CARD"]

    removed = await purge_due(api.context, T0 + timedelta(days=31))
    assert removed == {"calls": 0, "recordings": 0, "files": 0, "transcripts": 2}
    _, gone = await api.json("GET", f"/v1/calls/{call}/transcript")
    assert gone["transcripts"] == [] and gone["redactions"] == []
    status, _ = await api.json("GET", f"/v1/calls/{call}")
    assert status == 200  # the record has days of its own
