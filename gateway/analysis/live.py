"""Transcripts while the call runs, for tenants that ask (``analysis.live_interval_s``).

Every interval, the consented audio the recorder has put on disk since the
last look is transcribed (in the analysis worker pool) and redacted before
anything is kept. A number read across two looks must not escape redaction
because each look saw only half of it, so the words of the last
:data:`HOLD_S` seconds of each look are not stored yet: they are kept,
unredacted, in this process's memory only and redacted again with the next
look's words. What is stored is ``live`` transcript rows (redacted text and
words, and the spans). When the call ends, the post-call analysis of the
whole recording replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from dsp.redact.redactor import Redactor
from dsp.redact.tokens import Word
from dsp.redact.vocab import VOCABULARY, Kind
from gateway.analysis.job import PARTIES, span_rows, transcriber_for, word_rows
from gateway.analysis.pipeline import job_spec
from gateway.analysis.recorder import StereoRecorder
from gateway.config import TenantSettings
from gateway.store.models import REDACTIONS, TRANSCRIPTS, new_record_id

log = logging.getLogger(__name__)

HEADER_BYTES = 44
"""The recorder's WAV header (RIFF, fmt, data: RFC 2361 / the canonical 44-octet form)."""
HOLD_S = 4.0
"""Words this close to the end of what was heard are held back until the next look."""

Heard = list[tuple[str, float, float]]


@dataclass(frozen=True, slots=True)
class LookSpec:
    """One look at a call's new audio, picklable for the worker pool."""

    pcm: bytes
    """Interleaved 16-bit stereo frames: caller left, callee right."""
    sample_rate: int
    offset_s: float
    final: bool
    held: dict[str, Heard]
    transcriber: str
    transcriber_options: dict[str, Any]
    entities: tuple[str, ...]
    replacement: str


@dataclass(slots=True)
class LookResult:
    """Per party: the redacted words that may be stored now, their spans, and what is held."""

    words: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    spans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    held: dict[str, Heard] = field(default_factory=dict)


def look(spec: LookSpec) -> LookResult:
    """Transcribe and redact one look (runs in a worker process)."""
    stereo = np.frombuffer(spec.pcm, dtype="<i2").reshape(-1, 2)
    end_s = spec.offset_s + len(stereo) / spec.sample_rate
    transcriber = transcriber_for(spec.transcriber, spec.transcriber_options)
    redactor = Redactor(spec.entities, spec.replacement)  # type: ignore[arg-type]
    result = LookResult()
    for channel, party in enumerate(PARTIES):
        heard = [Word(t, s, e, 0) for t, s, e in spec.held.get(party, [])]
        pcm = np.ascontiguousarray(stereo[:, channel])
        for word in transcriber.transcribe(pcm, spec.sample_rate, party) if len(pcm) else ():
            heard.append(Word(word.text, spec.offset_s + word.start_s, spec.offset_s + word.end_s))
        cut = len(heard) if spec.final else _held_from(heard, end_s - HOLD_S)
        redacted = redactor.redact(heard)
        # a span reaching into the held words is held with them, whole
        for span in redacted.spans:
            if span.start_word < cut < span.end_word:
                cut = span.start_word
        result.words[party] = word_rows(redacted.words[:cut])
        result.spans[party] = span_rows(span for span in redacted.spans if span.end_word <= cut)
        result.held[party] = [(w.text, w.start, w.end) for w in heard[cut:]]
    return result


NUMBER_KINDS = frozenset(
    {Kind.UNIT, Kind.OH, Kind.TEEN, Kind.TENS, Kind.SCALE, Kind.MULT, Kind.NUMERAL, Kind.FILLER}
)
"""What a word of a number being read may be (the redactor's own vocabulary), fillers too."""


def _held_from(words: list[Word], from_s: float) -> int:
    """Where the held words start: at the first ending after ``from_s``, moved back over
    a number being read there, so no part of it is stored before all of it was heard."""
    cut = len(words)
    for index, word in enumerate(words):
        if word.end > from_s:
            cut = index
            break
    if cut < len(words) and _numeric(words[cut].text):  # a number goes on into the held part
        while cut > 0 and _numeric(words[cut - 1].text):
            cut -= 1
    return cut


def _numeric(text: str) -> bool:
    lowered = text.lower().strip(",.")
    if any(ch.isdigit() for ch in lowered):
        return True
    index = VOCABULARY.ids.get(lowered)
    return index is not None and int(VOCABULARY.kind[index]) in NUMBER_KINDS


class LiveAnalysis:
    """Looks at the calls of tenants with ``analysis.live_interval_s`` while they run."""

    def __init__(self, engine: AsyncEngine, workers: Callable[[], Executor | None]) -> None:
        self.engine = engine
        self.workers = workers
        """The analysis worker pool (None on an instance that analyses nothing)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, record_id: str, tenant: TenantSettings, recorder: StereoRecorder) -> None:
        if self.workers() is None or tenant.analysis.live_interval_s <= 0:
            return
        if not tenant.analysis.enabled or tenant.analysis.transcriber == "none":
            return
        task = asyncio.ensure_future(self._follow(record_id, tenant, recorder))
        self._tasks[record_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record_id, None))

    def forget(self, record_id: str) -> None:
        """The call ended: stop looking (the post-call analysis takes over)."""
        task = self._tasks.pop(record_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(
        self, record_id: str, tenant: TenantSettings, recorder: StereoRecorder
    ) -> None:
        interval = tenant.analysis.live_interval_s
        spec = job_spec(tenant, str(recorder.final_path))
        held: dict[str, Heard] = {}
        done = 0
        frame = recorder.block_align
        while True:
            await asyncio.sleep(interval)
            try:
                size = os.path.getsize(recorder.part_path)
            except OSError:
                continue  # nothing captured yet (or the recording just closed)
            frames = max(0, (size - HEADER_BYTES) // frame)
            if frames - done < interval * recorder.sample_rate / 2:
                continue
            pcm = await asyncio.to_thread(
                _read, recorder.part_path, HEADER_BYTES + done * frame, (frames - done) * frame
            )
            look_spec = LookSpec(
                pcm=pcm,
                sample_rate=recorder.sample_rate,
                offset_s=done / recorder.sample_rate,
                final=False,
                held=held,
                transcriber=spec.transcriber,
                transcriber_options=spec.transcriber_options,
                entities=spec.entities,
                replacement=spec.replacement,
            )
            try:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self.workers(), look, look_spec)
            except Exception as error:
                log.warning("call %s: live transcript skipped a look: %s", record_id, error)
                continue
            done = frames
            held = result.held
            await self._store(record_id, tenant, spec.transcriber, result)

    async def _store(
        self, record_id: str, tenant: TenantSettings, backend: str, result: LookResult
    ) -> None:
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            for party in PARTIES:
                words = result.words.get(party) or []
                if not words:
                    continue
                await connection.execute(
                    insert(TRANSCRIPTS).values(
                        id=new_record_id(),
                        call_record_id=record_id,
                        recording_id=None,
                        tenant=tenant.name,
                        party=party,
                        language=tenant.analysis.language,
                        backend=backend,
                        text=" ".join(w["text"] for w in words if w["text"]),
                        words=words,
                        created_at=now,
                        live=True,
                    )
                )
                spans = result.spans.get(party) or []
                if spans:
                    await connection.execute(
                        insert(REDACTIONS),
                        [
                            {
                                "call_record_id": record_id,
                                "recording_id": None,
                                "tenant": tenant.name,
                                "party": party,
                                **span,
                            }
                            for span in spans
                        ],
                    )


def _read(path: Path, offset: int, count: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(count)
