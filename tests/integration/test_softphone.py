"""A real softphone through the gateway: baresip calls a sipp callee.

baresip (headless: its microphone is ``tone440_8k.wav``, what it decodes is
dumped to WAV) listens on the trunk address 127.0.0.3, so its INVITE comes
from the tenant's trunk peer and the gateway routes it inbound to the sipp
callee on the PBX address 127.0.0.2. baresip's SDP names 127.0.0.3, but its
RTP socket is bound to the wildcard address, so the kernel sends its RTP
toward the gateway (127.0.0.1) from 127.0.0.1: the relay must latch onto that
source (symmetric RTP, RFC 4961) rather than drop the phone's packets as
foreign. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import (
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    start_gateway,
)
from tests.support.peers import BaresipFactory, SippFactory
from tests.support.rtp import PT_PCMU, tone_ratio

pytestmark = [pytest.mark.sipp, pytest.mark.baresip]

CALLER_TONE_HZ = 440.0
CALLEE_TONE_HZ = 1000.0
TONE_SHARE = 0.8
CALLED_NUMBER = "+18005550199"
PHONE_NUMBER = "+12125550100"
SAMPLE_RATE = 8000


@pytest.fixture
def gateway(tmp_path: Path, db_url: str) -> Iterator[GatewayProcess]:
    directory = tmp_path / "gateway"
    directory.mkdir()
    process = start_gateway(directory, db_url)
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"gateway exited {code}\n{process.log_text()[-3000:]}"


def test_softphone_call_through_the_gateway(
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    gateway: GatewayProcess,
) -> None:
    before = gateway.record_ids()
    uas = sipp_factory("uas_answer_wait_bye", local_ip=PBX_HOST, local_port=gateway.pbx_port)
    phone = baresip_factory(TRUNK_HOST, user=PHONE_NUMBER)
    phone.dial(f"sip:{CALLED_NUMBER}@{GATEWAY_HOST}:{gateway.sip_port}")
    phone.wait_established(timeout=10)
    assert uas.rtp is not None
    uas.rtp.wait_for_packets(50, timeout=5, payload_type=PT_PCMU)
    # the callee's pcap plays for 3 s; leave time for a second of it to reach the phone
    time.sleep(1.0)
    phone.hangup()
    phone.wait_closed(timeout=5)
    uas.assert_success(calls=1)

    assert {host for host, _ in uas.rtp.sources} == {GATEWAY_HOST}, uas.rtp.sources
    assert uas.rtp.tone_ratio(CALLER_TONE_HZ) > TONE_SHARE

    phone.stop()
    received = phone.received_audio()
    assert received.size > SAMPLE_RATE * 0.5, "the phone decoded less than half a second"
    share = tone_ratio(received, CALLEE_TONE_HZ)
    assert share > TONE_SHARE, f"{CALLEE_TONE_HZ} Hz is {share:.2f} of what the phone heard"

    rows = gateway.wait_for_records(1, since=before)
    assert len(rows) == 1, rows
    record = rows[0]
    assert record["tenant"] == "acme"
    assert record["direction"] == "inbound"
    assert record["disposition"] == "answered"
    assert record["hangup_by"] == "caller"
    assert record["final_status"] == 200
    assert record["source_number"] == PHONE_NUMBER
    assert record["destination_number"] == CALLED_NUMBER
    assert record["source_addr"] == f"{TRUNK_HOST}:{phone.config.sip_port}"
    assert record["destination_addr"] == f"{PBX_HOST}:{gateway.pbx_port}"
    stats = record["media_stats"]
    # the A side latched the phone's RTP source although it is not the SDP's address
    assert stats["a"]["packets_in"] >= 50, stats
    assert stats["b"]["packets_in"] >= 50, stats
    assert stats["a"]["packets_out"] >= 50, stats
    assert stats["b"]["packets_out"] >= 50, stats
    assert stats["a"]["dropped_foreign"] == 0, stats
    assert stats["b"]["dropped_foreign"] == 0, stats
