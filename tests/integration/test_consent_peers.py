"""Consent against third-party SIP peers: sipp presses keys, baresip hears the notice.

The gateway (``callgate run``, once per store backend) gives the example
tenant a policy chosen by the caller's area code, as in test_consent.py:

=========  ============  ===========================================
caller     jurisdiction  tenant override
=========  ============  ===========================================
+1 404     US-GA         opt_in, one party (press 1 to be recorded)
+1 512     US-TX         opt_out, one party (press 9 to refuse)
+1 303     US-CO         notice, all parties
=========  ============  ===========================================

The callee, on the PBX address, is the agent in New York (+1 212).

sipp's key press is an RFC 4733 telephone-event (section 2.3) replayed from
``media/dtmf_<digit>_rfc4733.pcap`` by ``play_pcap_audio``, on the same RTP
port as its audio but under an SSRC of its own, as a capture would hold it.
Marker tones prove the capture invariant: the caller's 440 Hz before the key
press must not be in the recording, its 2 kHz after the press must be.

baresip is the caller of an all-party notice call; its ``sndfile`` dump of
what it decoded must hold the notice, found by normalised cross-correlation
(FFT). The dump holds decoded packets back to back, not a wall clock: its
first sample is the first packet the phone decoded. The notice starts at the
answer and takes over the phone's stream, so it must be the first thing in
the dump; the callee (sipp) keeps arrival times, so its notice is also timed
against the 200 OK it sent.

The phone's copy is checked in 100 ms pieces, each at its own place after the
first, not only as a whole: the notice player sends under an SSRC of its own
and the relayed party's stream follows under another (RFC 3550 section 8.2).
baresip 1.0 flushes its receive jitter buffer when the SSRC changes ("SSRC
changed" in its log), so the packets it was holding, the notice's last 100 ms
at its default ``jitter_buffer_delay`` of 5-10 frames, are never decoded.
Every piece before that tail (at most the buffer's 200 ms) must be there, in
order and without gaps, and the notice up to it must correlate as a whole.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from dsp import g711
from dsp.wav import read_wav, write_wav
from gateway.store.engine import make_engine
from gateway.store.queries import get_call, latest_calls
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    gateway_on_backend,
)
from tests.support.peers import BaresipFactory, SippFactory
from tests.support.rtp import PT_PCMA, PT_PCMU, ReceivedRtp
from tests.support.sipp import SippProcess

RATE = 8000
FRAME = 160
"""20 ms at 8 kHz: one RTP packet of G.711, the unit the markers are checked in."""
NOTICE_S = 1.2
WINDOW_S = 2.0
PRESS_AFTER_MS = 1700
"""When sipp presses its key, from its ACK: the notice's length and half a second."""
AGENT = "+12125550100"
AGENT_AFTER_PRESS_FRAMES = round((3.0 - PRESS_AFTER_MS / 1000 + 0.2) * RATE / FRAME)
"""The most of the agent's 3 s tone (from the answer) a recording may hold when capture
starts at the key press: more would be audio from before consent."""
MARKER_AMPLITUDE = 0.3 * 32767
"""The pcap tones' amplitude (make_media.py, TONE_AMPLITUDE)."""
PRESENT = MARKER_AMPLITUDE / 2
ABSENT = MARKER_AMPLITUDE / 20
NOTICE_MATCH = 0.9
PIECE = 800
"""100 ms at 8 kHz: the pieces the phone's copy of the notice is checked in."""
JITTER_TAIL = int(0.2 * RATE)
"""The most of a notice's end a phone's jitter buffer may drop at the SSRC change."""

CONSENT = f"""home = "US-NY"
consent_timeout_s = {WINDOW_S}

[tenants.consent.overrides]
"US-TX" = {{ mode = "opt_out", parties = "one" }}
"US-GA" = {{ mode = "opt_in", parties = "one" }}
"US-CO" = {{ mode = "notice", parties = "all" }}

[tenants.consent.notices.en]
notice = "notices/notice.wav"
opt_out = "notices/opt_out.wav"
opt_in = "notices/opt_in.wav"
"""

_numbers = itertools.count(100)


def sweep(low: float, high: float, seconds: float = NOTICE_S) -> npt.NDArray[np.int16]:
    """A linear frequency sweep: one sharp correlation peak, unlike any marker tone."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (low * t + (high - low) * t * t / (2 * seconds))
    return (np.sin(phase) * 10000).astype(np.int16)


NOTICES = {"notice": sweep(300, 700), "opt_out": sweep(700, 300), "opt_in": sweep(400, 900)}


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp(f"consent-peers-{request.param}")
    notices = tmp / "notices"
    notices.mkdir()
    for kind, pcm in NOTICES.items():
        write_wav(notices / f"{kind}.wav", pcm, RATE)
    with gateway_on_backend(request.param, tmp, consent=CONSENT) as process:
        yield process


def caller_number(area: str) -> str:
    return f"+1{area}555{next(_numbers):04d}"


# ------------------------------------------------------------------ evidence


def closed_record(gateway: GatewayProcess, number: str, timeout: float = 20.0) -> dict[str, Any]:
    """The closed record of the call from ``number``, with its consent trail and recordings
    (a granted call's recording is listed a moment after the call closes)."""

    async def poll() -> dict[str, Any]:
        engine = make_engine(gateway.db_url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                rows = [r for r in await latest_calls(engine, 200) if r["source_number"] == number]
                if rows and rows[0]["ended_at"] is not None:
                    found = await get_call(engine, record_id=rows[0]["id"])
                    assert found is not None
                    if found["consent_outcome"] != "granted" or found["recordings"]:
                        return found
                await asyncio.sleep(0.1)
        finally:
            await engine.dispose()
        raise AssertionError(f"no closed record for {number}\n{gateway.log_text()[-3000:]}")

    return asyncio.run(poll())


def trail(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["party"], e["state"], e["method"]) for e in record["consent_events"]]


def recording_of(record: dict[str, Any]) -> npt.NDArray[np.int16]:
    """The call's stereo recording: (frames, 2), the caller left, the callee right."""
    assert len(record["recordings"]) == 1, record["recordings"]
    samples, rate = read_wav(Path(record["recordings"][0]["path"]).read_bytes())
    assert rate == RATE and samples.ndim == 2 and samples.shape[1] == 2
    return samples


def tone_amplitudes(pcm: npt.NDArray[np.int16], frequency: float) -> npt.NDArray[np.float64]:
    """Per 20 ms frame, the amplitude of ``frequency`` in it (one Hann-windowed DFT bin)."""
    usable = len(pcm) // FRAME * FRAME
    frames = pcm[:usable].astype(np.float64).reshape(-1, FRAME)
    window = np.hanning(FRAME)
    probe = window * np.exp(-2j * np.pi * frequency * np.arange(FRAME) / RATE)
    return 2 * np.abs(frames @ probe) / window.sum()


def frames_holding(pcm: npt.NDArray[np.int16], frequency: float) -> int:
    """How many 20 ms frames carry ``frequency`` at half the markers' amplitude or more."""
    return int((tone_amplitudes(pcm, frequency) > PRESENT).sum())


def loudest(pcm: npt.NDArray[np.int16], frequency: float) -> float:
    """The strongest ``frequency`` component of any 20 ms frame."""
    amplitudes = tone_amplitudes(pcm, frequency)
    return float(amplitudes.max()) if amplitudes.size else 0.0


def best_match(
    heard: npt.NDArray[np.floating[Any]], wanted: npt.NDArray[np.floating[Any]]
) -> tuple[int, float]:
    """(lag in samples, normalised cross-correlation) where ``wanted`` fits ``heard`` best.

    The correlation of every lag at once through the FFT; each lag's score is
    divided by the energies of ``wanted`` and of the window of ``heard`` it covers
    (a running sum), so loud audio elsewhere cannot outscore the true position.
    """
    if len(heard) < len(wanted):
        return 0, 0.0
    heard = heard.astype(np.float64)
    wanted = wanted.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(heard) + len(wanted))))
    spectrum = np.fft.rfft(heard, size) * np.conj(np.fft.rfft(wanted, size))
    lags = len(heard) - len(wanted) + 1
    correlation = np.fft.irfft(spectrum, size)[:lags]
    energy = np.concatenate([[0.0], np.cumsum(heard * heard)])
    window_energy = energy[len(wanted) : len(wanted) + lags] - energy[:lags]
    norm = np.sqrt(np.maximum(window_energy, 1e-9)) * np.linalg.norm(wanted)
    score = correlation / norm
    lag = int(np.argmax(score))
    return lag, float(score[lag])


def pieces_in_place(
    heard: npt.NDArray[np.float64], wanted: npt.NDArray[np.float64]
) -> tuple[int, list[float]]:
    """Where ``wanted`` starts in ``heard`` (its first 100 ms piece's best lag), and the
    normalised correlation of each 100 ms piece with ``heard`` at its own place after
    that start: a piece that is missing, late or early scores low."""
    start, _ = best_match(heard, wanted[:PIECE])
    scores = []
    for offset in range(0, len(wanted) - PIECE + 1, PIECE):
        piece = wanted[offset : offset + PIECE]
        window = heard[start + offset : start + offset + PIECE]
        norm = np.linalg.norm(window) * np.linalg.norm(piece)
        scores.append(float(window @ piece / norm) if len(window) == PIECE and norm else 0.0)
    return start, scores


def streams(received: Sequence[ReceivedRtp]) -> list[tuple[float, npt.NDArray[np.float64]]]:
    """Per SSRC of G.711 packets: the first packet's arrival (epoch seconds) and the
    audio placed by RTP timestamp (RFC 3550 section 5.1), gaps as silence."""
    by_ssrc: dict[int, list[ReceivedRtp]] = {}
    for item in received:
        if item.packet.payload_type in (PT_PCMU, PT_PCMA):
            by_ssrc.setdefault(item.packet.ssrc, []).append(item)
    found = []
    for items in by_ssrc.values():
        base = items[0].packet.timestamp
        offsets = [(item.packet.timestamp - base) % 2**32 for item in items]
        end = max(at + len(item.packet.payload) for at, item in zip(offsets, items, strict=True))
        audio = np.zeros(end)
        for at, item in zip(offsets, items, strict=True):
            packet = item.packet
            audio[at : at + len(packet.payload)] = g711.decode(packet.payload, packet.payload_type)
        found.append((items[0].wallclock, audio))
    return found


def heard_notice(received: Sequence[ReceivedRtp], notice: str) -> tuple[float, float]:
    """(best score, first arrival of that stream) of the notice among the streams received."""
    wanted = NOTICES[notice].astype(np.float64)
    scored = [(best_match(audio, wanted)[1], first) for first, audio in streams(received)]
    assert scored, "no G.711 audio arrived"
    return max(scored)


def answer_sent_at(callee: SippProcess) -> float:
    """When the sipp callee sent its 200 OK to the INVITE (epoch seconds, from its trace)."""
    for message in callee.messages():
        if message.direction == "sent" and message.status == 200:
            cseq = message.header("CSeq")
            if cseq and cseq[0].endswith("INVITE") and message.timestamp is not None:
                return message.timestamp
    raise AssertionError(f"the callee sent no 200 OK\n{callee.result().describe()}")


# ------------------------------------------------------------------ sipp


def press_key(
    sipp_factory: SippFactory, gateway: GatewayProcess, area: str, digit: str
) -> tuple[dict[str, Any], SippProcess, SippProcess]:
    """One call from sipp on the trunk to a sipp agent on the PBX; the caller presses
    ``digit`` once the notice is over. Returns the call's record and both peers."""
    number = caller_number(area)
    callee = sipp_factory("uas_answer_wait_bye", local_ip=PBX_HOST, local_port=gateway.pbx_port)
    caller = sipp_factory(
        "uac_consent_digit",
        local_ip=TRUNK_HOST,
        remote=gateway.address,
        service=AGENT,
        caller=number,
        duration_ms=PRESS_AFTER_MS,
        keys={"digit": digit},
    )
    caller.assert_success(calls=1, timeout=20)
    callee.assert_success(calls=1, timeout=10)
    return closed_record(gateway, number), caller, callee


@pytest.mark.sipp
def test_sipp_opts_in_with_an_rfc4733_key_press(
    sipp_factory: SippFactory, gateway: GatewayProcess
) -> None:
    """Georgia, opt-in: sipp's telephone-event "1" grants consent; only later audio is kept."""
    record, caller, _ = press_key(sipp_factory, gateway, "404", "1")
    assert record["consent_mode"] == "opt_in"
    assert record["consent_parties"] == "one"
    assert record["consent_outcome"] == "granted", trail(record)
    assert trail(record) == [
        ("caller", "pending", "policy"),
        ("callee", "granted", "policy"),
        ("caller", "notified", "notice"),
        ("caller", "granted", "digit"),
    ]
    assert record["consent_events"][-1]["digit"] == "1"
    assert caller.rtp is not None
    score, _ = heard_notice(caller.rtp.packets(), "opt_in")
    assert score > NOTICE_MATCH, "the caller was not asked"

    recording = recording_of(record)
    caller_side, agent_side = recording[:, 0], recording[:, 1]
    # after the press: the caller's 2 kHz (1.5 s sent), the agent's 1 kHz (its last ~1.3 s)
    assert frames_holding(caller_side, 2000) >= 50, frames_holding(caller_side, 2000)
    agent_frames = frames_holding(agent_side, 1000)
    assert 25 <= agent_frames <= AGENT_AFTER_PRESS_FRAMES, agent_frames
    # before it: not one frame of the caller's 440 Hz; and no cross-talk between channels
    assert loudest(caller_side, 440) < ABSENT, loudest(caller_side, 440)
    assert loudest(caller_side, 1000) < ABSENT, loudest(caller_side, 1000)
    assert loudest(agent_side, 2000) < ABSENT, loudest(agent_side, 2000)
    assert record["capture_s"] > 1.0


@pytest.mark.sipp
def test_sipp_opts_out_with_an_rfc4733_key_press(
    sipp_factory: SippFactory, gateway: GatewayProcess
) -> None:
    """Texas, opt-out: sipp's telephone-event "9" declines; nothing is recorded."""
    record, caller, _ = press_key(sipp_factory, gateway, "512", "9")
    assert record["consent_mode"] == "opt_out"
    assert record["consent_outcome"] == "declined", trail(record)
    assert trail(record)[-1] == ("caller", "declined", "digit")
    assert record["consent_events"][-1]["digit"] == "9"
    assert caller.rtp is not None
    score, _ = heard_notice(caller.rtp.packets(), "opt_out")
    assert score > NOTICE_MATCH, "the caller was not told"
    assert record["recordings"] == []
    assert record["capture_s"] == 0
    recordings = gateway.config_path.parent / "recordings"
    assert not any(recordings.rglob(f"{record['id']}*"))


# ------------------------------------------------------------------ baresip


@pytest.mark.sipp
@pytest.mark.baresip
def test_softphone_hears_the_all_party_notice(
    sipp_factory: SippFactory, baresip_factory: BaresipFactory, gateway: GatewayProcess
) -> None:
    """Colorado, notice to all parties: baresip (the caller) and sipp (the agent) hear it
    from the answer on."""
    number = caller_number("303")
    callee = sipp_factory("uas_answer_wait_bye", local_ip=PBX_HOST, local_port=gateway.pbx_port)
    phone = baresip_factory(TRUNK_HOST, user=number)
    phone.dial(f"sip:{AGENT}@{GATEWAY_HOST}:{gateway.sip_port}")
    phone.wait_established(timeout=10)
    time.sleep(NOTICE_S + 1.0)
    phone.hangup()
    phone.wait_closed(timeout=5)
    callee.assert_success(calls=1, timeout=10)
    phone.stop()

    record = closed_record(gateway, number)
    assert record["consent_parties"] == "all"
    assert record["consent_outcome"] == "granted", trail(record)
    told = {party for party, state, _ in trail(record) if state == "notified"}
    assert told == {"caller", "callee"}

    notice = NOTICES["notice"].astype(np.float64)
    heard = phone.received_audio().astype(np.float64)
    start, scores = pieces_in_place(heard, notice)
    report = (
        f"notice at {start / RATE:.3f} s; pieces {np.round(scores, 3).tolist()}; "
        f"as a whole {best_match(heard, notice)[1]:.3f}"
    )
    # the notice is the first audio the phone decoded: it started at the answer
    assert start < 0.1 * RATE, report
    whole = np.asarray(scores) > NOTICE_MATCH
    kept = PIECE * (int(np.argmin(whole)) if not whole.all() else len(scores))
    assert kept >= len(notice) - JITTER_TAIL, report
    lag, score = best_match(heard, notice[:kept])
    assert lag == start and score > NOTICE_MATCH, report
    # after it, the agent's voice (sipp's 1 kHz) reached the phone
    after = heard[start + kept :].astype(np.int16)
    assert frames_holding(after, 1000) >= 25, frames_holding(after, 1000)

    assert callee.rtp is not None
    score, first_arrival = heard_notice(callee.rtp.packets(), "notice")
    assert score > NOTICE_MATCH, "the agent was not told"
    assert -0.2 < first_arrival - answer_sent_at(callee) < 0.5
