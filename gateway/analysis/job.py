"""The work of one analysis job, run in a worker process: recording in, redacted results out.

Steps, all on the one recording (8 kHz 16-bit stereo WAV, caller left, callee
right):

1. voice activity and talk-time cues (:mod:`gateway.analysis.cues`);
2. a transcript per party with word timestamps (the tenant's transcriber);
3. redaction of both transcripts in one batch (:mod:`dsp.redact`): the text
   and the word list; the unredacted words never leave this function;
4. the spans' times, widened by the tenant's margin, muted (or toned) on
   both channels of the audio: a number read by one party may be heard in
   the other's channel as echo;
5. the redacted audio written beside the original as ``.part`` and, when the
   tenant has keys, sealed (AES-256-GCM); renamed over the final name only
   when complete. The caller of :func:`analyse` removes the original once
   the results are stored.

Only redacted text, redacted words, span metadata and cues are returned.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsp.redact.audio import mute_audio, mute_ranges
from dsp.redact.redactor import Redactor, Span
from dsp.redact.tokens import Word
from dsp.wav import encode_wav, read_wav
from gateway.analysis.cues import talk_cues
from gateway.analysis.sealed import Keyring, encrypt_file

PARTIES = ("caller", "callee")
SEALED_SUFFIX = ".sealed"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything the worker needs, picklable."""

    recording_path: str
    transcriber: str
    transcriber_options: dict[str, Any]
    language: str
    entities: tuple[str, ...]
    replacement: str
    audio: str
    margin_s: float
    keys: dict[str, str] = field(default_factory=dict)
    """Key id -> base64 key; empty: the redacted recording is stored plain."""
    current_key: str | None = None
    attempt: int = 1
    """Each attempt writes its own output, so two runs of one job never share a file."""


@dataclass(frozen=True, slots=True)
class PartyTranscript:
    party: str
    text: str
    words: list[dict[str, Any]]
    spans: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobResult:
    transcripts: list[PartyTranscript]
    cues: dict[str, Any]
    muted_s: float
    transcriber: str
    path: str
    """The redacted recording (sealed when ``key_id`` is set)."""
    key_id: str | None
    bytes: int
    sha256: str
    """Of the redacted WAV as served (the plaintext)."""


_transcribers: dict[tuple[str, str], Any] = {}


def transcriber_for(kind: str, options: dict[str, Any]) -> Any:
    key = (kind, repr(sorted(options.items())))
    if key not in _transcribers:
        # imported here: the transcriber's model loads in the worker process, not the gateway
        from gateway.analysis.transcribe import make_transcriber

        _transcribers[key] = make_transcriber(kind, **options)
    return _transcribers[key]


def analyse(spec: JobSpec) -> JobResult:
    source = Path(spec.recording_path)
    stereo, rate = read_wav(source.read_bytes())
    if stereo.ndim == 1:
        stereo = stereo[:, None]
    cues = talk_cues(stereo[:, :2] if stereo.shape[1] >= 2 else np.repeat(stereo, 2, 1), rate)
    transcriber = transcriber_for(spec.transcriber, spec.transcriber_options)
    heard: list[list[Word]] = []
    for channel, party in enumerate(PARTIES[: stereo.shape[1]]):
        words = transcriber.transcribe(np.ascontiguousarray(stereo[:, channel]), rate, party)
        heard.append([Word(w.text, float(w.start_s), float(w.end_s), 0) for w in words])
    redactor = Redactor(spec.entities, spec.replacement)  # type: ignore[arg-type]
    redacted = redactor.redact_batch(heard) if heard else []
    del heard  # the unredacted words go no further
    all_spans = [span for result in redacted for span in result.spans]
    ranges = mute_ranges(all_spans, spec.margin_s)
    mode = "tone" if spec.audio == "tone" else "silence"
    clean = mute_audio(stereo, ranges, sample_rate=rate, mode=mode)
    muted_s = (
        float(np.sum(np.minimum(ranges[:, 1], len(stereo) / rate) - ranges[:, 0]))
        if len(ranges)
        else 0.0
    )
    wav = encode_wav(clean, rate)
    transcripts = [
        PartyTranscript(
            party=party,
            text=result.text,
            # every word, the emptied ones of a span too: the spans' word indexes point here
            words=word_rows(result.words),
            spans=span_rows(result.spans),
        )
        for party, result in zip(PARTIES, redacted, strict=False)
    ]
    path, key_id = _store(source, wav, spec)
    return JobResult(
        transcripts=transcripts,
        cues=cues.to_dict(),
        muted_s=round(max(muted_s, 0.0), 3),
        transcriber=getattr(transcriber, "name", spec.transcriber),
        path=str(path),
        key_id=key_id,
        bytes=len(wav),
        sha256=hashlib.sha256(wav).hexdigest(),
    )


def word_rows(words: Iterable[Word]) -> list[dict[str, Any]]:
    """Redacted words as stored: text (empty inside a span), start and end seconds."""
    return [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in words]


def span_rows(spans: Iterable[Span]) -> list[dict[str, Any]]:
    """Redacted spans as stored: the entity, its word range, its times, its score."""
    return [
        {
            "entity": span.entity,
            "word_start": span.start_word,
            "word_end": span.end_word,
            "start_s": round(span.start, 3),
            "end_s": round(span.end, 3),
            "score": round(float(span.score), 3),
        }
        for span in spans
    ]


def _store(source: Path, wav: bytes, spec: JobSpec) -> tuple[Path, str | None]:
    """Write the redacted recording: sealed beside the source, or over it; atomically."""
    if spec.keys:
        keyring = Keyring.from_base64(spec.keys, spec.current_key)
        plain = source.with_name(f"{source.name}.{spec.attempt}.redacted")
        _write_atomic(plain, wav)
        try:
            target = source.with_name(f"{source.name}.{spec.attempt}{SEALED_SUFFIX}")
            encrypt_file(plain, target, keyring)
        finally:
            plain.unlink(missing_ok=True)
        return target, keyring.current
    target = source.with_name(f"{source.stem}.{spec.attempt}.redacted.wav")
    _write_atomic(target, wav)
    return target, None


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    with part.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    part.replace(path)
