"""Redaction of a batch of transcripts: the text, the word list and the spans.

Both views are redacted: the text and the word list with its timestamps
(which the audio mute reads). In the word list the first word of a span
carries the replacement and the others an empty text; every word keeps its
start and end. The text is the words joined by spaces, empty ones left out.

Replacement styles:

- ``"tag"``: the entity's tag, ``[CARD]``; no digit of the span survives;
- ``"last4"``: a card keeps its last four digits, ``[CARD ending 1111]``
  (PCI DSS v4.0.1 3.4.1 allows at most the BIN and the last four to be
  shown); other entities are tagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from dsp.redact.registry import Registry, SpanTable
from dsp.redact.scan import Scan, ScanConfig, scan
from dsp.redact.tokens import TokenBatch, Word, tokenize

__all__ = [
    "STYLES",
    "Redaction",
    "Redactor",
    "Span",
    "Style",
    "redact",
    "redact_batch",
]

Style = Literal["tag", "last4"]
STYLES: Final = ("tag", "last4")


@dataclass(frozen=True)
class Span:
    """One redacted span of a transcript: words ``start_word`` to ``end_word`` (exclusive)."""

    entity: str
    detector: str
    start_word: int
    end_word: int
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Redaction:
    """One transcript redacted: its text, its word list, and the spans taken out."""

    text: str
    words: list[Word]
    spans: list[Span]


class Redactor:
    """Runs a registry over batches of transcripts and writes the redacted views.

    ``entities`` limits the entity types applied (None: all of the
    registry's); ``style`` is ``"tag"`` or ``"last4"``.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        style: Style = "tag",
        registry: Registry | None = None,
        config: ScanConfig | None = None,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.registry = (registry or Registry()).select(entities)
        self.style = style
        self.config = config or ScanConfig()

    def find(self, transcripts: Sequence[Sequence[Word]]) -> tuple[TokenBatch, Scan, SpanTable]:
        """Tokens, scan and spans of a batch: the array stage, without the output views."""
        batch = tokenize(transcripts)
        scanned = scan(batch, self.config)
        return batch, scanned, self.registry.detect(scanned)

    def redact_batch(self, transcripts: Sequence[Sequence[Word]]) -> list[Redaction]:
        """Every transcript of the batch redacted, in order."""
        batch, scanned, table = self.find(transcripts)
        return self.views(transcripts, batch, scanned, table)

    def redact(self, words: Sequence[Word]) -> Redaction:
        """One transcript redacted."""
        return self.redact_batch([words])[0]

    def views(
        self,
        transcripts: Sequence[Sequence[Word]],
        batch: TokenBatch,
        scanned: Scan,
        table: SpanTable,
    ) -> list[Redaction]:
        """The redacted text, word list and spans of every transcript, from a span table."""
        texts = batch.texts
        offsets = batch.offsets.tolist()
        bounds = np.searchsorted(table.doc, np.arange(batch.transcripts + 1)).tolist()
        names = table.entity_names()
        detector_names = [table.detectors[i].name for i in table.detector.tolist()]
        firsts, lasts = table.first.tolist(), table.last.tolist()
        scores, runs = table.score.tolist(), table.run.tolist()
        starts, ends, segments = batch.start, batch.end, batch.segment
        results: list[Redaction] = []
        for doc, words in enumerate(transcripts):
            begin, finish = offsets[doc], offsets[doc + 1]
            low, high = bounds[doc], bounds[doc + 1]
            if low == high:
                results.append(Redaction(" ".join(texts[begin:finish]), list(words), []))
                continue
            new_texts = texts[begin:finish]
            out_words = list(words)
            spans: list[Span] = []
            for k in range(low, high):
                first, last = firsts[k] - begin, lasts[k] - begin
                replacement = self._replacement(names[k], runs[k], scanned)
                new_texts[first : last + 1] = [replacement] + [""] * (last - first)
                for i in range(first, last + 1):
                    j = begin + i
                    out_words[i] = Word(
                        new_texts[i], float(starts[j]), float(ends[j]), int(segments[j])
                    )
                spans.append(
                    Span(
                        names[k],
                        detector_names[k],
                        first,
                        last + 1,
                        float(starts[firsts[k]]),
                        float(ends[lasts[k]]),
                        scores[k],
                    )
                )
            text = " ".join(piece for piece in new_texts if piece)
            results.append(Redaction(text, out_words, spans))
        return results

    def _replacement(self, entity: str, run: int, scanned: Scan) -> str:
        if self.style == "last4" and entity == "CARD" and run >= 0:
            runs = scanned.runs
            end = int(runs.offset[run] + runs.ndigits[run])
            last4 = "".join(str(d) for d in scanned.digits[end - 4 : end].tolist())
            return f"[CARD ending {last4}]"
        return f"[{entity}]"


def redact_batch(
    transcripts: Sequence[Sequence[Word]],
    *,
    entities: Iterable[str] | None = None,
    style: Style = "tag",
    config: ScanConfig | None = None,
) -> list[Redaction]:
    """Redact a batch of transcripts with the default registry (see :class:`Redactor`)."""
    return Redactor(entities, style, config=config).redact_batch(transcripts)


def redact(
    words: Sequence[Word],
    *,
    entities: Iterable[str] | None = None,
    style: Style = "tag",
    config: ScanConfig | None = None,
) -> Redaction:
    """Redact one transcript with the default registry."""
    return redact_batch([words], entities=entities, style=style, config=config)[0]
