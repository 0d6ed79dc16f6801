"""Analysis end to end: a softphone reads a card number aloud in a consented call.

baresip (the caller, on the trunk address) plays espeak-ng speech after the
notice: "my card number is four one one one ...". The gateway records the
call once the caller has consented (notice, staying on), queues the
recording for analysis, transcribes it with pocketsphinx, redacts the
transcript, mutes the card number in the audio, seals the file with the
tenant's key and removes the plain one. The test then reads everything back
through the API:

- the stored transcript holds no digit of the card, in the text or the words;
- the recording (decrypted by the API) is silent where the number was, and
  transcribing it again finds no run of digits, while the same transcriber on
  the speech the phone sent finds the digits (so the check can fail);
- on disk the recording is sealed: no RIFF header, no plain copy left;
- erasing the caller's number removes the transcript with the recording.

Once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dsp import g711
from dsp.wav import read_wav, write_wav
from tests.support.api import SHORT_NOTICE_CONSENT, get, make_key, wait_for, write_notice
from tests.support.gateway import (
    BACKENDS,
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    gateway_on_backend,
)
from tests.support.peers import BaresipFactory, SippFactory
from tests.unit.dsp.signals import espeak_speech

pytestmark = [pytest.mark.sipp, pytest.mark.baresip]

RATE = 8000
CALLER = "+14045550142"
CARD_WORDS = "four one one one one one one one one one one one one one one one"
SPEECH = f"my card number is {CARD_WORDS} thank you"
LEAD_S = 2.5
"""Silence before the speech: the notice (0.6 s) plays and consent is implied first."""
TAIL_S = 20.0
"""Silence after it, so live transcript pieces are stored before the end. The speech is one
utterance, stored once its last word is 4 s old in a look; audio reaches the file after the
recorder's window (0.5 s and the capture gate's own delay, 0.7 s, written 0.25 s at a time);
a look comes every 2 s and takes a second or two; the test polls every 0.5 s. That is
some 10 s after the speech ends (measured: 9.6 s at most, alone); the rest is slack for a
loaded machine (15 s of silence was once too short at the end of the whole suite). The
test hangs up as soon as a live piece holds the redacted number, so the slack costs
nothing where it is not needed."""
REDACTED_TAGS = ("[CARD]", "[DIGITS]")
DIGIT_WORDS = {
    "zero",
    "oh",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
}
KEY = base64.b64encode(os.urandom(32)).decode()

CONSENT = (
    SHORT_NOTICE_CONSENT
    + f"""
[tenants.analysis]
transcriber = "pocketsphinx"
entities = ["CARD", "CVV", "EXPIRY", "DIGITS"]
margin_ms = 200
live_interval_s = 2

[tenants.sealing]
keys = {{ "t1" = "{KEY}" }}
"""
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The phone's microphone: silence, then the sentence with the card number, as a
    phone line carries it (8 kHz, through G.711)."""
    directory = tmp_path_factory.mktemp("speech")
    spoken = espeak_speech(SPEECH, "en-us", directory)
    spoken = np.clip(spoken / max(np.abs(spoken).max(), 1) * 16000, -32768, 32767)
    line = g711.decode(g711.encode(spoken.astype(np.int16), 0), 0).astype(np.int16)
    tail = np.zeros(int(TAIL_S * RATE), np.int16)
    pcm = np.concatenate([np.zeros(int(LEAD_S * RATE), np.int16), line, tail])
    path = directory / "card.wav"
    write_wav(path, pcm, RATE)
    return path, pcm


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp(f"analysis-{request.param}")
    write_notice(tmp)
    with gateway_on_backend(
        request.param, tmp, consent=CONSENT, analysis_workers=1, media_timeout_s=30.0
    ) as process:
        yield process


def transcribe(pcm: np.ndarray) -> list[str]:
    from gateway.analysis.transcribe import make_transcriber

    transcriber = make_transcriber("pocketsphinx", language="en")
    try:
        return [w.text.lower() for w in transcriber.transcribe(pcm, RATE, "caller")]
    finally:
        transcriber.close()


def longest_digit_run(words: list[str]) -> int:
    best = run = 0
    for word in words:
        run = run + 1 if word in DIGIT_WORDS or word.isdigit() else 0
        best = max(best, run)
    return best


def watch_live(gateway: GatewayProcess, key: str, until: float) -> list[dict[str, Any]]:
    """The live transcript pieces of the call from ``CALLER`` as they come: until one holds
    the redacted number (then the rest of the phone's silence need not be waited out), or
    until ``until``."""
    seen: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=f"http://{GATEWAY_HOST}:{gateway.api_port}", timeout=10) as http:
        while time.monotonic() < until:
            page = get(http, key, "/v1/calls", params={"number": CALLER}).json()
            if page["calls"] and page["calls"][0]["ended_at"] is None:
                found = get(http, key, f"/v1/calls/{page['calls'][0]['id']}/transcript").json()
                for piece in found["transcripts"]:
                    if piece["live"]:
                        seen[piece["id"]] = piece
            if any(tag in piece["text"] for piece in seen.values() for tag in REDACTED_TAGS):
                break
            time.sleep(0.5)
    return list(seen.values())


def analysed(http: httpx.Client, key: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        page = get(http, key, "/v1/calls", params={"number": CALLER}).json()
        if not page["calls"] or page["calls"][0]["ended_at"] is None:
            return None
        call = get(http, key, f"/v1/calls/{page['calls'][0]['id']}").json()
        states = [job["state"] for job in call["analysis"]]
        if states and states[0] == "failed":
            raise AssertionError(f"analysis failed: {call['analysis']}")
        return call if states == ["done"] else None

    return wait_for(done, timeout=120, what="the call's analysis")


def test_a_spoken_card_number_is_gone_from_transcript_and_audio(
    sipp_factory: SippFactory,
    baresip_factory: BaresipFactory,
    gateway: GatewayProcess,
    speech: tuple[Path, np.ndarray],
) -> None:
    path, sent = speech
    key = make_key(gateway, "acme", "admin")
    callee = sipp_factory(
        "uas_answer_wait_bye",
        local_ip=PBX_HOST,
        local_port=gateway.pbx_port,
        recv_timeout_ms=40_000,  # the phone talks for about 25 s before its BYE
    )
    phone = baresip_factory(TRUNK_HOST, user=CALLER, audio_source=path)
    phone.dial(f"sip:+12125550100@{GATEWAY_HOST}:{gateway.sip_port}")
    phone.wait_established(timeout=10)
    live = watch_live(gateway, key, until=time.monotonic() + len(sent) / RATE + 0.5)
    phone.hangup()
    phone.wait_closed(timeout=5)
    callee.assert_success(calls=1, timeout=10)
    phone.stop()

    # while the call ran, redacted pieces of its transcript were there to read
    assert live, f"no live transcript piece while the call ran:\n{gateway.log_text()[-4000:]}"
    assert any(tag in piece["text"] for piece in live for tag in REDACTED_TAGS), live
    for piece in live:
        assert not any(ch.isdigit() for ch in piece["text"]), piece
        assert longest_digit_run([w["text"] for w in piece["words"]]) < 4, piece

    with httpx.Client(base_url=f"http://{GATEWAY_HOST}:{gateway.api_port}", timeout=30) as http:
        call = analysed(http, key)
        record_id = call["id"]
        assert call["consent_outcome"] == "granted"
        transcript = get(http, key, f"/v1/calls/{record_id}/transcript").json()
        assert not any(t["live"] for t in transcript["transcripts"])  # replaced by the final
        caller = next(t for t in transcript["transcripts"] if t["party"] == "caller")
        words = [w["text"].lower() for w in caller["words"]]
        assert not any(ch.isdigit() for ch in caller["text"]), caller["text"]
        assert longest_digit_run(words) < 4, words
        assert "[CARD]" in caller["text"] or "[DIGITS]" in caller["text"], caller["text"]
        spans = [s for s in transcript["redactions"] if s["party"] == "caller"]
        assert spans, transcript
        cues = get(http, key, f"/v1/calls/{record_id}/cues").json()["analyses"][0]["cues"]
        assert cues  # talk-time cues were stored with the analysis

        response = get(http, key, f"/v1/calls/{record_id}/recording")
        assert response.status_code == 200
        stored, rate = read_wav(response.content)
        part = get(http, key, f"/v1/calls/{record_id}/recording", headers={"Range": "bytes=4-99"})
        assert part.status_code == 206 and part.content == response.content[4:100]

    assert rate == RATE
    channel = stored[:, 0].astype(np.int16)
    for span in spans:  # muted on both channels, over the span's whole time
        inside = stored[int(span["start_s"] * RATE) : int(span["end_s"] * RATE)]
        assert np.abs(inside).max(initial=0) == 0, span
    again = transcribe(channel)
    original = transcribe(sent)
    assert longest_digit_run(original) >= 8, original  # the speech does carry the number
    assert longest_digit_run(again) < 4, again

    files = [p for p in (gateway.config_path.parent / "recordings").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.endswith(".sealed"), files
    assert files[0].read_bytes()[:8] == b"CGSEALED"
    assert b"RIFF" not in files[0].read_bytes()[:64]

    with httpx.Client(base_url=f"http://{GATEWAY_HOST}:{gateway.api_port}", timeout=30) as http:
        export = get(http, key, f"/v1/subjects/{CALLER}/export").json()
        assert {(t["call"], t["party"]) for t in export["transcripts"]} == {
            (record_id, "caller"),
            (record_id, "callee"),
        }
        assert export["transcripts"][0]["href"] == f"/v1/calls/{record_id}/transcript"
        erased = http.delete(f"/v1/subjects/{CALLER}", headers={"Authorization": f"Bearer {key}"})
        assert erased.status_code == 200 and erased.json()["files_removed"] == 1
        after = get(http, key, f"/v1/calls/{record_id}/transcript").json()
        assert after["transcripts"] == [] and after["redactions"] == []
    assert not files[0].exists()
