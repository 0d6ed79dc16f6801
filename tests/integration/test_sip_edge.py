"""SIP edge behaviour of the real gateway process: malformed input, refusals, probes,
in-dialog requests, transports and IPv6.

One gateway (SQLite) serves the module. Hand-crafted messages come from
:class:`~tests.support.sipclient.SipClient` sockets on chosen loopback addresses:
the trunk address (127.0.0.3) is a known peer of tenant "acme", 127.0.0.9 is a
stranger that matches no tenant. Real calls use sipp as in test_call_flows.

Whether a message was answered is decided by order, not by waiting: the
gateway reads one socket in order, so after a message that must be dropped an
OPTIONS probe from the same socket is sent, and the first thing to come back
must be the probe's 200. Likewise "no call record" is shown by placing a
barrier call afterwards: the record writer keeps order, so once the barrier's
record is there, a record for the earlier request would be too.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.sip.message import SipRequest, make_response, parse_message
from tests.support.gateway import (
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    TenantPeers,
    start_gateway,
)
from tests.support.gateway import free_port as free_gateway_port
from tests.support.peers import SippFactory
from tests.support.rtp import PT_PCMU, RtpSink
from tests.support.sipclient import (
    RequestSpec,
    SipClient,
    SipReply,
    ack_from_reply,
    ipv6_loopback_available,
    mutate,
    new_branch,
    parse_reply,
    sdp_offer,
)
from tests.support.sipclient import free_port as free_dual_port
from tests.support.sipp import SippProcess, TracedMessage, in_ci

pytestmark = pytest.mark.sipp

STRANGER_HOST = "127.0.0.9"
"""Matches no tenant's PBX or trunk."""
V6_HOST = "::1"
V6_PBX_HOST = "127.0.0.4"
"""The PBX of tenant "acme-v6", whose trunk calls in from ::1."""
V6_CALLER_MEDIA_HOST = "127.0.0.5"
CALLER_TONE_HZ = 440.0
CALLEE_TONE_HZ = 1000.0
TONE_SHARE = 0.8
CALLED = "+18005550199"
CALLING = "+12125550100"
ALLOW_REQUIRED = {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE"}
FUZZ_SEED = 3261
FUZZ_MESSAGES = 300
FUZZ_BATCH = 50
OVERLOAD_WAIT_S = 0.6
"""How long the overload test keeps an INVITE waiting: past the default limit of 0.25 s."""
NO_SUSTAIN = "overload_sustain_s = 0\n"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("gateway-edge")
    has_v6 = ipv6_loopback_available()
    v6_tenant = TenantPeers(
        "acme-v6",
        pbx=(V6_PBX_HOST, free_gateway_port(V6_PBX_HOST)),
        trunk=(V6_HOST, free_dual_port(V6_HOST) if has_v6 else 5060),
    )
    process = start_gateway(
        tmp,
        f"sqlite+aiosqlite:///{tmp}/calls.sqlite3",
        extra_listen_hosts=(V6_HOST,) if has_v6 else (),
        extra_tenants=(v6_tenant,) if has_v6 else (),
    )
    process.extra["v6_tenant"] = v6_tenant if has_v6 else None
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"gateway exited {code}\n{process.log_text()[-3000:]}"


@pytest.fixture
def trunk(gateway: GatewayProcess) -> Iterator[SipClient]:
    """A raw UDP socket on the trunk's address (a known peer of tenant acme)."""
    with SipClient(TRUNK_HOST, gateway.address) as client:
        yield client


@pytest.fixture
def stranger(gateway: GatewayProcess) -> Iterator[SipClient]:
    """A raw UDP socket on an address no tenant knows."""
    with SipClient(STRANGER_HOST, gateway.address) as client:
        yield client


# ------------------------------------------------------------------------------ helpers


def gateway_uri(gateway: GatewayProcess, user: str = CALLED) -> str:
    return f"sip:{user}@{GATEWAY_HOST}:{gateway.sip_port}"


def invite(client: SipClient, gateway: GatewayProcess, **fields: Any) -> RequestSpec:
    """An INVITE from ``client`` to the gateway with an SDP offer."""
    host, _ = client.local_address
    fields.setdefault("body", sdp_offer(host, 40000))
    fields.setdefault("from_uri", f"sip:{CALLING}@{host}")
    fields.setdefault("to_uri", gateway_uri(gateway))
    return client.spec("INVITE", gateway_uri(gateway), **fields)


def options(client: SipClient, gateway: GatewayProcess) -> RequestSpec:
    """An out-of-dialog OPTIONS, as a load balancer's health probe sends it."""
    host, _ = client.local_address
    return client.spec(
        "OPTIONS",
        f"sip:{GATEWAY_HOST}:{gateway.sip_port}",
        from_uri=f"sip:probe@{host}",
        to_uri=f"sip:{GATEWAY_HOST}:{gateway.sip_port}",
        headers=(("Accept", "application/sdp"),),
    )


def assert_answers(reply: SipReply, spec: RequestSpec) -> None:
    """The reply belongs to ``spec`` (RFC 3261 8.2.6.2: Via, Call-ID, CSeq copied)."""
    assert reply.call_id == spec.call_id, reply.raw
    assert reply.first("cseq") == f"{spec.cseq} {spec.method}", reply.raw
    via = reply.first("via") or ""
    assert f"branch={spec.branch}" in via, reply.raw


def assert_dropped(client: SipClient, gateway: GatewayProcess, data: bytes) -> None:
    """Send ``data``, then a probe: the probe's 200 must be the first thing back."""
    probe = options(client, gateway)
    client.send(data)
    client.send(probe.render())
    first = client.receive(timeout=5)
    assert first is not None, "the gateway answered neither the message nor the probe"
    reply = parse_reply(first)
    assert reply.call_id == probe.call_id, f"{data[:80]!r} was answered: {first[:200]!r}"
    assert reply.status == 200


def drain_until_probe(client: SipClient, gateway: GatewayProcess) -> list[SipReply]:
    """Every reply to what ``client`` sent so far: a probe goes last, and its 200 comes
    back after the answers to everything before it."""
    probe = options(client, gateway)
    client.send(probe.render())
    replies: list[SipReply] = []
    while True:
        data = client.receive(timeout=5)
        assert data is not None, f"no answer to the probe (after {len(replies)} replies)"
        reply = parse_reply(data)
        if reply.call_id == probe.call_id and reply.status >= 200:
            assert reply.status == 200, reply.raw
            return replies
        replies.append(reply)


def assert_alive(gateway: GatewayProcess) -> None:
    assert gateway.process.poll() is None, f"gateway died\n{gateway.log_text()[-3000:]}"
    with SipClient(GATEWAY_HOST, gateway.address) as client:
        probe = options(client, gateway)
        assert client.request(probe.render(), probe.call_id).status == 200


def callee(
    sipp_factory: SippFactory, gateway: GatewayProcess, scenario: str, **sipp_options: Any
) -> SippProcess:
    return sipp_factory(scenario, local_ip=PBX_HOST, local_port=gateway.pbx_port, **sipp_options)


def caller(
    sipp_factory: SippFactory, gateway: GatewayProcess, scenario: str, **sipp_options: Any
) -> SippProcess:
    sipp_options.setdefault("service", CALLED)
    sipp_options.setdefault("caller", CALLING)
    return sipp_factory(scenario, local_ip=TRUNK_HOST, remote=gateway.address, **sipp_options)


def assert_tone(sink: RtpSink | None, frequency_hz: float, minimum_packets: int = 20) -> None:
    assert sink is not None
    sink.wait_for_packets(minimum_packets, timeout=5, payload_type=PT_PCMU)
    share = sink.tone_ratio(frequency_hz)
    assert share > TONE_SHARE, f"{frequency_hz} Hz is {share:.2f} of the audio at {sink.address}"


def assert_media_through_gateway(sink: RtpSink | None) -> None:
    assert sink is not None
    assert {host for host, _ in sink.sources} == {GATEWAY_HOST}, sink.sources


def one_record(gateway: GatewayProcess, before: set[str]) -> dict[str, Any]:
    rows = gateway.wait_for_records(1, since=before)
    assert len(rows) == 1, rows
    return rows[0]


def assert_answered(record: dict[str, Any], hangup_by: str = "caller") -> None:
    assert record["disposition"] == "answered", record
    assert record["final_status"] == 200, record
    assert record["hangup_by"] == hangup_by, record
    assert record["answered_at"] is not None, record


def wait_for_answered_call(
    gateway: GatewayProcess, before: set[str], timeout: float = 10.0
) -> dict[str, Any]:
    """The open record of a call that has been answered and not yet ended."""
    deadline = time.monotonic() + timeout
    while True:
        for row in gateway.records(limit=len(before) + 20):
            if row["id"] not in before and row["answered_at"] and row["ended_at"] is None:
                return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no answered call in progress\n{gateway.log_text()[-3000:]}")
        time.sleep(0.05)


def received(peer: SippProcess, start: str) -> list[TracedMessage]:
    """Messages ``peer`` received whose start line begins with ``start``."""
    return [
        m for m in peer.messages() if m.direction == "received" and m.start_line.startswith(start)
    ]


def sdp_lines(message: TracedMessage, prefix: str) -> list[str]:
    body = message.text.split("\n\n", 1)[1] if "\n\n" in message.text else ""
    return [line for line in body.splitlines() if line.startswith(prefix)]


def media_port(message: TracedMessage) -> int:
    """The port of the SDP's first m= line."""
    return int(sdp_lines(message, "m=")[0].split()[1])


def busy_call(
    sipp_factory: SippFactory, gateway: GatewayProcess, *, max_forwards: int = 70
) -> tuple[SippProcess, dict[str, Any]]:
    """A call from the trunk that the PBX refuses (486): quick, and it leaves a record.

    The INVITE comes from a raw client so its Max-Forwards can be anything.
    """
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_busy")
    with SipClient(TRUNK_HOST, gateway.address) as client:
        spec = invite(client, gateway, max_forwards=max_forwards)
        reply = client.request(spec.render(), spec.call_id)
        assert reply.status == 486, reply.raw
        client.send(spec.ack_for(reply))
    uas.assert_success(calls=1)
    record = one_record(gateway, before)
    assert record["call_id"] == spec.call_id
    assert record["disposition"] == "busy" and record["final_status"] == 486, record
    return uas, record


# ----------------------------------------------------------------- 1. malformed input


Damage = Callable[[RequestSpec], tuple[bytes, bytes]]
"""What to replace in a request's bytes: (old, new)."""


def _content_length(spec: RequestSpec) -> bytes:
    return f"Content-Length: {len(spec.body)}".encode()


BROKEN_REQUESTS = [
    pytest.param(
        lambda s: (b"CSeq: 1 INVITE", b"CSeq: one INVITE"),
        "Bad CSeq header",
        id="cseq-not-a-number",
    ),
    pytest.param(
        lambda s: (b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
        "CSeq method does not match",
        id="cseq-wrong-method",
    ),
    pytest.param(
        lambda s: (_content_length(s), b"Content-Length: many"),
        "Bad Content-Length header",
        id="content-length-not-a-number",
    ),
    pytest.param(
        lambda s: (_content_length(s), b"Content-Length: 9999"),
        "Content-Length larger than message",
        id="content-length-too-large",
    ),
    pytest.param(
        lambda s: (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nthis is no header\r\n"),
        "Bad header line",
        id="garbage-header-line",
    ),
    pytest.param(
        lambda s: (b"Max-Forwards: 70", b"Max-Forwards: lots"),
        "Bad Max-Forwards header",
        id="max-forwards-not-a-number",
    ),
]


@pytest.mark.parametrize(("damage", "reason"), BROKEN_REQUESTS)
def test_broken_request_gets_400_saying_why(
    gateway: GatewayProcess, trunk: SipClient, damage: Damage, reason: str
) -> None:
    """RFC 3261 21.4.1: a request with a usable Via/From/To/Call-ID gets 400 with a reason."""
    spec = invite(trunk, gateway)
    old, new = damage(spec)
    reply = trunk.request(mutate(spec.render(), old, new), spec.call_id)
    assert reply.status == 400, reply.raw
    assert reason.lower() in reply.reason.lower(), reply.reason
    assert reply.call_id == spec.call_id and f"branch={spec.branch}" in (reply.first("via") or "")
    assert reply.to_tag, "a final response carries a To tag (RFC 3261 8.2.6.2)"


def test_unsupported_sip_version_gets_505(gateway: GatewayProcess, trunk: SipClient) -> None:
    """RFC 3261 8.2.2.1 / 21.5.6: a request in a SIP version we do not speak gets 505."""
    spec = invite(trunk, gateway)
    data = mutate(spec.render(), b" SIP/2.0\r\n", b" SIP/3.0\r\n")
    reply = trunk.request(data, spec.call_id)
    assert reply.status == 505, reply.raw
    assert "version" in reply.reason.lower()
    assert_answers(reply, spec)


def _stray_response(call_id: str) -> bytes:
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {GATEWAY_HOST}:5060;branch={new_branch()}\r\n"
        f"From: <sip:a@{TRUNK_HOST}>;tag=1\r\nTo: <sip:b@{GATEWAY_HOST}>;tag=2\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


UNANSWERABLE = [
    pytest.param(bytes(random.Random(1).randrange(256) for _ in range(400)), id="random-bytes"),
    pytest.param(b"\x00" * 64, id="nul-bytes"),
    pytest.param(b"hello gateway\r\n\r\n", id="text-line"),
    pytest.param(b"INVITE\r\n\r\n", id="method-only"),
    pytest.param(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", id="response-missing-headers"),
    pytest.param(b"SIP/2.0 2000 Too Long\r\n\r\n", id="response-bad-status"),
    pytest.param(_stray_response("stray-" + uuid.uuid4().hex), id="response-to-nothing"),
    pytest.param(
        f"INVITE sip:x@{GATEWAY_HOST} SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@c>\r\n"
        "Call-ID: no-via\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode(),
        id="request-without-via",
    ),
]


@pytest.mark.parametrize("data", UNANSWERABLE)
def test_unanswerable_message_is_dropped(
    gateway: GatewayProcess, trunk: SipClient, data: bytes
) -> None:
    """Garbage, responses (never answered, RFC 3261 18.1.2) and requests without a
    usable Via get no answer, and the socket keeps serving."""
    assert_dropped(trunk, gateway, data)


def test_tcp_malformed_message_answered_and_connection_kept(gateway: GatewayProcess) -> None:
    with SipClient(TRUNK_HOST, gateway.address, "tcp") as client:
        spec = invite(client, gateway)
        broken = mutate(spec.render(), b"CSeq: 1 INVITE", b"CSeq: 1 INVITE INVITE")
        reply = client.request(broken, spec.call_id)
        assert reply.status == 400 and "cseq" in reply.reason.lower(), reply.raw
        probe = options(client, gateway)
        assert client.request(probe.render(), probe.call_id).status == 200


def test_tcp_framing_error_closes_connection(gateway: GatewayProcess) -> None:
    """RFC 3261 18.3: on a stream, no Content-Length means no way to find the next message."""
    with SipClient(TRUNK_HOST, gateway.address, "tcp") as client:
        spec = invite(client, gateway, body=b"")
        client.send(mutate(spec.render(), b"Content-Length: 0\r\n", b""))
        assert client.closed_by_peer(timeout=5)
    assert_alive(gateway)


def _caller_dialog(uac: SippProcess, timeout: float = 5.0) -> tuple[str, str]:
    """(From tag, gateway's To tag) of the caller's answered dialog, from its trace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in received(uac, "SIP/2.0 200"):
            if message.header("CSeq")[0].endswith("INVITE"):
                from_tag = message.header("From")[0].split("tag=", 1)[1].split(";")[0]
                to_tag = message.header("To")[0].split("tag=", 1)[1].split(";")[0]
                return from_tag, to_tag
        time.sleep(0.05)
    raise AssertionError(f"caller saw no 200 for its INVITE\n{uac.result().describe()}")


def _burst(spec: RequestSpec, rng: random.Random) -> list[bytes]:
    """Malformed datagrams of every kind, many aimed at the live call's dialog.

    Truncated copies of ``spec`` end before its CSeq number: cut any later,
    they could be a whole, valid request (and end the call as they should).
    """
    good = spec.render()
    cut_limit = good.index(b"CSeq: ") + len(b"CSeq: 5")
    burst: list[bytes] = []
    for index in range(40):
        burst.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))))
        burst.append(good[: rng.randrange(1, cut_limit)])
        burst.append(_stray_response(spec.call_id))
        burst.append(mutate(good, b" SIP/2.0\r\n", f" SIP/{index + 3}.0\r\n".encode()))
        burst.append(b"SIP/2.0 180 Ringing\r\nCall-ID: " + spec.call_id.encode() + b"\r\n\r\n")
    return burst


def test_malformed_burst_does_not_disturb_call_in_progress(
    sipp_factory: SippFactory, gateway: GatewayProcess, trunk: SipClient
) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_bye", duration_ms=3000)
    live = wait_for_answered_call(gateway, before)
    from_tag, to_tag = _caller_dialog(uac)
    host, port = uac.address
    bye = RequestSpec(
        "BYE",
        gateway_uri(gateway),
        via_host=host,
        via_port=port,
        call_id=live["call_id"],
        from_uri=f"sip:{CALLING}@{host}:{port}",
        from_tag=from_tag,
        to_uri=f"sip:{CALLED}@{GATEWAY_HOST}:{gateway.sip_port}",
        to_tag=to_tag,
        cseq=50,
    )
    for data in _burst(bye, random.Random(7)):
        trunk.send(data)
    burst_replies = drain_until_probe(trunk, gateway)
    # the wrong versions get 505; a truncated copy that still has its headers gets 400
    statuses = {reply.status for reply in burst_replies}
    assert 505 in statuses and statuses <= {400, 505}, burst_replies

    # The live dialog's own identifiers in broken requests: answered 400, call untouched.
    broken_bye = mutate(bye.render(), b"Content-Length: 0", b"Content-Length: 800")
    reply = trunk.request(broken_bye, bye.call_id)
    assert reply.status == 400, reply.raw
    bad_cseq = replace(bye, branch=new_branch())
    reply = trunk.request(mutate(bad_cseq.render(), b"CSeq: 50 BYE", b"CSeq: 50"), bye.call_id)
    assert reply.status == 400, reply.raw
    # Right Call-ID, wrong tag: not this dialog (RFC 3261 12.2.2).
    wrong_tag = replace(bye, branch=new_branch(), to_tag="not" + to_tag)
    reply = trunk.request(wrong_tag.render(), bye.call_id)
    assert reply.status == 481, reply.raw

    with SipClient(TRUNK_HOST, gateway.address, "tcp") as stream:
        stream.send(b"INVITE sip:x@" + GATEWAY_HOST.encode() + b" SIP/2.0\r\nVia: nonsense\r\n\r\n")
        assert stream.closed_by_peer(timeout=5)

    assert gateway.process.poll() is None
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    assert_tone(uas.rtp, CALLER_TONE_HZ, minimum_packets=100)
    assert_tone(uac.rtp, CALLEE_TONE_HZ, minimum_packets=100)
    record = one_record(gateway, before)
    assert record["id"] == live["id"]
    assert_answered(record)
    assert record["billable_s"] >= 2.0, "the call was cut short"
    stats = record["media_stats"]
    assert stats["a"]["packets_in"] >= 100 and stats["b"]["packets_in"] >= 100, stats


def _fuzz(data: bytes, rng: random.Random) -> bytes:
    """Random byte flips: a few positions get a random byte or one bit inverted."""
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        position = rng.randrange(len(mutated))
        if rng.random() < 0.5:
            mutated[position] = rng.randrange(256)
        else:
            mutated[position] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def test_fuzz_burst_then_normal_call(
    sipp_factory: SippFactory, gateway: GatewayProcess, stranger: SipClient
) -> None:
    """Hundreds of byte-flipped INVITEs: each is refused or dropped, none becomes a call,
    and the gateway carries the next real call as usual.

    They come from an address no tenant knows, so an INVITE that survives its
    flips is refused (403) instead of ringing a PBX that is not there.
    """
    before = gateway.record_ids()
    rng = random.Random(FUZZ_SEED)
    statuses: Counter[int] = Counter()
    for batch in range(FUZZ_MESSAGES // FUZZ_BATCH):
        for index in range(FUZZ_BATCH):
            spec = invite(stranger, gateway, call_id=f"fuzz-{batch}-{index}-{uuid.uuid4().hex}")
            stranger.send(_fuzz(spec.render(), rng))
        for reply in drain_until_probe(stranger, gateway):
            if reply.status < 200:
                continue
            statuses[reply.status] += 1
            if (reply.first("cseq") or "").endswith("INVITE"):
                stranger.send(ack_from_reply(reply, gateway_uri(gateway)))
    assert statuses, "no fuzzed INVITE was answered at all"
    assert all(status >= 400 for status in statuses), f"a fuzzed INVITE was accepted: {statuses}"
    assert statuses[403] > 0 and statuses[400] > 0, statuses
    assert_alive(gateway)

    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_bye", duration_ms=500)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    record = one_record(gateway, before)
    assert_answered(record)
    assert gateway.record_ids() - before == {record["id"]}, "a fuzzed INVITE left a record"


# ----------------------------------------------------------------- 2. unknown sender


def test_invite_from_unknown_sender_gets_403_and_no_record(
    sipp_factory: SippFactory, gateway: GatewayProcess, stranger: SipClient
) -> None:
    before = gateway.record_ids()
    spec = invite(stranger, gateway)
    reply = stranger.request(spec.render(), spec.call_id)
    assert reply.status == 403, reply.raw
    assert_answers(reply, spec)
    stranger.send(spec.ack_for(reply))
    uas, barrier = busy_call(sipp_factory, gateway)
    assert gateway.record_ids() - before == {barrier["id"]}, "the refused INVITE left a record"
    assert len(received(uas, "INVITE ")) == 1, "the refused INVITE reached the PBX"


def gateway_metrics(gateway: GatewayProcess) -> dict[str, float]:
    """The gateway's unlabelled /metrics samples."""
    with urllib.request.urlopen(f"http://{GATEWAY_HOST}:{gateway.api_port}/metrics") as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            samples[name] = float(value)
    return samples


def send_while_stopped(gateway: GatewayProcess, client: SipClient, spec: RequestSpec) -> SipReply:
    """Send ``spec`` while the gateway process is stopped for OVERLOAD_WAIT_S (SIGSTOP), so
    the request waits that long in its socket's queue; the final reply to it."""
    os.kill(gateway.pid, signal.SIGSTOP)
    try:
        client.send(spec.render())
        time.sleep(OVERLOAD_WAIT_S)
    finally:
        os.kill(gateway.pid, signal.SIGCONT)
    return client.reply_to(spec.call_id)


@pytest.fixture
def stalled_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose overload control needs no run of late messages (sustain 0 s)."""
    process = start_gateway(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path}/calls.sqlite3", sip_toml=NO_SUSTAIN
    )
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_text()[-3000:]


def test_an_invite_that_waited_past_the_overload_limit_gets_503_and_no_record(
    sipp_factory: SippFactory, stalled_gateway: GatewayProcess
) -> None:
    """Overload control (RFC 6357 5.1, RFC 3261 21.5.4): an INVITE that waited longer than
    ``overload_lag_s`` (0.25 s by default) in the SIP socket's queue is refused with 503
    and Retry-After, before any routing, media or record; the next call goes through.

    The wait is real: the gateway process is stopped (SIGSTOP) while the INVITE arrives
    and continued after OVERLOAD_WAIT_S, so the kernel's arrival stamp is that old when
    the gateway reads it. By default a lone late message refuses nothing (it takes a
    run of them, ``overload_sustain_s``; see tests/unit/calls/test_overload.py); this
    gateway sets that to 0 so one held INVITE shows the whole path."""
    gateway = stalled_gateway
    with SipClient(TRUNK_HOST, gateway.address) as trunk:
        before = gateway.record_ids()
        shed_before = gateway_metrics(gateway)["callgate_calls_shed_total"]
        spec = invite(trunk, gateway)
        reply = send_while_stopped(gateway, trunk, spec)
        assert reply.status == 503 and reply.reason == "Overloaded", reply.raw
        assert reply.first("Retry-After") == "2", reply.raw
        assert_answers(reply, spec)
        trunk.send(spec.ack_for(reply))
    metrics = gateway_metrics(gateway)
    assert metrics["callgate_calls_shed_total"] == shed_before + 1
    assert metrics["callgate_sip_wait_max_seconds"] >= OVERLOAD_WAIT_S * 0.9
    uas, barrier = busy_call(sipp_factory, gateway)
    assert gateway.record_ids() - before == {barrier["id"]}, "the refused INVITE left a record"
    assert len(received(uas, "INVITE ")) == 1, "the refused INVITE reached the PBX"


def test_a_stall_of_the_gateway_refuses_no_call(
    sipp_factory: SippFactory, gateway: GatewayProcess, trunk: SipClient
) -> None:
    """A stall (the process stopped for OVERLOAD_WAIT_S, as a long collector pause would)
    leaves one late INVITE, not a run of late messages: with the default
    ``overload_sustain_s`` the call goes through (here to a PBX that answers 486)."""
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_busy")
    spec = invite(trunk, gateway)
    reply = send_while_stopped(gateway, trunk, spec)
    assert reply.status == 486, reply.raw
    trunk.send(spec.ack_for(reply))
    uas.assert_success(calls=1)
    assert one_record(gateway, before)["call_id"] == spec.call_id
    assert gateway_metrics(gateway)["callgate_sip_wait_max_seconds"] >= OVERLOAD_WAIT_S * 0.9


# ----------------------------------------------------------------- 3. Max-Forwards


def test_max_forwards_zero_gets_483(
    sipp_factory: SippFactory, gateway: GatewayProcess, trunk: SipClient
) -> None:
    """RFC 3261 16.3 step 3: no hops left, 483 Too Many Hops; no call is placed."""
    before = gateway.record_ids()
    spec = invite(trunk, gateway, max_forwards=0)
    reply = trunk.request(spec.render(), spec.call_id)
    assert reply.status == 483, reply.raw
    assert_answers(reply, spec)
    trunk.send(spec.ack_for(reply))
    _, barrier = busy_call(sipp_factory, gateway)
    assert gateway.record_ids() - before == {barrier["id"]}


def test_max_forwards_is_decremented(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    """RFC 3261 16.6 step 3: the INVITE leaves with one hop less than it came with."""
    uas, record = busy_call(sipp_factory, gateway, max_forwards=5)
    invites = received(uas, "INVITE ")
    assert len(invites) == 1
    assert invites[0].header("Max-Forwards") == ["4"]
    assert record["hangup_by"] == "callee"


# ----------------------------------------------------------------- 4. OPTIONS probe


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_probe_gets_200_with_allow(gateway: GatewayProcess, transport: str) -> None:
    """RFC 3261 11.2: OPTIONS outside a dialog is answered with the capabilities."""
    with SipClient(STRANGER_HOST, gateway.address, transport) as client:  # type: ignore[arg-type]
        spec = options(client, gateway)
        reply = client.request(spec.render(), spec.call_id)
    assert reply.status == 200, reply.raw
    assert_answers(reply, spec)
    assert reply.to_tag
    assert reply.listed("Allow") >= ALLOW_REQUIRED, reply.first("Allow")
    assert (reply.first("via") or "").startswith(f"SIP/2.0/{transport.upper()} ")


# ---------------------------------------------- 5. INFO, UPDATE and session timers


def test_info_update_and_session_timer_cross_the_call(
    sipp_factory: SippFactory, gateway: GatewayProcess
) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_info_update")
    uac = caller(sipp_factory, gateway, "uac_info_update", duration_ms=500)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)

    # Session timers (RFC 4028): the INVITE's and the 2xx's headers cross.
    first_invite, refresh = received(uas, "INVITE ")
    for request in (first_invite, refresh):
        assert request.header("Session-Expires") == ["1800;refresher=uac"], request.text
        assert "timer" in ",".join(request.header("Supported")), request.text
    assert first_invite.header("Min-SE") == ["90"]
    answers = [m for m in received(uac, "SIP/2.0 200") if m.header("CSeq")[0].endswith("INVITE")]
    assert len(answers) == 2, "the caller got a 200 for the INVITE and for the refresh"
    for answer in answers:
        assert answer.header("Session-Expires") == ["1800;refresher=uac"], answer.text
        assert "timer" in ",".join(answer.header("Require")), answer.text

    # INFO both ways, body intact (RFC 6086).
    (info_at_callee,) = received(uas, "INFO ")
    (info_at_caller,) = received(uac, "INFO ")
    for info, digit in ((info_at_callee, "5"), (info_at_caller, "7")):
        assert info.header("Content-Type") == ["application/dtmf-relay"], info.text
        body = info.text.split("\n\n", 1)[1].split()
        assert body == [f"Signal={digit}", "Duration=160"], info.text

    # UPDATE (RFC 3311): offer and answer re-anchored at the gateway's relay ports.
    (update,) = received(uas, "UPDATE ")
    (update_answer,) = [
        m for m in received(uac, "SIP/2.0 200") if m.header("CSeq")[0].endswith("UPDATE")
    ]
    assert sdp_lines(update, "c=") == ["c=IN IP4 127.0.0.1"], update.text
    assert sdp_lines(update_answer, "c=") == ["c=IN IP4 127.0.0.1"], update_answer.text
    b_relay_port = media_port(first_invite)
    assert media_port(update) == b_relay_port, "the callee's relay port moved"
    assert media_port(update_answer) == media_port(answers[0]), "the caller's relay port moved"
    assert b_relay_port != uac.rtp_address[1], "the caller's own port reached the callee"
    assert media_port(update_answer) != uas.rtp_address[1], "the callee's port reached the caller"

    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    assert_media_through_gateway(uas.rtp)
    assert_media_through_gateway(uac.rtp)
    record = one_record(gateway, before)
    assert_answered(record)


# ----------------------------------------------------------------- 6. unknown dialog


@pytest.mark.parametrize("method", ["BYE", "INFO"])
def test_request_for_unknown_dialog_gets_481(
    gateway: GatewayProcess, trunk: SipClient, method: str
) -> None:
    """RFC 3261 12.2.2: a request whose dialog does not exist gets 481."""
    spec = trunk.spec(
        method,
        gateway_uri(gateway),
        from_uri=f"sip:{CALLING}@{TRUNK_HOST}",
        to_uri=gateway_uri(gateway),
        to_tag=uuid.uuid4().hex[:12],
        cseq=7,
    )
    reply = trunk.request(spec.render(), spec.call_id)
    assert reply.status == 481, reply.raw
    assert_answers(reply, spec)


# ---------------------------------------------------------------- 7. TCP and IPv6


def test_tcp_caller_udp_callee(sipp_factory: SippFactory, gateway: GatewayProcess) -> None:
    before = gateway.record_ids()
    uas = callee(sipp_factory, gateway, "uas_answer_wait_bye")
    uac = caller(sipp_factory, gateway, "uac_call_bye", transport="tcp", duration_ms=1000)
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    (invite_at_callee,) = received(uas, "INVITE ")
    assert invite_at_callee.header("Via")[0].startswith("SIP/2.0/UDP "), invite_at_callee.text
    (answer,) = [m for m in received(uac, "SIP/2.0 200") if "INVITE" in m.header("CSeq")[0]]
    assert "transport=tcp" in answer.header("Contact")[0].lower(), answer.text
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    record = one_record(gateway, before)
    assert_answered(record)
    assert record["source_addr"].startswith(TRUNK_HOST + ":")
    assert record["destination_addr"] == f"{PBX_HOST}:{gateway.pbx_port}"


def contact_host(message: TracedMessage) -> str:
    """The host of the message's Contact URI (IPv6 literals keep their brackets)."""
    (contact,) = message.header("Contact")
    match = re.search(r"sips?:(?:[^@>;]*@)?(\[[0-9a-fA-F:.]+\]|[^:;>]+)", contact)
    assert match is not None, contact
    return match.group(1)


def require_ipv6(gateway: GatewayProcess) -> TenantPeers:
    tenant = gateway.extra.get("v6_tenant")
    if tenant is None:
        reason = "no IPv6 loopback (::1) on this machine"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return tenant


def test_ipv6_caller(sipp_factory: SippFactory, gateway: GatewayProcess, tmp_path: Path) -> None:
    """A caller on ::1 reaches the gateway's [::1] listener; its tenant is matched by the
    IPv6 sender address, and the call crosses to an IPv4 PBX."""
    tenant = require_ipv6(gateway)
    before = gateway.record_ids()
    uas = sipp_factory("uas_answer_wait_bye", local_ip=tenant.pbx[0], local_port=tenant.pbx[1])
    caller_port = free_dual_port(V6_HOST)
    uac = sipp_factory(
        "uac_call_bye",
        local_ip=V6_HOST,
        local_port=caller_port,
        media_ip=V6_CALLER_MEDIA_HOST,
        remote=(f"[{V6_HOST}]", gateway.sip_port),
        service=CALLED,
        caller=CALLING,
        duration_ms=1000,
    )
    uac.assert_success(calls=1)
    uas.assert_success(calls=1)
    # Each leg's Contact is where that peer can reach the gateway (RFC 3261 12.1.1):
    # an address of the peer's own family.
    (answer,) = [m for m in received(uac, "SIP/2.0 200") if "INVITE" in m.header("CSeq")[0]]
    assert contact_host(answer) == f"[{V6_HOST}]", answer.text
    (invite_at_callee,) = received(uas, "INVITE ")
    assert contact_host(invite_at_callee) == GATEWAY_HOST, invite_at_callee.text
    assert_tone(uas.rtp, CALLER_TONE_HZ)
    assert_tone(uac.rtp, CALLEE_TONE_HZ)
    record = one_record(gateway, before)
    assert_answered(record)
    assert record["tenant"] == "acme-v6"
    assert record["direction"] == "inbound"
    assert record["source_addr"] == f"[{V6_HOST}]:{caller_port}", record["source_addr"]
    assert record["destination_addr"] == f"{tenant.pbx[0]}:{tenant.pbx[1]}"


# ------------------------------------------------------------ 8. a 2xx crossing a CANCEL


def _answer(request: SipRequest, status: int, to_tag: str, pbx: SipClient) -> bytes:
    response = make_response(request, status, to_tag=to_tag)
    if status == 200 and request.method == "INVITE":
        host, port = pbx.local_address
        response.headers.set("Contact", f"<sip:pbx@{host}:{port}>")
        response.headers.set("Content-Type", "application/sdp")
        response.body = sdp_offer(host, 40010)
    return bytes(response)


def _next_request(client: SipClient, method: str) -> SipRequest:
    """The next request ``method`` the gateway sends ``client`` (retransmissions skipped)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = client.receive(timeout=max(0.0, deadline - time.monotonic()))
        assert data is not None, f"no {method} from the gateway"
        message = parse_message(data)
        if isinstance(message, SipRequest) and message.method == method:
            return message
    raise AssertionError(f"no {method} from the gateway within 5 s")


def _ringing(
    gateway: GatewayProcess, trunk: SipClient, pbx: SipClient, tag: str
) -> tuple[RequestSpec, SipRequest]:
    """A call from the trunk that rings at ``pbx`` (180 with To tag ``tag``): the caller's
    INVITE and the one the gateway sent the callee."""
    spec = invite(trunk, gateway)
    trunk.send(spec.render())
    b_invite = _next_request(pbx, "INVITE")
    pbx.send(_answer(b_invite, 180, tag, pbx))
    return spec, b_invite


def test_a_2xx_that_crossed_the_cancel_is_acked_and_ended(
    gateway: GatewayProcess, trunk: SipClient
) -> None:
    """RFC 3261 9.1: the callee answers 200 just as our CANCEL reaches it. The call has
    ended (the caller cancelled); the gateway must still confirm that dialog with an ACK
    and end it with a BYE, or the callee's phone stays off-hook."""
    before = gateway.record_ids()
    with SipClient(PBX_HOST, gateway.address, local_port=gateway.pbx_port) as pbx:
        spec, b_invite = _ringing(gateway, trunk, pbx, "pbx-leg")
        assert trunk.reply_to(spec.call_id, final=False).status in (100, 180)
        cancel = replace(spec, method="CANCEL", body=b"", content_type=None)
        trunk.send(cancel.render())
        b_cancel = _next_request(pbx, "CANCEL")
        pbx.send(_answer(b_cancel, 200, "pbx-leg", pbx))
        pbx.send(_answer(b_invite, 200, "pbx-leg", pbx))  # crossed the CANCEL
        ack = _next_request(pbx, "ACK")
        assert ack.to.tag == "pbx-leg" and ack.cseq.seq == b_invite.cseq.seq
        bye = _next_request(pbx, "BYE")
        assert bye.to.tag == "pbx-leg" and bye.call_id == b_invite.call_id
        pbx.send(_answer(bye, 200, "pbx-leg", pbx))
        finals = [
            reply
            for reply in (parse_reply(data) for data in iter(lambda: trunk.receive(1.0), None))
            if reply.status >= 200
        ]
        invite_final = [r for r in finals if r.first("cseq") == f"{spec.cseq} INVITE"]
        assert invite_final and invite_final[0].status == 487, finals
        trunk.send(spec.ack_for(invite_final[0]))
    record = one_record(gateway, before)
    assert record["disposition"] == "cancelled", record
    assert_alive(gateway)


def test_a_callee_bye_on_an_early_dialog_cancels_its_invite(
    gateway: GatewayProcess, trunk: SipClient
) -> None:
    """RFC 3261 15: a callee may not BYE an early dialog. The gateway takes it as a refusal
    (480 to the caller) and CANCELs the callee's INVITE, which would otherwise ring on."""
    before = gateway.record_ids()
    with SipClient(PBX_HOST, gateway.address, local_port=gateway.pbx_port) as pbx:
        spec, b_invite = _ringing(gateway, trunk, pbx, "pbx-early")
        host, port = pbx.local_address
        bye = (
            f"BYE {b_invite.contacts[0].uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()}\r\n"
            f"From: {b_invite.headers.get('To')};tag=pbx-early\r\n"
            f"To: {b_invite.headers.get('From')}\r\n"
            f"Call-ID: {b_invite.call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        pbx.send(bye)
        cancel = _next_request(pbx, "CANCEL")
        assert cancel.top_via.branch == b_invite.top_via.branch  # RFC 3261 9.1
        assert cancel.cseq.seq == b_invite.cseq.seq
        pbx.send(_answer(cancel, 200, "pbx-early", pbx))
        pbx.send(_answer(b_invite, 487, "pbx-early", pbx))
        assert _next_request(pbx, "ACK").to.tag == "pbx-early"
        final = trunk.reply_to(spec.call_id)
        assert final.status == 480, final.raw
        trunk.send(spec.ack_for(final))
    record = one_record(gateway, before)
    assert record["disposition"] == "failed" and record["hangup_by"] == "callee", record


def test_a_cancel_goes_to_a_callee_that_only_sent_100_trying(
    gateway: GatewayProcess, trunk: SipClient
) -> None:
    """RFC 3261 9.1: a CANCEL waits for a provisional response, and 100 Trying is one."""
    before = gateway.record_ids()
    with SipClient(PBX_HOST, gateway.address, local_port=gateway.pbx_port) as pbx:
        spec = invite(trunk, gateway)
        trunk.send(spec.render())
        b_invite = _next_request(pbx, "INVITE")
        pbx.send(bytes(make_response(b_invite, 100)))
        trunk.send(replace(spec, method="CANCEL", body=b"", content_type=None).render())
        cancel = _next_request(pbx, "CANCEL")
        assert cancel.top_via.branch == b_invite.top_via.branch
        pbx.send(_answer(cancel, 200, "pbx-trying", pbx))
        pbx.send(_answer(b_invite, 487, "pbx-trying", pbx))
        assert _next_request(pbx, "ACK").to.tag == "pbx-trying"
        final = trunk.reply_to(spec.call_id)
        if final.first("cseq") == f"{spec.cseq} CANCEL":  # the CANCEL's 200 may come first
            final = trunk.reply_to(spec.call_id)
        assert final.status == 487 and final.first("cseq") == f"{spec.cseq} INVITE", final.raw
        trunk.send(spec.ack_for(final))
    record = one_record(gateway, before)
    assert record["disposition"] == "cancelled", record
