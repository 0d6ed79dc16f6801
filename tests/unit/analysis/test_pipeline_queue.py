"""The analysis queue on SQLite and PostgreSQL: queued with the recording, claimed once,
retried with back-off, failed with the reason, handed back on a clean stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.analysis.pipeline import AnalysisPipeline, job_spec, tenant_keys
from gateway.config import PeerSettings, Settings, TenantSettings
from gateway.store.models import ANALYSIS_JOBS
from gateway.store.writer import RecordWriter
from tests.unit.store.records import end, new_id, recording, start


def _settings(**analysis: object) -> Settings:
    tenant = TenantSettings(
        name="acme", pbx=PeerSettings(host="127.0.0.2"), trunk=PeerSettings(host="127.0.0.3")
    )
    return Settings.model_validate(
        {
            "instance_id": "gw-a",
            "tenants": [tenant.model_dump()],
            "analysis": {"workers": 1, "retry_s": 0.05, "max_attempts": 2, **analysis},
        }
    )


async def _recorded_call(engine: AsyncEngine, path: Path, analyse: bool = True) -> str:
    call = new_id()
    writer = RecordWriter(engine)
    writer.submit(start(call))
    writer.submit(recording(call, path=str(path), analyse=analyse))
    writer.submit(end(call, answered_after_s=5))
    await writer.stop()
    return call


async def _jobs(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(select(ANALYSIS_JOBS))).mappings()]


async def test_a_job_is_queued_with_its_recording_only_when_asked(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    asked = await _recorded_call(db_engine, tmp_path / "a.wav")
    await _recorded_call(db_engine, tmp_path / "b.wav", analyse=False)
    jobs = await _jobs(db_engine)
    assert [(j["call_record_id"], j["state"], j["attempts"]) for j in jobs] == [
        (asked, "queued", 0)
    ]


async def test_a_failing_job_is_retried_then_failed_with_the_reason(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    await _recorded_call(db_engine, tmp_path / "missing.wav")
    pipeline = AnalysisPipeline(_settings(poll_s=0.05), db_engine)
    await pipeline.start()
    try:
        for _ in range(100):
            jobs = await _jobs(db_engine)
            if jobs[0]["state"] == "failed":
                break
            await asyncio.sleep(0.05)
    finally:
        await pipeline.stop()
    job = jobs[0]
    assert job["state"] == "failed" and job["attempts"] == 2
    assert "missing.wav" in str(job["last_error"]) and "gone" in str(job["last_error"])
    assert pipeline.failed == 1


async def test_two_instances_never_claim_the_same_job(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    for index in range(6):
        await _recorded_call(db_engine, tmp_path / f"{index}.wav")
    first = AnalysisPipeline(_settings(), db_engine)
    second = AnalysisPipeline(_settings(), db_engine)
    second.instance = "gw-b"
    claims = await asyncio.gather(*(p._claim() for p in (first, second) * 4))
    taken = [job["id"] for job in claims if job is not None]
    assert len(taken) == len(set(taken)) == 6
    assert await first._claim() is None


async def test_a_clean_stop_hands_running_jobs_back_and_a_lost_lease_is_taken_over(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    await _recorded_call(db_engine, tmp_path / "x.wav")
    first = AnalysisPipeline(_settings(), db_engine)
    job = await first._claim()
    assert job is not None and job["attempts"] == 1
    await first._release(every_instance=False)
    (row,) = await _jobs(db_engine)
    assert row["state"] == "queued" and row["attempts"] == 0  # an interrupted try is free

    job = await first._claim()
    assert job is not None
    second = AnalysisPipeline(_settings(lease_s=60), db_engine)
    second.instance = "gw-b"
    assert await second._claim() is None  # the lease holds
    async with db_engine.begin() as connection:
        await connection.execute(
            update(ANALYSIS_JOBS).values(claimed_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    taken = await second._claim()
    assert taken is not None and taken["id"] == job["id"] and taken["attempts"] == 2


def test_job_spec_carries_the_tenants_choices_and_keys() -> None:
    tenant = TenantSettings.model_validate(
        {
            "name": "acme",
            "pbx": {"host": "127.0.0.2"},
            "trunk": {"host": "127.0.0.3"},
            "analysis": {
                "transcriber": "http",
                "http_url": "http://127.0.0.1:9/speech",
                "replacement": "last4",
                "margin_ms": 100,
                "entities": ["CARD", "SSN"],
            },
            "sealing": {"keys": {"a": "A" * 43 + "="}, "keys_env": "CALLGATE_TEST_KEYS"},
        }
    )
    import os

    os.environ["CALLGATE_TEST_KEYS"] = "b:" + "B" * 43 + "="
    try:
        keys, current = tenant_keys(tenant)
        spec = job_spec(tenant, "/x.wav")
    finally:
        del os.environ["CALLGATE_TEST_KEYS"]
    assert set(keys) == {"a", "b"} and current == "b"
    assert spec.transcriber_options["url"] == "http://127.0.0.1:9/speech"
    assert spec.entities == ("CARD", "SSN") and spec.replacement == "last4"
    assert spec.margin_s == 0.1 and spec.current_key == "b"


def test_the_settings_name_every_entity_the_redactor_knows() -> None:
    from dsp.redact.registry import Registry
    from gateway.config import REDACTABLE_ENTITIES

    assert set(Registry().entities) == set(REDACTABLE_ENTITIES)


async def test_a_run_whose_lease_was_taken_over_stores_nothing(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    import pytest

    from gateway.analysis.job import JobResult
    from gateway.analysis.pipeline import StaleClaim

    await _recorded_call(db_engine, tmp_path / "x.wav")
    first = AnalysisPipeline(_settings(lease_s=60), db_engine)
    late = await first._claim()
    assert late is not None
    async with db_engine.begin() as connection:
        await connection.execute(
            update(ANALYSIS_JOBS).values(claimed_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    second = AnalysisPipeline(_settings(lease_s=60), db_engine)
    second.instance = "gw-b"
    current = await second._claim()
    assert current is not None
    result = JobResult([], {}, 0.0, "none", str(tmp_path / "out"), None, 0, "0" * 64)
    with pytest.raises(StaleClaim):
        await first._store(late, result)
    await first._failed(late, RuntimeError("late failure"))  # must not touch the new claim
    (row,) = await _jobs(db_engine)
    assert (row["state"], row["claimed_by"], row["attempts"]) == ("running", "gw-b", 2)
    await second._store(current, result)
    (row,) = await _jobs(db_engine)
    assert row["state"] == "done"


async def test_a_recording_whose_analysis_gave_up_is_sealed_all_the_same(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    import base64
    import os

    from gateway.analysis.sealed import Keyring, open_sealed
    from gateway.store.models import RECORDINGS

    key = base64.b64encode(os.urandom(32)).decode()
    settings = _settings(max_attempts=1)
    settings.tenants[0].sealing.keys = {"k9": key}
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF" + bytes(200))
    await _recorded_call(db_engine, wav)
    pipeline = AnalysisPipeline(settings, db_engine)
    job = await pipeline._claim()
    assert job is not None
    await pipeline._failed(job, RuntimeError("the recogniser crashed"))
    (row,) = await _jobs(db_engine)
    assert row["state"] == "failed"
    async with db_engine.connect() as connection:
        path, key_id = (
            await connection.execute(select(RECORDINGS.c.path, RECORDINGS.c.key_id))
        ).one()
    assert not wav.exists() and path.endswith(".sealed") and key_id == "k9"
    with open_sealed(path, Keyring.from_base64({"k9": key})) as reader:
        assert reader.read_all() == b"RIFF" + bytes(200)
