"""Calls through the real gateway process, with sipp as caller and callee.

Each test places one call: the caller on the trunk address (127.0.0.3) calls
through the gateway (127.0.0.1) to the callee on the PBX address (127.0.0.2),
or the other way round for outbound calls. It checks what the peers saw
(sipp's own verdict, each side's RTP sink holding the other side's tone, so
media really crossed the relay) and the call record the gateway wrote. The
module runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.media import fastpath, kernel
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    gateway_on_backend,
)
from tests.support.peers import SippFactory
from tests.support.rtp import PT_PCMU, RtpSink
from tests.support.sipp import SippProcess

pytestmark = pytest.mark.sipp

CALLER_TONE_HZ = 440.0
CALLEE_TONE_HZ = 1000.0
TONE_SHARE = 0.8
NO_ANSWER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp(f"gateway-{request.param}")
    with gateway_on_backend(request.param, tmp, no_answer_timeout_s=NO_ANSWER_TIMEOUT_S) as gw:
        yield gw


def callee(
    sipp_factory: SippFactory,
    gateway: GatewayProcess,
    scenario: str,
    *,
    outbound: bool = False,
    **options: Any,
) -> SippProcess:
    """The called party: the PBX for inbound calls, the trunk for outbound ones."""
    host, port = (TRUNK_HOST, gateway.trunk_port) if outbound else (PBX_HOST, gateway.pbx_port)
    return sipp_factory(scenario, local_ip=host, local_port=port, **options)


def caller(
    sipp_factory: SippFactory,
    gateway: GatewayProcess,
    scenario: str,
    *,
    outbound: bool = False,
    **options: Any,
) -> SippProcess:
    host = PBX_HOST if outbound else TRUNK_HOST
    options.setdefault("service", "18005550199")
    options.setdefault("caller", "12125550100")
    return sipp_factory(scenario, local_ip=host, remote=gateway.address, **options)


def assert_tone(sink: RtpSink | None, frequency_hz: float, minimum_packets: int = 20) -> None:
    assert sink is not None
    sink.wait_for_packets(minimum_packets, timeout=5, payload_type=PT_PCMU)
    share = sink.tone_ratio(frequency_hz)
    assert share > TONE_SHARE, f"{frequency_hz} Hz is {share:.2f} of the audio at {sink.address}"


def assert_media_through_gateway(sink: RtpSink | None) -> None:
    """RTP reached the peer from the gateway's relay, not straight from the other peer."""
    assert sink is not None
    sources = sink.sources
    assert sources, "no RTP arrived"
    assert {host for host, _ in sources} == {"127.0.0.1"}, f"RTP came from {sources}"


def one_record(gateway: GatewayProcess, before: set[str]) -> dict[str, Any]:
    rows = gateway.wait_for_records(1, since=before)
    assert len(rows) == 1, rows
    return rows[0]


def forwarder_packets(gateway: GatewayProcess, forwarder: str) -> float:
    """The gateway's count of RTP packets its ``forwarder`` ("native" or "kernel")
    relayed (/metrics)."""
    name = f"callgate_relay_{forwarder}_packets_total"
    text = httpx.get(f"http://{GATEWAY_HOST}:{gateway.api_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def expected_forwarder() -> str | None:
    """Which forwarder the gateway's media.kernel_forwarding = "auto" picks here: the
    kernel's where it can run (always in CI, which runs as root), else the native one
    where it is built (always in CI too), else None (Python)."""
    if kernel.unavailable_reason() is None or os.environ.get("CI"):
        return "kernel"
    if fastpath.available():
        return "native"
    return None


def test_answered_call_caller_hangs_up(
    sipp_factory: SippFactory, gateway: GatewayProcess, tmp_path: Path
) -> None:
    before = gateway.record_ids()
    forwarder = expected_forwarder()
    forwarded_before = forwarder_packets(gateway, forwarder) if forwarder else 0.0
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_bye", duration_ms=1500)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    assert_media_through_gateway(uas.rtp)
    assert_media_through_gateway(uac.rtp)
    record = one_record(gateway, before)
    assert record["tenant"] == "acme"
    assert record["direction"] == "inbound"
    assert record["disposition"] == "answered"
    assert record["final_status"] == 200
    assert record["hangup_by"] == "caller"
    assert record["source_number"] == "+12125550100"
    assert record["destination_number"] == "+18005550199"
    assert record["source_addr"].startswith(TRUNK_HOST + ":")
    assert record["destination_addr"] == f"{PBX_HOST}:{gateway.pbx_port}"
    assert record["answered_at"] is not None
    assert 1.0 <= record["billable_s"] <= record["duration_s"]
    stats = record["media_stats"]
    assert stats["a"]["packets_in"] >= 40 and stats["b"]["packets_in"] >= 40
    assert stats["a"]["packets_out"] >= 40 and stats["b"]["packets_out"] >= 40
    assert stats["a"]["lost"] == 0 and stats["b"]["lost"] == 0
    assert stats["a"]["dropped_foreign"] == 0
    # the call's media crossed the forwarder the gateway picks here (see
    # expected_forwarder; where neither can run, it relays in Python and says so at start)
    if forwarder is not None:
        assert forwarder_packets(gateway, forwarder) - forwarded_before >= 60


def test_answered_call_callee_hangs_up_outbound(
    sipp_factory: SippFactory, gateway: GatewayProcess
) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_bye", outbound=True, duration_ms=1200)
    uac = caller(sipp_factory, gateway, "uac_call_wait_bye", outbound=True)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    record = one_record(gateway, before)
    assert record["direction"] == "outbound"
    assert record["disposition"] == "answered"
    assert record["hangup_by"] == "callee"
    assert record["destination_addr"] == f"{TRUNK_HOST}:{gateway.trunk_port}"
    assert record["media_stats"]["b"]["packets_in"] >= 40


def test_busy(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_busy")
    uac = caller(sipp_factory, gateway, "uac_expect_busy")
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    record = one_record(gateway, before)
    assert record["disposition"] == "busy"
    assert record["final_status"] == 486
    assert record["hangup_by"] == "callee"
    assert record["answered_at"] is None
    assert record["billable_s"] == 0


def test_cancel_while_ringing(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_ring_no_answer")
    uac = caller(sipp_factory, gateway, "uac_cancel", duration_ms=500)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    record = one_record(gateway, before)
    assert record["disposition"] == "cancelled"
    assert record["final_status"] == 487
    assert record["hangup_by"] == "caller"


def test_no_answer_timeout(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_ring_no_answer")
    uac = caller(sipp_factory, gateway, "uac_expect_timeout_status")
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)  # the callee saw the gateway's CANCEL
    record = one_record(gateway, before)
    assert record["disposition"] == "no_answer"
    assert record["final_status"] == 480
    assert record["hangup_by"] == "gateway"
    assert NO_ANSWER_TIMEOUT_S <= record["duration_s"] < NO_ANSWER_TIMEOUT_S + 2


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_reinvite_hold_and_unhold(
    sipp_factory: SippFactory, gateway: GatewayProcess, transport: str
) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_reinvites")
    uac = caller(sipp_factory, gateway, "uac_hold_unhold", transport=transport)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    directions = [
        line.split("=", 1)[1]
        for message in uas.messages()
        if message.text.startswith("INVITE ")
        for line in message.text.splitlines()
        if line.startswith("a=") and line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive")
    ]
    assert directions == ["sendrecv", "sendonly", "sendrecv"], directions
    for message in uas.messages():
        if message.text.startswith("INVITE "):
            assert "c=IN IP4 127.0.0.1" in message.text, "SDP not anchored at the gateway"
    record = one_record(gateway, before)
    assert record["disposition"] == "answered"
    assert record["hangup_by"] == "caller"


def test_early_media(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_early_media", duration_ms=1000)
    uac = caller(sipp_factory, gateway, "uac_early_media", duration_ms=1000)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    assert_media_through_gateway(uac.rtp)
    early = [m.text for m in uac.messages() if m.text.startswith("SIP/2.0 183")]
    assert early and "c=IN IP4 127.0.0.1" in early[0], "183 SDP not anchored"
    record = one_record(gateway, before)
    assert record["disposition"] == "answered"


def test_proxy_challenge_then_success(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    """A 407 from the trunk reaches the PBX, whose authenticated retry completes the call."""
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_challenge_407", outbound=True, calls=2)
    uac = caller(sipp_factory, gateway, "uac_auth", outbound=True)
    uac.assert_success(calls=1)
    uas.assert_success(calls=2)
    checks = uas.digest_checks()
    assert checks and all(check.valid for check in checks), checks
    record = one_record(gateway, before)
    assert record["disposition"] == "answered"
    assert record["final_status"] == 200
