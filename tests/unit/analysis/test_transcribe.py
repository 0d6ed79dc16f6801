"""Transcription: the interface, PocketSphinx on espeak-ng speech through G.711, and the
HTTP backend against the test speech service (success, retries, 4xx, garbage, timeouts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from dsp import g711
from dsp.wav import read_wav
from gateway.analysis.transcribe import (
    Transcriber,
    Transcript,
    TranscriptionError,
    Word,
    make_transcriber,
)
from gateway.analysis.transcribe.digits import merge_digit_runs
from gateway.analysis.transcribe.remote import (
    HttpTranscriber,
    MalformedResponse,
    ServiceRejected,
    ServiceUnavailable,
    parse_words,
)
from gateway.analysis.transcribe.sphinx import PocketsphinxTranscriber, clean_token
from tests.support.speech_service import SpeechService
from tests.unit.dsp import signals

RATE = 8000
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CARD = "4532015112830366"


def phone_line(text: str, directory: Path, voice: str = "en-us") -> npt.NDArray[np.int16]:
    """``text`` spoken by espeak-ng, at 8 kHz through mu-law, after 1 s of silence."""
    speech = np.clip(np.rint(signals.espeak_speech(text, voice, directory)), -32768, 32767)
    coded = g711.ulaw_decode(g711.ulaw_encode(speech.astype(np.int16)))
    silence = np.zeros(RATE, dtype=np.int16)
    return np.concatenate((silence, coded, silence))


def lcs(a: str, b: str) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


# ---------------------------------------------------------------------- interface


def test_words_check_their_times_and_confidence() -> None:
    with pytest.raises(ValueError):
        Word("x", 2.0, 1.0)
    with pytest.raises(ValueError):
        Word("x", 0.0, 1.0, confidence=1.5)
    with pytest.raises(ValueError):
        Word("", 0.0, 1.0)
    transcript = Transcript("caller", (Word("hi", 0.0, 0.2), Word("there", 0.3, 0.5, 0.5)))
    assert transcript.text == "hi there"
    assert transcript.to_dict()["words"][1] == {
        "text": "there",
        "start": 0.3,
        "end": 0.5,
        "confidence": 0.5,
    }


def test_factory_kinds() -> None:
    none = make_transcriber("none")
    assert isinstance(none, Transcriber) and none.name == "none"
    assert none.transcribe(np.zeros(800, np.int16), RATE, "caller") == []
    with pytest.raises(TranscriptionError):
        none.transcribe(np.zeros(800, np.float64), RATE, "caller")  # type: ignore[arg-type]
    assert make_transcriber("pocketsphinx").name == "pocketsphinx"
    assert make_transcriber("http", url="http://127.0.0.1:9/x").name == "http"
    with pytest.raises(ValueError, match="url"):
        make_transcriber("http")
    with pytest.raises(ValueError, match="unknown"):
        make_transcriber("whisper")


def test_decoder_tokens_that_are_not_words_are_dropped() -> None:
    assert [clean_token(t) for t in ("<s>", "</s>", "<sil>", "[NOISE]", "++BREATH++")] == [None] * 5
    assert clean_token("two(2)") == "two"
    assert clean_token("four") == "four"


def test_digit_runs_replace_the_generic_words_they_cover() -> None:
    generic = [
        Word("my", 0.0, 0.2),
        Word("want", 0.3, 0.6),
        Word("won", 0.6, 0.9),
        Word("today", 1.5, 1.9),
    ]
    digits = [
        Word("my", 0.0, 0.2),
        Word("one", 0.3, 0.6),
        Word("one", 0.6, 0.9),
        Word("four", 0.9, 1.2),
        Word("you", 1.3, 1.45),
        Word("two", 1.5, 1.8),
    ]
    merged = merge_digit_runs(generic, digits)
    assert [w.text for w in merged] == ["my", "one", "one", "four", "today"]


# ---------------------------------------------------------------------- pocketsphinx

needs_espeak = pytest.mark.skipif(not signals.espeak_available(), reason="needs espeak-ng")


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketsphinxTranscriber]:
    transcriber = PocketsphinxTranscriber()
    yield transcriber
    transcriber.close()


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@needs_espeak
def test_a_spoken_card_number_comes_out_as_digit_words(
    sphinx: PocketsphinxTranscriber, speech_dir: Path
) -> None:
    spoken = " ".join(DIGITS[int(c)] for c in CARD)
    pcm = phone_line(f"my card number is {spoken}", speech_dir)
    words = sphinx.transcribe(pcm, RATE, "caller")
    heard = "".join(str(DIGITS.index(w.text)) for w in words if w.text in DIGITS)
    assert lcs(CARD, heard) >= 0.6 * len(CARD), heard
    assert len(heard) <= len(CARD) + 3, heard
    assert all(w.start_s >= 0.9 for w in words)
    assert all(w.end_s <= len(pcm) / RATE for w in words)
    assert words == sorted(words, key=lambda w: w.start_s)


@needs_espeak
def test_a_plain_sentence_is_heard_where_it_is_spoken(
    sphinx: PocketsphinxTranscriber, speech_dir: Path
) -> None:
    text = "thank you for calling how can I help you today"
    pcm = phone_line(text, speech_dir, voice="en-us+f2")
    words = sphinx.transcribe(pcm, RATE, "callee")
    said = set(text.lower().split())
    assert sum(w.text in said for w in words) >= 3, [w.text for w in words]
    assert not any(w.text in DIGITS for w in words)
    speech_end = (len(pcm) - RATE) / RATE
    assert 0.9 <= words[0].start_s <= 1.5
    assert speech_end - 1.0 <= words[-1].end_s <= speech_end + 0.4


def test_silence_has_no_words(sphinx: PocketsphinxTranscriber) -> None:
    assert sphinx.transcribe(np.zeros(2 * RATE, np.int16), RATE, "caller") == []


# ---------------------------------------------------------------------- http


@pytest.fixture
def service() -> Iterator[SpeechService]:
    running = SpeechService(
        words=[
            {"text": "One", "start": 1.5, "end": 1.8, "confidence": 0.75},
            {"text": "four", "start": 1.0, "end": 1.4},
        ]
    ).start()
    yield running
    running.stop()


def client(service: SpeechService, **options: object) -> tuple[HttpTranscriber, list[float]]:
    sleeps: list[float] = []
    settings: dict = {"timeout_s": 2.0, "retries": 2, "backoff_s": 0.1, **options}
    return HttpTranscriber(service.url, sleep=sleeps.append, **settings), sleeps


AUDIO = (np.arange(1600) % 100).astype(np.int16)


def test_http_posts_a_wav_and_reads_the_words(service: SpeechService) -> None:
    transcriber, sleeps = client(service, token="s3cret", language="en-GB")
    words = transcriber.transcribe(AUDIO, RATE, "callee")
    assert words == [Word("four", 1.0, 1.4, 1.0), Word("one", 1.5, 1.8, 0.75)]
    assert sleeps == []
    (request,) = service.received
    assert request.query == {"language": "en-GB", "party": "callee"}
    assert request.headers["content-type"] == "audio/wav"
    assert request.headers["authorization"] == "Bearer s3cret"
    samples, rate = read_wav(request.body)
    assert rate == RATE and np.array_equal(samples[:, 0], AUDIO)


def test_http_retries_5xx_with_backoff_then_succeeds(service: SpeechService) -> None:
    service.fail_times = 2
    transcriber, sleeps = client(service)
    assert [w.text for w in transcriber.transcribe(AUDIO, RATE, "caller")] == ["four", "one"]
    assert len(service.received) == 3
    assert sleeps == [0.1, 0.2]


def test_http_honours_a_short_retry_after(service: SpeechService) -> None:
    service.fail_times, service.retry_after = 1, "0"
    transcriber, sleeps = client(service)
    transcriber.transcribe(AUDIO, RATE, "caller")
    assert sleeps == [0.0]


def test_http_gives_up_when_retries_run_out(service: SpeechService) -> None:
    service.fail_times = 10
    transcriber, sleeps = client(service)
    with pytest.raises(ServiceUnavailable, match=r"3 time.*status 503"):
        transcriber.transcribe(AUDIO, RATE, "caller")
    assert len(service.received) == 3 and sleeps == [0.1, 0.2]


def test_http_does_not_retry_4xx(service: SpeechService) -> None:
    service.always_status = 401
    transcriber, sleeps = client(service)
    with pytest.raises(ServiceRejected, match="401") as caught:
        transcriber.transcribe(AUDIO, RATE, "caller")
    assert caught.value.status == 401
    assert len(service.received) == 1 and sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b'{"text": "four one"}',
        b'{"words": [{"text": "four", "start": 2.0, "end": 1.0}]}',
        b'{"words": [{"text": "four", "start": "1", "end": 2}]}',
        b'{"words": [{"text": "", "start": 1, "end": 2}]}',
        b'{"words": [{"text": "x", "start": 1, "end": 2, "confidence": 3}]}',
    ],
)
def test_http_malformed_bodies_are_errors(service: SpeechService, body: bytes) -> None:
    service.raw_body = body
    transcriber, _ = client(service)
    with pytest.raises(MalformedResponse):
        transcriber.transcribe(AUDIO, RATE, "caller")
    assert len(service.received) == 1


def test_http_timeouts_are_retried_then_reported(service: SpeechService) -> None:
    service.delay_s = 0.5
    transcriber, sleeps = client(service, timeout_s=0.1, retries=1)
    with pytest.raises(ServiceUnavailable, match="timed out"):
        transcriber.transcribe(AUDIO, RATE, "caller")
    assert len(sleeps) == 1


def test_http_connection_refused_is_unavailable() -> None:
    transcriber = HttpTranscriber(
        "http://127.0.0.1:9/v1/transcribe", retries=1, backoff_s=0.0, sleep=lambda _: None
    )
    with pytest.raises(ServiceUnavailable, match="connection failed"):
        transcriber.transcribe(AUDIO, RATE, "caller")


def test_parse_words_sorts_and_ignores_extra_members() -> None:
    body = json.dumps(
        {
            "words": [
                {"text": "b", "start": 2, "end": 3, "x": 1},
                {"text": "A", "start": 0, "end": 1},
            ],
            "model": "m",
        }
    ).encode()
    assert [w.text for w in parse_words(body)] == ["a", "b"]
