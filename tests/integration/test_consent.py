"""Notices, consent and the capture gate, end to end through the real gateway.

One gateway (``callgate run``) per store backend; the example tenant's rules
are chosen by the caller's area code, so one module runs every mode at once:

=========  ===============  =====================================================
caller     jurisdiction     tenant override
=========  ===============  =====================================================
+1 212     US-NY            none: the shipped US rule, notice, one party
+1 512     US-TX            opt_out, one party
+1 404     US-GA            opt_in, one party
+1 614     US-OH            none (never capture)
+1 303     US-CO            notice, all parties
+1 602     US-AZ            opt_in, all parties
=========  ===============  =====================================================

Calls go trunk (caller, the external party) -> PBX (callee, the tenant's
agent). Marker audio proves the invariant: the caller sends a 1 kHz tone
before consent and a 2 kHz tone after; the recording must hold no 1 kHz
energy and must hold the 2 kHz tone. The callee sends 1.5 kHz throughout.
The notices are short synthetic sweeps so the module runs in seconds; the
shipped notices are played by ``callgate demo`` (see test_demo.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from dsp import g711
from dsp.dtmf import detect_dtmf
from dsp.wav import read_wav, write_wav
from gateway.demo import AnswerMode, AudioScript, Digit, Hangup, Phone, PhoneCall, Tone
from gateway.store.engine import make_engine
from gateway.store.queries import get_call, latest_calls
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    TenantPeers,
    free_port,
    gateway_on_backend,
)

RATE = 8000
NOTICE_S = 1.5
WINDOW_S = 2.0
CALLEE_TONE = 1500.0

CONSENT = f"""home = "US-NY"
consent_timeout_s = {WINDOW_S}

[tenants.consent.overrides]
"US-TX" = {{ mode = "opt_out", parties = "one" }}
"US-GA" = {{ mode = "opt_in", parties = "one" }}
"US-OH" = {{ mode = "none" }}
"US-CO" = {{ mode = "notice", parties = "all" }}
"US-AZ" = {{ mode = "opt_in", parties = "all" }}

[tenants.consent.notices.en]
notice = "notices/notice.wav"
opt_out = "notices/opt_out.wav"
opt_in = "notices/opt_in.wav"
"""

_numbers = itertools.count(100)


def sweep(low: float, high: float, seconds: float = NOTICE_S) -> npt.NDArray[np.int16]:
    """A linear frequency sweep: easy to find by correlation, unlike any marker tone."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (low * t + (high - low) * t * t / (2 * seconds))
    return (np.sin(phase) * 10000).astype(np.int16)


NOTICES = {"notice": sweep(300, 700), "opt_out": sweep(700, 300), "opt_in": sweep(400, 900)}


def write_notices(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for kind, pcm in NOTICES.items():
        write_wav(directory / f"{kind}.wav", pcm, RATE)


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(f"consent-{request.param}")
    write_notices(tmp / "notices")
    with gateway_on_backend(request.param, tmp, consent=CONSENT) as process:
        yield process


def energy(pcm: npt.NDArray[np.int16], frequency: float) -> float:
    """Mean power at ``frequency`` per sample (Goertzel over the whole signal)."""
    if len(pcm) == 0:
        return 0.0
    x = pcm.astype(np.float64)
    n = np.arange(len(x))
    c = np.dot(x, np.cos(2 * np.pi * frequency * n / RATE))
    s = np.dot(x, np.sin(2 * np.pi * frequency * n / RATE))
    return float((c * c + s * s) * 2 / len(x) ** 2)


TONE_POWER = (10000 * 10 ** (-12 / 20) * 1.0) ** 2 / 2 * 0.3
"""A -12 dBFS tone's power (with margin): what "holds the tone" means below."""


@dataclass
class Outcome:
    """One finished call: what the store says and what was recorded."""

    record: dict[str, Any]
    recording: npt.NDArray[np.int16] | None  # (frames, 2): caller left, callee right
    caller: PhoneCall
    callee: PhoneCall | None

    def states(self) -> list[tuple[str, str, str]]:
        return [(e["party"], e["state"], e["method"]) for e in self.record["consent_events"]]


def caller_number(area: str) -> str:
    return f"+1{area}555{next(_numbers):04d}"


@dataclass
class Spec:
    """One call to place: the caller's area code and script, and what to do during it."""

    area: str
    script: AudioScript
    during: Any = None


async def place(
    gateway: GatewayProcess, trunk: Phone, pbx: Phone, spec: Spec, timeout: float = 25.0
) -> Outcome:
    """One call trunk -> gateway -> PBX with the caller's script; waits for its record."""
    number = caller_number(spec.area)
    call = await trunk.call(
        (GATEWAY_HOST, gateway.sip_port),
        to_user="+12125550100",
        from_user=number,
        script=spec.script,
    )
    callee = await incoming_from(pbx, number)
    if spec.during is not None:
        await spec.during(call, callee)
    await asyncio.wait_for(call.ended, timeout)
    record = await wait_for_record(gateway, number)
    recording = None
    if record["recordings"]:
        path = Path(record["recordings"][0]["path"])
        samples, rate = read_wav(path.read_bytes())
        assert rate == RATE and samples.shape[1] == 2
        recording = samples
    return Outcome(record, recording, call, callee)


async def incoming_from(pbx: Phone, number: str, timeout: float = 10.0) -> PhoneCall:
    """The call the PBX received from ``number`` (several arrive at once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for call in pbx.incoming:
            if call.invite.from_.uri.user == number:
                return call
        await asyncio.sleep(0.02)
    raise AssertionError(f"the PBX got no call from {number}")


async def wait_for_record(gateway: GatewayProcess, number: str) -> dict[str, Any]:
    """The closed record of the call from ``number``, with its trail and recordings."""
    engine = make_engine(gateway.db_url)
    try:
        for _ in range(200):
            rows = [r for r in await latest_calls(engine, 200) if r["source_number"] == number]
            if rows and rows[0]["ended_at"] is not None:
                found = await get_call(engine, record_id=rows[0]["id"])
                assert found is not None
                # a call that captured anything lists its recording a moment after it
                # closes, whatever its outcome (withdrawn too): wait for it then
                if not found.get("capture_s") or found["recordings"]:
                    return found
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    raise AssertionError(f"no closed record for {number}\n{gateway.log_text()[-3000:]}")


def run(
    gateway: GatewayProcess, *specs: Spec, callee_script: AudioScript | None = None
) -> list[Outcome]:
    """Place every call at once, through one trunk phone and one PBX phone."""

    async def main() -> list[Outcome]:
        async with (
            Phone(TRUNK_HOST, 0, name="caller") as trunk,
            Phone(PBX_HOST, gateway.pbx_port, name="agent") as pbx,
        ):
            pbx.answer_mode = AnswerMode(
                ring_s=0.1,
                script=callee_script or AudioScript([Tone(CALLEE_TONE, start=0.0, duration=30.0)]),
            )
            calls = [place(gateway, trunk, pbx, spec) for spec in specs]
            return list(await asyncio.gather(*calls))

    return asyncio.run(main())


def recording_files(root: Path) -> Iterator[Path]:
    return root.rglob("*.wav*")


# ---------------------------------------------------------------------------- tests


def test_every_mode_captures_only_after_consent(gateway: GatewayProcess) -> None:
    """Notice, opt-out (window passes), opt-in (digit), none: 1 kHz never, 2 kHz after consent."""
    notice, opt_out, opt_in, never = run(
        gateway,
        Spec(
            "212",
            AudioScript([Tone(1000, 0.0, 1.2), Tone(2000, 2.2, 1.5), Hangup(4.2)]),
        ),
        Spec(
            "512",
            AudioScript([Tone(1000, 0.0, 3.2), Tone(2000, 4.3, 1.5), Hangup(6.3)]),
        ),
        Spec(
            "404",
            AudioScript([Tone(1000, 0.0, 2.0), Digit("1", 2.2), Tone(2000, 2.8, 1.5), Hangup(4.8)]),
        ),
        Spec(
            "614",
            AudioScript([Tone(1000, 0.0, 1.0), Tone(2000, 1.5, 1.5), Hangup(3.5)]),
        ),
    )
    for outcome, mode in ((notice, "notice"), (opt_out, "opt_out"), (opt_in, "opt_in")):
        record = outcome.record
        assert record["consent_mode"] == mode
        assert record["consent_parties"] == "one"
        assert record["consent_outcome"] == "granted", outcome.states()
        assert outcome.recording is not None
        left, right = outcome.recording[:, 0], outcome.recording[:, 1]
        assert energy(left, 1000) < TONE_POWER / 1000, mode  # nothing before consent
        assert energy(left, 2000) > TONE_POWER / 4, mode  # everything after
        assert energy(right, CALLEE_TONE) > TONE_POWER / 4, mode  # the agent, by policy
        assert record["capture_s"] > 1.0
        assert record["recordings"][0]["sha256"]
        assert record["policy_version"].startswith("p-")
        assert record["notice_sha256"]
    assert notice.states() == [
        ("caller", "pending", "policy"),
        ("callee", "granted", "policy"),
        ("caller", "notified", "notice"),
        ("caller", "granted", "implied"),
    ]
    assert opt_out.states()[-1] == ("caller", "granted", "timeout")
    assert opt_in.states()[-1][1:] == ("granted", "digit")
    assert opt_in.record["consent_events"][-1]["digit"] == "1"
    assert never.record["consent_mode"] == "none"
    assert never.record["consent_outcome"] == "none"
    assert never.recording is None and never.record["consent_events"] == []
    # the caller of the "none" call heard no notice: the agent's tone from the start
    # on the sender's RTP timeline: placement by arrival leaves seams when the loop jitters
    (_, heard), *others = sorted(streams(never.caller.received_packets), key=lambda s: s[0])
    assert not others, "the caller of the 'none' call got a second stream (a notice?)"
    assert energy(heard[: int(0.8 * RATE)], CALLEE_TONE) > TONE_POWER / 4


def test_decline_timeout_and_withdrawal(gateway: GatewayProcess) -> None:
    declined, timed_out, withdrawn = run(
        gateway,
        Spec(
            "512",
            AudioScript([Tone(1000, 0.0, 1.4), Digit("9", 1.6), Tone(2000, 2.0, 4.0), Hangup(6.5)]),
        ),
        Spec("404", AudioScript([Tone(2000, 0.0, 5.0), Hangup(5.5)])),
        Spec(
            "404",
            AudioScript(
                [
                    Digit("1", 1.7),
                    Tone(2000, 2.2, 1.5),
                    Digit("7", 4.0),
                    Tone(1000, 4.5, 1.5),
                    Hangup(6.5),
                ]
            ),
        ),
    )
    assert declined.record["consent_outcome"] == "declined"
    assert declined.states()[-1] == ("caller", "declined", "digit")
    assert declined.recording is None
    assert timed_out.record["consent_outcome"] == "timed_out"
    assert timed_out.states()[-1] == ("caller", "timed_out", "timeout")
    assert timed_out.recording is None
    # on_timeout = "continue": the call went on to the caller's hangup
    assert timed_out.record["hangup_by"] == "caller"
    assert withdrawn.record["consent_outcome"] == "withdrawn"
    assert withdrawn.recording is not None
    left = withdrawn.recording[:, 0]
    assert energy(left, 2000) > TONE_POWER / 4
    assert energy(left, 1000) < TONE_POWER / 1000  # after the withdrawal nothing is kept
    assert not any(path.suffix == ".part" for path in recording_files(gateway.config_path.parent))


def test_pause_and_resume_from_the_pbx_leave_silence_of_the_right_length(
    gateway: GatewayProcess,
) -> None:
    async def pause_then_resume(caller: PhoneCall, callee: PhoneCall) -> None:
        await asyncio.wait_for(caller.answered, 10)
        await asyncio.sleep(3.0 - (asyncio.get_running_loop().time() - caller.answered_at))
        assert await callee.send_info({"X-Callgate-Capture": "pause"}) == 200
        await asyncio.sleep(1.5)
        assert await callee.send_info({"X-Callgate-Capture": "resume"}) == 200
        # the external party may not control capture
        assert await caller.send_info({"X-Callgate-Capture": "resume"}) == 403

    [paused] = run(
        gateway,
        Spec(
            "212",
            AudioScript(
                [Tone(2000, 1.8, 1.1), Tone(1000, 3.2, 1.0), Tone(2000, 4.6, 1.2), Hangup(6.2)]
            ),
            during=pause_then_resume,
        ),
        callee_script=AudioScript(),
    )
    assert paused.record["consent_outcome"] == "granted"
    states = [(party, state) for party, state, _ in paused.states()]
    assert ("call", "paused") in states and states[-1] == ("call", "granted")
    assert paused.recording is not None
    left = paused.recording[:, 0]
    assert energy(left, 1000) < TONE_POWER / 1000
    assert energy(left, 2000) > TONE_POWER / 4
    # the longest silent stretch inside the recording is the pause: 1.5 s (+- 0.25)
    loud = np.flatnonzero(np.abs(left.astype(np.int32)) > 500)
    quiet = np.abs(left[loud[0] : loud[-1]].astype(np.int32)) <= 500
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    longest = int((edges[1::2] - edges[::2]).max()) / RATE
    assert 1.25 < longest < 1.75, longest


def test_all_party_rules_need_every_party(gateway: GatewayProcess) -> None:
    both, only_caller = run(
        gateway,
        Spec(
            "303",
            AudioScript([Tone(1000, 0.0, 1.2), Tone(2000, 2.0, 1.5), Hangup(4.0)]),
        ),
        Spec(
            "602",
            AudioScript([Digit("1", 1.7), Tone(2000, 2.0, 3.5), Hangup(5.8)]),
        ),
    )
    # notice to all: both parties were told, both consented by staying on
    assert both.record["consent_parties"] == "all"
    assert both.record["consent_outcome"] == "granted"
    told = {party for party, state, _ in both.states() if state == "notified"}
    assert told == {"caller", "callee"}
    assert both.recording is not None
    assert energy(both.recording[:, 0], 1000) < TONE_POWER / 1000
    assert energy(both.recording[:, 0], 2000) > TONE_POWER / 4
    assert energy(both.recording[:, 1], CALLEE_TONE) > TONE_POWER / 4
    # opt-in for all: the caller pressed 1, the agent never did: nothing is captured
    assert only_caller.record["consent_outcome"] == "timed_out"
    assert ("caller", "granted", "digit") in only_caller.states()
    assert ("callee", "timed_out", "timeout") in only_caller.states()
    assert only_caller.recording is None


def test_the_notice_is_heard_at_answer(gateway: GatewayProcess) -> None:
    """Both parties of an all-party call hear the notice, starting at the answer."""
    [told] = run(gateway, Spec("303", AudioScript([Hangup(3.0)])))
    notice = NOTICES["notice"].astype(np.float64)
    for call in (told.caller, told.callee):
        assert call is not None and call.answered_at is not None
        found = [
            (best_match(pcm, notice)[1], first) for first, pcm in streams(call.received_packets)
        ]
        score, first_arrival = max(found)
        assert score > 0.95, found
        # the notice starts right at the answer, not later
        assert -0.2 < first_arrival - call.answered_at < 0.5


def streams(
    packets: list[tuple[float, Any]],
) -> list[tuple[float, npt.NDArray[np.float64]]]:
    """Per SSRC: the first packet's arrival, and the audio placed by RTP timestamp."""
    by_ssrc: dict[int, list[tuple[float, Any]]] = {}
    for arrival, packet in packets:
        if packet.payload_type in (0, 8):
            by_ssrc.setdefault(packet.ssrc, []).append((arrival, packet))
    found = []
    for received in by_ssrc.values():
        base = received[0][1].timestamp
        end = max((p.timestamp - base) % 2**32 + len(p.payload) for _, p in received)
        audio = np.zeros(end)
        for _, packet in received:
            at = (packet.timestamp - base) % 2**32
            audio[at : at + len(packet.payload)] = g711.decode(packet.payload, packet.payload_type)
        found.append((received[0][0], audio))
    return found


def best_match(
    heard: npt.NDArray[np.float64], wanted: npt.NDArray[np.float64]
) -> tuple[int, float]:
    """(lag, normalised correlation) of ``wanted`` where it fits ``heard`` best."""
    if len(heard) < len(wanted):
        return 0, 0.0
    size = 1 << int(np.ceil(np.log2(len(heard) + len(wanted))))
    correlation = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(wanted, size)), size)
    correlation = correlation[: len(heard) - len(wanted) + 1]
    lag = int(np.argmax(correlation))
    window = heard[lag : lag + len(wanted)]
    norm = np.linalg.norm(window) * np.linalg.norm(wanted)
    return lag, float(correlation[lag] / norm) if norm else 0.0


def test_dtmf_paths_and_masking(gateway: GatewayProcess) -> None:
    """Consent by SIP INFO and by an in-band tone; a later in-band press is masked."""
    by_info, by_tone = run(
        gateway,
        Spec(
            "404",
            AudioScript([Digit("1", 1.8, method="info"), Tone(2000, 2.3, 1.5), Hangup(4.3)]),
        ),
        Spec(
            "404",
            AudioScript(
                [
                    Digit("1", 1.8, method="inband"),
                    Tone(2000, 2.4, 2.0),
                    Digit("5", 3.2, method="inband"),
                    Hangup(4.9),
                ]
            ),
        ),
    )
    assert by_info.states()[-1] == ("caller", "granted", "info")
    assert by_tone.states()[-1] == ("caller", "granted", "digit")
    for outcome in (by_info, by_tone):
        assert outcome.recording is not None
        assert energy(outcome.recording[:, 0], 2000) > TONE_POWER / 4
    # the key press inside the recorded stretch is silence in the recording
    assert detect_dtmf(np.ascontiguousarray(by_tone.recording[:, 0])) == []  # type: ignore[index]
    left = by_tone.recording[:, 0]  # type: ignore[index]
    assert (np.abs(left) < 50).sum() > int(0.1 * RATE)


# ------------------------------------------------- early notices, timeout hang-up

EARLY_PBX = "127.0.0.6"
EARLY_TRUNK = "127.0.0.7"
EARLY_CONSENT = f"""home = "US-NY"
notice_timing = "early"
consent_timeout_s = {WINDOW_S}
on_timeout = "hangup"

[tenants.consent.overrides]
"US-GA" = {{ mode = "opt_in", parties = "one" }}

[tenants.consent.beep]
interval_s = 1.0
frequency_hz = 1400
duration_ms = 200

[tenants.consent.notices.en]
notice = "notices/notice.wav"
opt_out = "notices/opt_out.wav"
opt_in = "notices/opt_in.wav"
"""


@pytest.fixture(scope="module")
def early_gateway(tmp_path_factory: pytest.TempPathFactory):
    """A gateway whose second tenant, "early", tells the caller before the callee rings."""
    tmp = tmp_path_factory.mktemp("consent-early")
    write_notices(tmp / "notices")
    tenant = TenantPeers(
        "early",
        pbx=(EARLY_PBX, free_port(EARLY_PBX)),
        trunk=(EARLY_TRUNK, free_port(EARLY_TRUNK)),
        consent=EARLY_CONSENT,
    )
    with gateway_on_backend("sqlite", tmp, extra_tenants=[tenant]) as process:
        process.extra["tenant"] = tenant
        yield process


def run_early(gateway: GatewayProcess, *specs: Spec) -> list[tuple[Outcome, float]]:
    """Like :func:`run` for the "early" tenant; also when each call reached the PBX."""
    tenant: TenantPeers = gateway.extra["tenant"]

    async def one(trunk: Phone, pbx: Phone, spec: Spec) -> tuple[Outcome, float]:
        number = caller_number(spec.area)
        call = await trunk.call(
            (GATEWAY_HOST, gateway.sip_port),
            to_user="+12125550100",
            from_user=number,
            script=spec.script,
        )
        callee = await incoming_from(pbx, number)
        rang_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(call.ended, 25)
        record = await wait_for_record(gateway, number)
        return Outcome(record, None, call, callee), rang_at

    async def main() -> list[tuple[Outcome, float]]:
        async with (
            Phone(EARLY_TRUNK, 0, name="caller") as trunk,
            Phone(EARLY_PBX, tenant.pbx[1], name="agent") as pbx,
        ):
            pbx.answer_mode = AnswerMode(
                ring_s=0.1, script=AudioScript([Tone(CALLEE_TONE, start=0.0, duration=30.0)])
            )
            return list(await asyncio.gather(*(one(trunk, pbx, spec) for spec in specs)))

    return asyncio.run(main())


def test_early_notice_plays_before_the_callee_rings(early_gateway: GatewayProcess) -> None:
    [(told, rang_at)] = run_early(
        early_gateway, Spec("212", AudioScript([Tone(2000, 2.5, 1.0), Hangup(4.5)]))
    )
    caller = told.caller
    assert 183 in caller.progress and caller.media_t0 is not None
    # the caller hears the notice as early media from the 183 on ...
    score, first_arrival = max(
        (best_match(pcm, NOTICES["notice"].astype(np.float64))[1], first)
        for first, pcm in streams(caller.received_packets)
    )
    assert score > 0.95
    assert first_arrival - caller.media_t0 < 0.5
    # ... and only once it has ended does the callee's phone ring
    assert rang_at - first_arrival > NOTICE_S - 0.1
    assert told.record["consent_outcome"] == "granted"
    assert told.record["disposition"] == "answered"
    # while capture runs, both parties hear the periodic beep (1400 Hz every second)
    for party in (told.caller, told.callee):
        assert party is not None
        beeps = [pcm for _, pcm in streams(party.received_packets) if len(pcm) < RATE // 2]
        assert beeps, "no beep"
        assert all(energy(pcm.astype(np.int16), 1400) > TONE_POWER / 4 for pcm in beeps)


def test_opt_in_timeout_can_end_the_call(early_gateway: GatewayProcess) -> None:
    [(ended, _)] = run_early(
        early_gateway, Spec("404", AudioScript([Tone(1000, 0.0, 8.0), Hangup(9.0)]))
    )
    record = ended.record
    assert record["consent_outcome"] == "timed_out"
    assert record["hangup_by"] == "gateway"
    assert "no recording consent" in record["end_reason"]
    assert ended.caller.ended.result() == "bye-received"
    assert record["duration_s"] < 6.0


def test_consent_the_pbx_collected_is_taken_from_its_header(gateway: GatewayProcess) -> None:
    """An outbound call: the PBX's IVR got the callee's consent and says so on the INVITE."""

    async def main() -> dict[str, Any]:
        async with (
            Phone(PBX_HOST, 0, name="agent") as pbx,
            Phone(TRUNK_HOST, gateway.trunk_port, name="customer") as trunk,
        ):
            trunk.answer_mode = AnswerMode(ring_s=0.1, script=AudioScript([Tone(2000, 0.0, 2.0)]))
            number = caller_number("404")  # the external party: opt-in
            call = await pbx.call(
                (GATEWAY_HOST, gateway.sip_port),
                to_user=number,
                from_user="+12125550100",
                script=AudioScript([Hangup(2.5)]),
                headers={"X-Callgate-Consent": "callee"},
            )
            await asyncio.wait_for(call.ended, 15)
            engine = make_engine(gateway.db_url)
            try:
                for _ in range(100):
                    rows = await latest_calls(engine, 200)
                    rows = [r for r in rows if r["destination_number"] == number]
                    if rows and rows[0]["ended_at"] is not None:
                        found = await get_call(engine, record_id=rows[0]["id"])
                        if found and found["recordings"]:
                            return found
                    await asyncio.sleep(0.1)
            finally:
                await engine.dispose()
            raise AssertionError("no record with a recording")

    record = asyncio.run(main())
    assert record["direction"] == "outbound"
    states = [(e["party"], e["state"], e["method"]) for e in record["consent_events"]]
    assert ("callee", "granted", "header") in states
    assert not any(state == "notified" for _, state, _ in states)  # no notice needed
    samples, _ = read_wav(Path(record["recordings"][0]["path"]).read_bytes())
    assert energy(samples[:, 1], 2000) > TONE_POWER / 4
