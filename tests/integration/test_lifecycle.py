"""The gateway's own decisions about a call's life, against the real process.

- Media timeout: an answered call whose parties both fall silent is ended by
  the gateway (BYE on both legs, disposition ``media_timeout``); one-way audio
  keeps the call up.
- Drain on SIGTERM: new INVITEs (and OPTIONS probes) get 503 with
  Retry-After, an active call may finish by itself, one that outlasts
  ``drain_timeout_s`` gets BYE on both legs, the process exits 0 and every
  record is closed.
- Crash: after SIGKILL, a gateway restarted with the same instance id closes
  the record left open as ``gateway_restart``; rows of other instances sharing
  the database stay open.

Callers sit on the trunk address (127.0.0.3), callees on the PBX address
(127.0.0.2), as in ``test_call_flows.py``. Every test runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tests.support.gateway as gateway_support
from gateway.media.descriptors import media_descriptors
from gateway.store.engine import make_engine
from gateway.store.recovery import RESTART_REASON
from gateway.store.writer import CallStart, RecordWriter
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    gateway_on_backend,
    start_gateway,
)
from tests.support.peers import SippFactory
from tests.support.rtp import PT_PCMU
from tests.support.sipp import SippProcess, TracedMessage

pytestmark = pytest.mark.sipp

MEDIA_TIMEOUT_S = 1.5
SHORT_DRAIN_S = 1.0
LONG_DRAIN_S = 15.0
CALLER_TONE_HZ = 440.0
TONE_SHARE = 0.8
SIGKILL_RETURNCODE = -signal.SIGKILL

GatewayStarter = Callable[..., GatewayProcess]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", params=BACKENDS)
def media_timeout_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One gateway per database whose media timeout is short enough to watch."""
    tmp = tmp_path_factory.mktemp(f"media-timeout-{request.param}")
    with gateway_on_backend(request.param, tmp, media_timeout_s=MEDIA_TIMEOUT_S) as gw:
        yield gw


@pytest.fixture
def start_own_gateway(tmp_path: Path, db_url: str) -> Iterator[GatewayStarter]:
    """Starts gateways of this test on ``db_url`` (SQLite, then PostgreSQL); each gets its
    own directory. Whatever still runs at teardown is stopped."""
    started: list[GatewayProcess] = []

    def start(**config: Any) -> GatewayProcess:
        directory = tmp_path / f"gateway-{len(started) + 1}"
        directory.mkdir()
        process = start_gateway(directory, db_url, **config)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# ------------------------------------------------------------------- helpers


def callee(
    sipp_factory: SippFactory, gateway: GatewayProcess, scenario: str, **options: Any
) -> SippProcess:
    return sipp_factory(scenario, local_ip=PBX_HOST, local_port=gateway.pbx_port, **options)


def caller(
    sipp_factory: SippFactory, gateway: GatewayProcess, scenario: str, **options: Any
) -> SippProcess:
    options.setdefault("service", "18005550199")
    options.setdefault("caller", "12125550100")
    return sipp_factory(scenario, local_ip=TRUNK_HOST, remote=gateway.address, **options)


def sent_call_id(peer: SippProcess) -> str:
    """The Call-ID of the INVITE a caller sent (its record's ``call_id``)."""
    invites = [m for m in peer.messages() if m.direction == "sent" and m.method == "INVITE"]
    assert invites, f"{peer.name} sent no INVITE"
    return invites[0].header("Call-ID")[0]


def record_of(rows: list[dict[str, Any]], peer: SippProcess) -> dict[str, Any]:
    """The record of the call ``peer`` placed."""
    call_id = sent_call_id(peer)
    found = [row for row in rows if row["call_id"] == call_id]
    assert len(found) == 1, (call_id, rows)
    return found[0]


def new_rows(gateway: GatewayProcess, before: set[str]) -> list[dict[str, Any]]:
    return [row for row in gateway.records(limit=len(before) + 20) if row["id"] not in before]


def wait_for_answered(
    gateway: GatewayProcess, before: set[str], timeout: float = 10.0
) -> dict[str, Any]:
    """The one new record once its answer is written (the call is up, not ended)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = new_rows(gateway, before)
        answered = [row for row in rows if row["answered_at"] is not None]
        if answered:
            assert len(rows) == 1, rows
            return answered[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no answered call record within {timeout}s: {rows}\n"
                f"--- gateway log ---\n{gateway.log_text()[-4000:]}"
            )
        time.sleep(0.05)


def received_bye(peer: SippProcess) -> TracedMessage:
    """The one BYE the peer received, after checking that it answered it with 200."""
    messages = peer.messages()
    byes = [m for m in messages if m.direction == "received" and m.method == "BYE"]
    assert len(byes) == 1, [m.start_line for m in messages]
    answered = [
        m
        for m in messages
        if m.direction == "sent" and m.status == 200 and m.header("CSeq")[0].endswith("BYE")
    ]
    assert answered, f"{peer.name} did not answer the BYE"
    return byes[0]


def assert_bye_from_gateway(peer: SippProcess, gateway: GatewayProcess, call_id: str) -> None:
    """The peer got a BYE that the gateway originated, in the dialog with ``call_id``."""
    bye = received_bye(peer)
    vias = bye.header("Via")
    assert len(vias) == 1, f"a BYE the gateway originates has one Via: {vias}"
    assert f"{GATEWAY_HOST}:{gateway.sip_port}" in vias[0], vias
    assert bye.header("Call-ID") == [call_id], (bye.header("Call-ID"), call_id)
    sent_byes = [m for m in peer.messages() if m.direction == "sent" and m.method == "BYE"]
    assert not sent_byes, f"{peer.name} sent a BYE itself"


def wait_for_ringing(peer: SippProcess, timeout: float = 5.0) -> None:
    """Wait until the caller got a 180 (the call rings at the callee)."""
    deadline = time.monotonic() + timeout
    while not any(m.status == 180 for m in peer.messages() if m.direction == "received"):
        if time.monotonic() > deadline:
            raise AssertionError(f"no 180 within {timeout}s\n{peer.result().describe()}")
        time.sleep(0.05)


def options_status(gateway: GatewayProcess) -> int | None:
    """Status of the gateway's answer to an OPTIONS probe (what a load balancer sends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((GATEWAY_HOST, 0))
        probe.settimeout(0.5)
        port = probe.getsockname()[1]
        probe.sendto(
            (
                f"OPTIONS sip:{GATEWAY_HOST}:{gateway.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {GATEWAY_HOST}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:probe@{GATEWAY_HOST}>;tag=p\r\n"
                f"To: <sip:{GATEWAY_HOST}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            gateway.address,
        )
        try:
            data = probe.recv(65535)
        except OSError:
            return None
    first = data.split(b"\r\n", 1)[0].split(b" ")
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else None


def wait_for_draining(gateway: GatewayProcess, timeout: float = 5.0) -> None:
    """Probe until the gateway answers OPTIONS with 503, as it does once it drains."""
    deadline = time.monotonic() + timeout
    seen: list[int | None] = []
    while time.monotonic() < deadline:
        status = options_status(gateway)
        if status == 503:
            return
        seen.append(status)
        time.sleep(0.05)
    raise AssertionError(
        f"OPTIONS never got 503 after SIGTERM (statuses {seen[-5:]})\n"
        f"--- gateway log ---\n{gateway.log_text()[-3000:]}"
    )


def wait_for_exit(gateway: GatewayProcess, timeout: float = 20.0) -> int:
    try:
        return gateway.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"gateway still running {timeout}s after SIGTERM\n{gateway.log_text()[-3000:]}"
        ) from None


def assert_all_closed(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = gateway.records(limit=1000)
    still_open = [row for row in rows if row["ended_at"] is None]
    assert not still_open, f"records left open at exit: {still_open}"
    return rows


def insert_open_record(db_url: str, instance_id: str) -> str:
    """An open call record owned by another gateway instance sharing the database."""
    record_id = str(uuid.uuid4())

    async def write() -> None:
        engine = make_engine(db_url)
        writer = RecordWriter(engine)
        try:
            await writer.start()
            writer.submit(
                CallStart(
                    record_id=record_id,
                    tenant="acme",
                    call_id=f"{uuid.uuid4().hex}@other",
                    direction="inbound",
                    source_number="+12125550111",
                    source_uri="sip:+12125550111@127.0.0.3",
                    destination_number="+18005550199",
                    destination_uri="sip:+18005550199@127.0.0.1",
                    source_addr=f"{TRUNK_HOST}:5060",
                    started_at=datetime.now(UTC),
                    gateway_instance=instance_id,
                )
            )
            await writer.stop()
        finally:
            await engine.dispose()

    asyncio.run(write())
    return record_id


# -------------------------------------------------------------- media timeout


def test_silent_call_is_ended_by_media_timeout(
    sipp_factory: SippFactory, media_timeout_gateway: GatewayProcess
) -> None:
    """Neither party sends RTP after the answer: the gateway sends BYE on both legs."""
    gateway = media_timeout_gateway
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye", play_media=False)
    uac = caller(sipp_factory, gateway, "uac_call_wait_bye", play_media=False)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    rows = gateway.wait_for_records(1, since=before)
    assert len(rows) == 1, rows
    record = rows[0]
    assert record["disposition"] == "media_timeout"
    assert record["hangup_by"] == "gateway"
    assert record["final_status"] == 200
    assert "RTP" in (record["end_reason"] or ""), record["end_reason"]
    assert record["answered_at"] is not None
    assert record["billable_s"] >= MEDIA_TIMEOUT_S
    stats = record["media_stats"]
    assert stats["a"]["packets_in"] == 0 and stats["b"]["packets_in"] == 0
    assert_bye_from_gateway(uac, gateway, record["call_id"])
    assert_bye_from_gateway(uas, gateway, record["b_call_id"])


def test_one_way_audio_keeps_the_call_up(
    sipp_factory: SippFactory, media_timeout_gateway: GatewayProcess
) -> None:
    """Only the caller talks (the callee is silent) for longer than the media timeout:
    the call stays up until the caller hangs up."""
    gateway = media_timeout_gateway
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye", play_media=False)
    uac = caller(sipp_factory, gateway, "uac_call_bye", duration_ms=int(MEDIA_TIMEOUT_S * 1700))
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    rows = gateway.wait_for_records(1, since=before)
    assert len(rows) == 1, rows
    record = rows[0]
    assert record["disposition"] == "answered", record
    assert record["hangup_by"] == "caller"
    assert record["billable_s"] > MEDIA_TIMEOUT_S
    assert record["media_stats"]["a"]["packets_in"] >= 50
    assert record["media_stats"]["b"]["packets_in"] == 0
    assert uas.rtp is not None
    assert uas.rtp.count(PT_PCMU) >= 50
    assert uas.rtp.tone_ratio(CALLER_TONE_HZ) > TONE_SHARE


# ---------------------------------------------------------------------- drain


def test_drain_refuses_new_calls_and_lets_the_active_one_finish(
    sipp_factory: SippFactory, start_own_gateway: GatewayStarter
) -> None:
    """SIGTERM: probes and new INVITEs get 503 with Retry-After (RFC 3261 21.5.4), the
    call in progress ends by itself within the drain time and the process exits 0."""
    gateway = start_own_gateway(drain_timeout_s=LONG_DRAIN_S)
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_bye", duration_ms=4000)
    wait_for_answered(gateway, before)

    gateway.process.send_signal(signal.SIGTERM)
    wait_for_draining(gateway)
    refused = caller(sipp_factory, gateway, "uac_expect_unavailable", caller="12125550122")
    refused.assert_success(calls=1)
    responses = [m for m in refused.messages() if m.status == 503]
    assert len(responses) == 1, [m.start_line for m in refused.messages()]
    retry_after = responses[0].header("Retry-After")
    assert retry_after and retry_after[0].split(";")[0].strip().isdigit(), retry_after

    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert wait_for_exit(gateway) == 0, gateway.log_text()[-3000:]
    record = record_of(assert_all_closed(gateway), uac)
    assert record["disposition"] == "answered"
    assert record["hangup_by"] == "caller"
    assert record["final_status"] == 200
    assert record["duration_s"] >= record["billable_s"] > 0
    assert record["media_stats"]["a"]["packets_in"] > 0
    assert record["media_stats"]["b"]["packets_in"] > 0


def test_drain_timeout_ends_the_call_with_bye_on_both_legs(
    sipp_factory: SippFactory, start_own_gateway: GatewayStarter
) -> None:
    """A call that outlasts the drain time: the gateway sends BYE on both legs, closes the
    record and exits 0."""
    gateway = start_own_gateway(drain_timeout_s=SHORT_DRAIN_S)
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_wait_bye")
    wait_for_answered(gateway, before)

    gateway.process.send_signal(signal.SIGTERM)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert wait_for_exit(gateway) == 0, gateway.log_text()[-3000:]
    record = record_of(assert_all_closed(gateway), uac)
    assert record["disposition"] == "answered"
    assert record["hangup_by"] == "gateway"
    assert record["end_reason"] == "gateway shut down"
    assert record["ended_at"] is not None
    assert record["duration_s"] >= record["billable_s"] >= SHORT_DRAIN_S
    assert_bye_from_gateway(uac, gateway, record["call_id"])
    assert_bye_from_gateway(uas, gateway, record["b_call_id"])


def test_drain_timeout_gives_up_on_a_ringing_call(
    sipp_factory: SippFactory, start_own_gateway: GatewayStarter
) -> None:
    """A call still ringing when the drain ends: CANCEL to the callee, 503 to the caller."""
    gateway = start_own_gateway(drain_timeout_s=SHORT_DRAIN_S)
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_ring_no_answer")
    uac = caller(sipp_factory, gateway, "uac_expect_unavailable")
    wait_for_ringing(uac)

    gateway.process.send_signal(signal.SIGTERM)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)  # it saw the gateway's CANCEL and got the ACK for its 487
    assert wait_for_exit(gateway) == 0, gateway.log_text()[-3000:]
    record = record_of(assert_all_closed(gateway), uac)
    assert record["id"] not in before
    assert record["disposition"] == "failed"
    assert record["hangup_by"] == "gateway"
    assert record["final_status"] == 503
    assert record["end_reason"] == "gateway shut down"
    assert record["answered_at"] is None
    assert record["billable_s"] == 0


# ---------------------------------------------------------------------- crash


def test_restart_after_crash_closes_own_open_records_only(
    sipp_factory: SippFactory, start_own_gateway: GatewayStarter, db_url: str
) -> None:
    """SIGKILL during an answered call, restart with the same instance id: the record is
    closed as gateway_restart; another instance's open row in the same database is not."""
    instance_id = f"crash-{uuid.uuid4().hex[:8]}"
    first = start_own_gateway(instance_id=instance_id)
    before = first.record_ids()
    uas = callee(sipp_factory, first, "uas_answer_wait_bye")
    uac = caller(sipp_factory, first, "uac_call_wait_bye")
    answered = wait_for_answered(first, before)
    other_id = insert_open_record(db_url, f"other-{uuid.uuid4().hex[:8]}")

    assert first.stop(signal.SIGKILL) == SIGKILL_RETURNCODE
    for peer in (uac, uas):  # their dialogs died with the gateway
        peer.process.terminate()
        peer.process.wait(5)
    left_open = {row["id"]: row for row in first.records()}
    assert left_open[answered["id"]]["ended_at"] is None, "the killed gateway closed its record"
    assert left_open[other_id]["ended_at"] is None

    second = start_own_gateway(instance_id=instance_id)
    rows = {row["id"]: row for row in second.records()}
    record = rows[answered["id"]]
    assert record["disposition"] == "gateway_restart"
    assert record["end_reason"] == RESTART_REASON
    assert "restart" in record["end_reason"]
    assert record["hangup_by"] == "gateway"
    assert record["ended_at"] is not None
    assert record["answered_at"] == answered["answered_at"]
    assert record["duration_s"] >= record["billable_s"] > 0
    assert record["gateway_instance"] == instance_id
    other = rows[other_id]
    assert other["ended_at"] is None
    assert other["disposition"] is None
    assert other["hangup_by"] is None
    assert second.stop() == 0, second.log_text()[-3000:]


# -------------------------------------------------------------- the harness


def test_start_draws_fresh_ports_when_one_is_taken_before_the_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program binds the API port between the probe and the gateway's bind: the
    gateway stops with "address already in use" and the harness starts it again on
    fresh ports (the race that two suites on one host run into)."""
    real_free_port = gateway_support.free_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((GATEWAY_HOST, real_free_port(GATEWAY_HOST)))
        squatter.listen()
        taken_port = squatter.getsockname()[1]
        draws: list[int] = []

        def racing_free_port(host: str, *also: str, taken: Collection[int] = ()) -> int:
            # The fourth draw of the first start is the API port: hand out the one
            # the squatter holds, as if it had been bound right after the probe.
            port = taken_port if len(draws) == 3 else real_free_port(host, *also, taken=taken)
            draws.append(port)
            return port

        monkeypatch.setattr(gateway_support, "free_port", racing_free_port)
        gateway = start_gateway(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/calls.sqlite3")
        try:
            assert draws[3] == taken_port
            assert len(draws) == 8, "the second start drew four fresh ports"
            assert gateway.api_port not in (taken_port, gateway.sip_port)
            healthz = f"http://{GATEWAY_HOST}:{gateway.api_port}/healthz"
            with urllib.request.urlopen(healthz, timeout=5) as answer:
                assert answer.status == 200
        finally:
            assert gateway.stop() == 0, gateway.log_text()[-3000:]


def test_the_gateway_raises_its_open_files_limit_to_fit_the_media_range(tmp_path: Path) -> None:
    """Started with a soft limit of 256, the gateway raises it to what its media port
    range needs (three descriptors per pair and a reserve), within the hard limit."""
    media_ports = (30000, 30999)
    needed = media_descriptors(*media_ports)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        hard = min(hard, 8192)
    gateway = start_gateway(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/calls.sqlite3",
        open_files=(256, hard),
        media_ports=media_ports,
    )
    try:
        expected = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        limits = Path(f"/proc/{gateway.process.pid}/limits").read_text()
        open_files = next(line for line in limits.splitlines() if "open files" in line)
        assert open_files.split()[3] == str(expected), open_files
        assert f"open files limit raised from 256 to {expected}" in gateway.log_text()
    finally:
        assert gateway.stop() == 0, gateway.log_text()[-3000:]
