"""The API of a running gateway (``callgate run``) over real HTTP, with calls sipp made.

Two tenants share the gateway: ``acme`` (PBX 127.0.0.2, trunk 127.0.0.3)
records its calls after a short notice (staying on is consent), ``globex``
(PBX 127.0.0.4, trunk 127.0.0.5) never records. Keys are made with the
``callgate keys`` command. Once on SQLite and once on PostgreSQL.

Last, schemathesis generates requests from the served ``/openapi.json``
(with acme's admin key, so the links from the listing reach real calls) and
checks every answer against the document: status codes, content types,
schemas, no 5xx, and that malformed input is refused. Its
``positive_data_acceptance`` check is left out: a schema cannot say which
strings are telephone numbers or which policies the rules allow, so
schema-valid requests that the API refuses with a 4xx and a reason are
expected there.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from dsp.wav import read_wav
from gateway.store.audit import audit_entries
from gateway.store.engine import make_engine
from gateway.store.models import AUDIT_LOG
from tests.support.api import SHORT_NOTICE_CONSENT, get, make_key, wait_for, write_notice
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    TenantPeers,
    callgate_command,
    free_port,
    gateway_on_backend,
)
from tests.support.peers import SippFactory

GLOBEX_PBX = "127.0.0.4"
GLOBEX_TRUNK = "127.0.0.5"
RATE = 8000

SEALING_KEY = base64.b64encode(os.urandom(32)).decode()

ACME_CONSENT = (
    SHORT_NOTICE_CONSENT
    + f"""
[tenants.analysis]
enabled = false   # recordings served as captured (test_analysis.py covers redaction)

[tenants.sealing]
keys = {{ "k1" = "{SEALING_KEY}" }}
"""
)


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    write_notice(tmp)
    globex = TenantPeers(
        name="globex",
        pbx=(GLOBEX_PBX, free_port(GLOBEX_PBX)),
        trunk=(GLOBEX_TRUNK, free_port(GLOBEX_TRUNK)),
        default_region="DE",
    )
    with gateway_on_backend(
        request.param, tmp, consent=ACME_CONSENT, extra_tenants=[globex]
    ) as process:
        process.extra["globex"] = globex
        yield process


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> dict[str, str]:
    return {
        "acme": make_key(gateway, "acme", "reader"),
        "acme-admin": make_key(gateway, "acme", "admin"),
        "globex-admin": make_key(gateway, "globex", "admin"),
    }


@pytest.fixture(scope="module")
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{GATEWAY_HOST}:{gateway.api_port}", timeout=10) as c:
        yield c


def acme_call(sipp_factory: SippFactory, gateway: GatewayProcess, number: str, ms: int) -> Any:
    callee = sipp_factory("uas_answer_wait_bye", local_ip=PBX_HOST, local_port=gateway.pbx_port)
    caller = sipp_factory(
        "uac_call_bye",
        local_ip=TRUNK_HOST,
        remote=gateway.address,
        caller=number,
        duration_ms=ms,
    )
    return caller, callee


def closed(http: httpx.Client, key: str, number: str) -> dict[str, Any]:
    """The closed call from ``number``, with its recording once it is listed."""

    def find() -> dict[str, Any] | None:
        page = get(http, key, "/v1/calls", params={"number": number}).json()
        if not page["calls"] or page["calls"][0]["ended_at"] is None:
            return None
        call = get(http, key, f"/v1/calls/{page['calls'][0]['id']}").json()
        if call["consent_outcome"] == "granted" and not call["recordings"]:
            return None
        return call

    return wait_for(find, what=f"the closed call from {number}")


def granted_live(http: httpx.Client, key: str, number: str) -> str | None:
    """The id of the live call from ``number`` once every party has consented."""
    page = get(http, key, "/v1/calls", params={"number": number}).json()
    if not page["calls"]:
        return None
    call = get(http, key, f"/v1/calls/{page['calls'][0]['id']}").json()
    if call["ended_at"] is not None or call["consent_outcome"] is not None:
        return None
    required = {e["party"] for e in call["consent_events"] if e["state"] == "pending"}
    granted = {e["party"] for e in call["consent_events"] if e["state"] == "granted"}
    return call["id"] if required and required <= granted else None


@pytest.mark.sipp
def test_calls_of_two_tenants_stay_apart(
    sipp_factory: SippFactory, gateway: GatewayProcess, keys: dict[str, str], http: httpx.Client
) -> None:
    globex: TenantPeers = gateway.extra["globex"]
    callee = sipp_factory("uas_answer_wait_bye", local_ip=GLOBEX_PBX, local_port=globex.pbx[1])
    caller = sipp_factory(
        "uac_call_bye",
        local_ip=GLOBEX_TRUNK,
        remote=gateway.address,
        caller="+4930555000111",
        service="+4930555000222",
        duration_ms=500,
    )
    caller.assert_success(calls=1, timeout=20)
    callee.assert_success(calls=1)
    theirs = closed(http, keys["globex-admin"], "+4930555000111")
    assert theirs["tenant"] == "globex" and theirs["disposition"] == "answered"

    acme_page = get(http, keys["acme"], "/v1/calls").json()
    assert theirs["id"] not in {row["id"] for row in acme_page["calls"]}
    assert get(http, keys["acme"], f"/v1/calls/{theirs['id']}").status_code == 404
    national = get(http, keys["globex-admin"], "/v1/calls", params={"number": "030 555000111"})
    assert [row["id"] for row in national.json()["calls"]] == [theirs["id"]]  # DE region


@pytest.mark.sipp
def test_a_recorded_call_its_trail_recording_and_live_pause(
    sipp_factory: SippFactory, gateway: GatewayProcess, keys: dict[str, str], http: httpx.Client
) -> None:
    number = "+14045550177"
    caller, callee = acme_call(sipp_factory, gateway, number, ms=3000)
    admin = keys["acme-admin"]

    record_id = wait_for(lambda: granted_live(http, admin, number), what="consent, live")
    time.sleep(0.5)  # half a second of consented audio before the pause
    reader = http.post(
        f"/v1/calls/{record_id}/capture",
        json={"action": "resume"},
        headers={"Authorization": f"Bearer {keys['acme']}"},
    )
    assert reader.status_code == 403  # a reader may not give capture back
    response = http.post(
        f"/v1/calls/{record_id}/capture",
        json={"action": "pause"},
        headers={"Authorization": f"Bearer {keys['acme']}"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"call": record_id, "action": "pause", "applied": True}
    caller.assert_success(calls=1, timeout=20)
    callee.assert_success(calls=1)
    call = closed(http, admin, number)

    trail = [(e["party"], e["state"], e["method"]) for e in call["consent_events"]]
    assert ("call", "paused", "api") in trail, trail
    assert call["consent_outcome"] == "granted"
    assert call["media_stats"]["a"]["packets_in"] > 50
    # the recording: downloadable whole and by range; silent from the pause on
    href = call["recordings"][0]["href"]
    whole = get(http, admin, href)
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    samples, rate = read_wav(whole.content)
    assert rate == RATE and samples.shape[1] == 2
    heard = np.flatnonzero(np.abs(samples[:, 0]) > 1000)
    assert heard.size > 0.3 * RATE  # consented audio before the pause
    loud_after = samples[int(heard[0]) + int(1.2 * RATE) :, 0]
    assert np.abs(loud_after).max(initial=0) < 1000, "audio captured after the pause"
    on_disk = _recording_file(gateway, record_id)
    assert on_disk.name.endswith(".sealed") and on_disk.read_bytes()[:8] == b"CGSEALED"
    assert call["recordings"][0]["key_id"] == "k1"
    part = get(http, admin, href, headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.content == whole.content[:44]
    late = http.post(
        f"/v1/calls/{record_id}/capture",
        json={"action": "pause"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert late.status_code == 409 and "ended" in late.json()["detail"]


@pytest.mark.sipp
def test_erasure_end_to_end(
    sipp_factory: SippFactory, gateway: GatewayProcess, keys: dict[str, str], http: httpx.Client
) -> None:
    number = "+14045550188"
    caller, callee = acme_call(sipp_factory, gateway, number, ms=1500)
    caller.assert_success(calls=1, timeout=20)
    callee.assert_success(calls=1)
    admin = keys["acme-admin"]
    call = closed(http, admin, number)
    path = _recording_file(gateway, call["id"])
    assert path.exists()
    stats_before = get(http, admin, "/v1/stats").json()["totals"]
    export = get(http, admin, f"/v1/subjects/{number}/export").json()
    assert [c["id"] for c in export["calls"]] == [call["id"]]

    erased = http.delete(f"/v1/subjects/{number}", headers={"Authorization": f"Bearer {admin}"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["recordings"] == 1 and erased.json()["files_removed"] == 1
    assert not path.exists()
    assert get(http, admin, "/v1/calls", params={"number": number}).json()["calls"] == []
    after = get(http, admin, f"/v1/calls/{call['id']}").json()
    assert number not in str(after) and after["recordings"] == []
    assert get(http, admin, "/v1/stats").json()["totals"] == stats_before
    assert get(http, admin, f"/v1/calls/{call['id']}/recording").status_code == 404

    transcript = get(http, admin, f"/v1/calls/{call['id']}/transcript")
    assert transcript.status_code == 200, transcript.text

    def audited() -> list[dict[str, Any]] | None:
        entries, _ = asyncio.run(_audit_log(gateway.db_url, "acme"))
        read_after = any(
            (e["action"], e["target"]) == ("call.transcript", call["id"]) for e in entries
        )
        return entries if read_after else None  # reads are written in batches

    entries = wait_for(audited, what="the audit entry of the read after the erasure")
    actions = [e["action"] for e in entries]
    assert actions.count("subject.export") == 1 and actions.count("subject.erase") == 1
    assert actions.index("subject.erase") < actions.index("call.transcript")
    assert number not in str(entries) and number.lstrip("+") not in str(entries)
    _, in_store = asyncio.run(_audit_log(gateway.db_url, "acme"))
    assert {"subject.erase", "subject.export"} <= set(in_store)
    reads_in_store = {"calls.list", "call.read", "call.transcript"} & set(in_store)
    if gateway.db_url.startswith("sqlite"):  # reads' entries in the file beside the store
        assert not reads_in_store
    else:
        assert sorted(in_store) == sorted(actions)


async def _audit_log(db_url: str, tenant: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The tenant's audit log as :func:`audit_entries` gives it, and the actions of the
    entries in the store's own ``audit_log``."""
    engine = make_engine(db_url)
    try:
        in_store = select(AUDIT_LOG.c.action).where(AUDIT_LOG.c.tenant == tenant)
        async with engine.connect() as connection:
            actions = list((await connection.execute(in_store)).scalars())
        return await audit_entries(engine, tenant), actions
    finally:
        await engine.dispose()


def _recording_file(gateway: GatewayProcess, record_id: str) -> Path:
    found = list((gateway.config_path.parent / "recordings").rglob(f"{record_id}*.wav*"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def standalone_api(gateway: GatewayProcess) -> Iterator[int]:
    """``callgate api`` on the gateway's store: another instance, no SIP, served by two
    worker processes (``--workers 2``)."""
    port = free_port(GATEWAY_HOST)
    environment = {
        **os.environ,
        "CALLGATE_API__PORT": str(port),
        "CALLGATE_INSTANCE_ID": "api-only",
    }
    log_path = gateway.config_path.parent / "api.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*callgate_command(), "api", "--config", str(gateway.config_path), "--workers", "2"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            cwd=gateway.config_path.parent,
        )
    try:
        url = f"http://{GATEWAY_HOST}:{port}/readyz"
        wait_for(lambda: _answers(url) or process.poll() is not None, what="callgate api")
        assert process.poll() is None, log_path.read_text()
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log_path.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.sipp
def test_another_instance_reaches_the_live_call(
    sipp_factory: SippFactory,
    gateway: GatewayProcess,
    keys: dict[str, str],
    http: httpx.Client,
    standalone_api: int,
) -> None:
    """Capture control sent to ``callgate api`` reaches the gateway holding the call (over
    PostgreSQL LISTEN/NOTIFY); on SQLite there is one gateway, and the other API says so."""
    number = "+14045550199"
    caller, callee = acme_call(sipp_factory, gateway, number, ms=3000)
    admin = keys["acme-admin"]

    record_id = wait_for(lambda: granted_live(http, admin, number), what="consent, live")
    other = f"http://{GATEWAY_HOST}:{standalone_api}/v1/calls/{record_id}/capture"
    response = httpx.post(
        other, json={"action": "stop"}, headers={"Authorization": f"Bearer {admin}"}, timeout=5
    )
    caller.assert_success(calls=1, timeout=20)
    callee.assert_success(calls=1)
    call = closed(http, admin, number)
    trail = [(e["party"], e["state"], e["method"]) for e in call["consent_events"]]
    if gateway.db_url.startswith("postgresql"):
        assert response.status_code == 200, response.text
        assert {(p, s) for p, s, m in trail if m == "api"} == {
            ("caller", "withdrawn"),
            ("callee", "withdrawn"),
        }, trail
        assert call["consent_outcome"] == "withdrawn"
    else:
        assert response.status_code == 409, response.text
        assert response.json()["instance_id"] == call["gateway_instance"]
        assert not any(method == "api" for _, _, method in trail)


def test_health_readiness_and_metrics(gateway: GatewayProcess, http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "sip": "ok"}
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE callgate_active_calls gauge" in metrics.text
    assert 'callgate_relay_packets_total{event="packets_in"}' in metrics.text


@pytest.mark.sipp
def test_schemathesis_finds_nothing(
    gateway: GatewayProcess, keys: dict[str, str], tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [
            str(st),
            "run",
            f"http://{GATEWAY_HOST}:{gateway.api_port}/openapi.json",
            "-H",
            f"Authorization: Bearer {keys['acme-admin']}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "3261",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout, done.stdout[-3000:]
