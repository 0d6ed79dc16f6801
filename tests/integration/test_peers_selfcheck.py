"""The SIP peers the gateway tests rely on, checked against each other without the gateway.

Each caller scenario runs straight against its callee scenario (sipp to sipp, and
baresip to sipp) on distinct loopback addresses, so a gateway test that fails
points at the gateway, not at its peers. Media is checked end to end: each side's
RTP sink must hold the other side's marker tone (440 Hz from the caller, 1000 Hz
from the callee).
"""

from __future__ import annotations

import filecmp
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.peers import BaresipFactory, LoopbackPorts, SippFactory
from tests.support.rtp import (
    PT_PCMU,
    RtpPacket,
    RtpParseError,
    RtpSink,
    TelephoneEvent,
    read_pcap_rtp,
    tone_ratio,
)
from tests.support.sipp import MEDIA_DIR, SippProcess, find_sipp

CALLEE_HOST = "127.0.0.2"
CALLER_HOST = "127.0.0.3"
CALLER_TONE_HZ = 440.0
CALLEE_TONE_HZ = 1000.0
TONE_SHARE = 0.8

pytestmark = pytest.mark.sipp


def assert_tone(sink: RtpSink | None, frequency_hz: float, minimum_packets: int = 10) -> None:
    """The sink received PCMU audio that is (nearly) all ``frequency_hz``."""
    assert sink is not None
    sink.wait_for_packets(minimum_packets, timeout=5, payload_type=PT_PCMU)
    share = sink.tone_ratio(frequency_hz)
    assert share > TONE_SHARE, f"{frequency_hz} Hz holds {share:.2f} of the audio at {sink.address}"


def run_pair(
    sipp_factory: SippFactory,
    caller: str,
    callee: str,
    *,
    caller_options: dict[str, object] | None = None,
    callee_options: dict[str, object] | None = None,
) -> tuple[SippProcess, SippProcess]:
    uas = sipp_factory(callee, local_ip=CALLEE_HOST, **(callee_options or {}))
    uac = sipp_factory(caller, local_ip=CALLER_HOST, remote=uas.address, **(caller_options or {}))
    uac.assert_success(calls=1)
    return uac, uas


@pytest.mark.parametrize(
    ("caller", "callee"),
    [
        ("uac_call_bye", "uas_answer_wait_bye"),
        ("uac_call_wait_bye", "uas_answer_bye"),
    ],
)
def test_answered_call_carries_both_tones(
    sipp_factory: SippFactory, caller: str, callee: str
) -> None:
    uac, uas = run_pair(sipp_factory, caller, callee)
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    assert uas.rtp is not None and uac.rtp is not None
    assert set(uas.rtp.sources) == {uac.rtp_address}, "caller RTP must come from its SDP port"
    assert set(uac.rtp.sources) == {uas.rtp_address}, "callee RTP must come from its SDP port"


def test_callee_hangup_uses_dialog_of_the_invite(sipp_factory: SippFactory) -> None:
    _, uas = run_pair(sipp_factory, "uac_call_wait_bye", "uas_answer_bye")
    uas.assert_success(calls=1)
    invite = next(m for m in uas.messages() if m.direction == "received" and m.method == "INVITE")
    bye = next(m for m in uas.messages() if m.direction == "sent" and m.method == "BYE")
    assert bye.header("Call-ID") == invite.header("Call-ID")
    assert bye.header("To") == invite.header("From"), "BYE goes to the caller, with its tag"
    assert bye.header("From")[0].startswith(invite.header("To")[0])
    assert bye.start_line.split()[1] in invite.header("Contact")[0]


def test_busy(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(sipp_factory, "uac_expect_busy", "uas_busy")
    uas.assert_success(calls=1)
    statuses = [m.status for m in uac.messages() if m.direction == "received"]
    assert 486 in statuses
    ack = next(m for m in uac.messages() if m.method == "ACK")
    invite = next(m for m in uac.messages() if m.method == "INVITE")
    assert ack.header("Via") == invite.header("Via"), "non-2xx ACK keeps the INVITE's branch"


def test_cancel_while_ringing(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory, "uac_cancel", "uas_ring_no_answer", caller_options={"duration_ms": 300}
    )
    uas.assert_success(calls=1)
    received = [(m.status, m.header("CSeq")) for m in uac.messages() if m.status]
    assert (200, ["1 CANCEL"]) in received
    assert (487, ["1 INVITE"]) in received


def test_no_answer_ends_with_timeout_status(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory,
        "uac_expect_timeout_status",
        "uas_ring_unavailable",
        callee_options={"duration_ms": 300},
    )
    uas.assert_success(calls=1)
    assert 480 in [m.status for m in uac.messages() if m.direction == "received"]


def test_hold_and_resume(sipp_factory: SippFactory) -> None:
    _, uas = run_pair(
        sipp_factory,
        "uac_hold_unhold",
        "uas_answer_reinvites",
        caller_options={"duration_ms": 300},
    )
    uas.assert_success(calls=1)
    answers = [
        m.text
        for m in uas.messages()
        if m.direction == "sent" and m.status == 200 and "v=0" in m.text
    ]
    assert len(answers) == 3
    assert "a=sendrecv" in answers[0]
    assert "a=recvonly" in answers[1]
    assert "a=sendrecv" in answers[2]
    assert_tone(uas.rtp, CALLER_TONE_HZ)


def test_early_media_arrives_before_the_answer(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory,
        "uac_early_media",
        "uas_early_media",
        callee_options={"duration_ms": 1000},
    )
    uas.assert_success(calls=1)
    assert uac.rtp is not None
    answered_at = next(
        m.timestamp for m in uac.messages() if m.status == 200 and "INVITE" in m.header("CSeq")[0]
    )
    assert answered_at is not None
    early = [item for item in uac.rtp.packets() if item.wallclock < answered_at - 0.2]
    assert len(early) >= 10, f"only {len(early)} RTP packets before the 200 OK"
    assert_tone(uac.rtp, CALLEE_TONE_HZ)


def test_407_challenge_then_authenticated_call(sipp_factory: SippFactory) -> None:
    uas = sipp_factory("uas_challenge_407", local_ip=CALLEE_HOST, calls=2)
    uac = sipp_factory("uac_auth", local_ip=CALLER_HOST, remote=uas.address)
    uac.assert_success(calls=1)
    uas.assert_success(calls=2)
    checks = uas.digest_checks()
    assert len(checks) == 1
    assert checks[0].valid, checks[0]
    assert checks[0].username == "alice"
    assert not uas.digest_checks(password="not-the-password")[0].valid
    assert_tone(uas.rtp, CALLER_TONE_HZ)


def test_call_rate_pair_reports_interval_statistics(sipp_factory: SippFactory) -> None:
    uas = sipp_factory(
        "uas_rate", local_ip=CALLEE_HOST, calls=None, trace_messages=False, keep_rtp_packets=False
    )
    uac = sipp_factory(
        "uac_rate",
        local_ip=CALLER_HOST,
        remote=uas.address,
        calls=20,
        rate=20,
        duration_ms=200,
        trace_messages=False,
    )
    outcome = uac.assert_success(calls=20)
    assert outcome.stats is not None
    assert outcome.stats.created_calls == 20
    assert sum(row.interval_successful_calls for row in uac.interval_stats()) == 20
    assert uas.rtp is not None and uas.rtp.packet_count >= 20 * 5
    assert uas.stop().successful_calls == 20


def test_call_rate_caller_streams_its_tone(sipp_factory: SippFactory) -> None:
    """The call-rate benchmark's caller: each call's tone from rtp_stream (an SSRC per call)."""
    uas = sipp_factory(
        "uas_rate", local_ip=CALLEE_HOST, calls=None, trace_messages=False, keep_rtp_packets=True
    )
    uac = sipp_factory(
        "uac_rate_stream",
        local_ip=CALLER_HOST,
        remote=uas.address,
        calls=10,
        rate=20,
        duration_ms=400,
        trace_messages=False,
    )
    uac.assert_success(calls=10)
    assert uas.rtp is not None and uas.rtp.packet_count >= 10 * 10
    assert uas.stop().successful_calls == 10
    streams = uas.rtp.ssrcs()
    assert len(streams) == 10
    for ssrc in streams:
        share = tone_ratio(uas.rtp.audio(PT_PCMU, ssrc), CALLER_TONE_HZ)
        assert share > TONE_SHARE, f"SSRC {ssrc}: {CALLER_TONE_HZ} Hz holds {share:.2f}"


def test_tcp_transport(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory,
        "uac_call_bye",
        "uas_answer_wait_bye",
        caller_options={"transport": "tcp", "duration_ms": 500},
        callee_options={"transport": "tcp"},
    )
    uas.assert_success(calls=1)
    assert all(m.text.split("\n")[1].startswith("Via: SIP/2.0/TCP") for m in uac.messages())


def test_harness_reports_why_a_call_failed(sipp_factory: SippFactory) -> None:
    uas = sipp_factory("uas_busy", local_ip=CALLEE_HOST)
    uac = sipp_factory("uac_call_bye", local_ip=CALLER_HOST, remote=uas.address)
    outcome = uac.wait_result(timeout=20)
    assert not outcome.ok
    assert outcome.failed_calls == 1
    assert "486" in outcome.describe()
    with pytest.raises(AssertionError, match="486"):
        outcome.assert_success()


def test_callee_can_echo_instead_of_playing(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory,
        "uac_call_bye",
        "uas_answer_wait_bye",
        callee_options={"rtp_echo": True, "play_media": False},
    )
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLER_TONE_HZ)
    assert uac.rtp is not None and uac.rtp.tone_ratio(CALLEE_TONE_HZ) < 0.01


def test_media_switch_keeps_a_peer_silent(sipp_factory: SippFactory) -> None:
    uac, uas = run_pair(
        sipp_factory,
        "uac_call_bye",
        "uas_answer_wait_bye",
        caller_options={"play_media": False, "duration_ms": 500},
    )
    uas.assert_success(calls=1)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    assert uas.rtp is not None and uas.rtp.packet_count == 0


def test_sink_can_answer_with_dtmf(sipp_factory: SippFactory) -> None:
    """A test can inject RFC 4733 digits from a peer's media port while the call is up."""
    uas = sipp_factory("uas_answer_wait_bye", local_ip=CALLEE_HOST, play_media=False)
    uac = sipp_factory("uac_call_bye", local_ip=CALLER_HOST, remote=uas.address, duration_ms=1500)
    assert uas.rtp is not None and uac.rtp is not None
    uas.rtp.wait_for_packets(5)
    uas.rtp.play_pcap(MEDIA_DIR / "dtmf_1_rfc4733.pcap", wait=True)
    uac.assert_success(calls=1)
    assert uac.rtp.digits() == "1"


@pytest.mark.baresip
def test_baresip_calls_sipp(sipp_factory: SippFactory, baresip_factory: BaresipFactory) -> None:
    uas = sipp_factory("uas_answer_wait_bye", local_ip=CALLEE_HOST)
    phone = baresip_factory(CALLER_HOST)
    phone.dial(f"sip:+14155550100@{uas.local_ip}:{uas.local_port}")
    phone.wait_established(timeout=10)
    assert uas.rtp is not None
    uas.rtp.wait_for_packets(40, timeout=5)
    time.sleep(0.5)
    phone.hangup()
    phone.wait_closed(timeout=5)
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    phone.stop()
    received = phone.received_audio()
    assert received.size > 8000 * 0.5, "the phone decoded less than half a second of audio"
    assert tone_ratio(received, CALLEE_TONE_HZ) > TONE_SHARE


def test_missing_sipp_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-test-deps"):
        find_sipp()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="sipp not installed"):
        find_sipp()


def test_loopback_ports_are_never_handed_out_twice(loopback_ports: LoopbackPorts) -> None:
    ports = {loopback_ports.sip(CALLEE_HOST) for _ in range(20)}
    assert len(ports) == 20
    media = loopback_ports.media(CALLEE_HOST)
    assert media % 2 == 0 and media not in ports


def test_media_files_are_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_media", MEDIA_DIR / "make_media.py")
    assert spec is not None and spec.loader is not None
    make_media = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_media)
    for path in make_media.write_all(tmp_path):
        assert filecmp.cmp(path, MEDIA_DIR / path.name, shallow=False), path.name


def test_tone_pcap_is_what_sipp_plays() -> None:
    packets = [
        RtpPacket.parse(payload) for _, payload in read_pcap_rtp(MEDIA_DIR / "tone440_pcmu.pcap")
    ]
    assert len(packets) == 150
    assert {packet.payload_type for packet in packets} == {PT_PCMU}
    assert {len(packet.payload) for packet in packets} == {160}
    assert [p.sequence for p in packets] == list(
        range(packets[0].sequence, packets[0].sequence + 150)
    )
    assert np.diff([p.timestamp for p in packets]).tolist() == [160] * 149
    dtmf = [
        RtpPacket.parse(payload) for _, payload in read_pcap_rtp(MEDIA_DIR / "dtmf_9_rfc4733.pcap")
    ]
    events = [TelephoneEvent.parse(packet.payload) for packet in dtmf]
    assert {event.digit for event in events} == {"9"}
    assert events[-1].end


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\x80\x00", "shorter than the RTP header"),
        (b"\x40" + bytes(11), "version 1"),
        (b"\x83" + bytes(11), "CSRCs announced"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "runs past the packet"),
        (b"\xa0" + bytes(11) + b"\x00\x00\x09", "padding count 9"),
    ],
)
def test_malformed_rtp_is_rejected_with_a_reason(datagram: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        RtpPacket.parse(datagram)
