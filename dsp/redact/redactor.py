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

import functools
import gc
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Final, Literal, NamedTuple, ParamSpec, TypeVar

import numpy as np

from dsp.redact.checksums import ragged_positions
from dsp.redact.registry import Registry, SpanTable
from dsp.redact.scan import Scan, ScanConfig, scan
from dsp.redact.tokens import TokenBatch, Word, tokenize
from dsp.redact.vocab import VOCABULARY
from dsp.redact.words import Assembly, assemble, changed_words

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
_P = ParamSpec("_P")
_R = TypeVar("_R")
STYLES: Final = ("tag", "last4")


class Span(NamedTuple):
    """One redacted span of a transcript: words ``start_word`` to ``end_word`` (exclusive)."""

    entity: str
    detector: str
    start_word: int
    end_word: int
    start: float
    end: float
    score: float


class Redaction(NamedTuple):
    """One transcript redacted: its text, its word list, and the spans taken out."""

    text: str
    words: list[Word]
    spans: list[Span]


def _collector_paused(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``method`` with Python's cyclic garbage collector paused.

    Building the views allocates a tuple per redacted word and a list per
    transcript; each allocation burst would start collections that walk the
    caller's whole heap (the batch's words among it) again and again,
    several times the cost of the building itself. Nothing built here can
    form a reference cycle, so there is nothing for the collector to find.
    """

    @functools.wraps(method)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


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

    @_collector_paused
    def views(
        self,
        transcripts: Sequence[Sequence[Word]],
        batch: TokenBatch,
        scanned: Scan,
        table: SpanTable,
    ) -> list[Redaction]:
        """The redacted text, word list and spans of every transcript, from a span table.

        Each transcript's text is joined from the batch's words between its spans and the
        spans' replacements, and its word list is a copy of the transcript's with the
        spans' words replaced; a transcript without spans is joined and copied as it is.
        A word list that changed length since the batch was made is refused (ValueError):
        the spans would point at other words.
        The spans must be in token order, as :meth:`Registry.detect` gives them (a span
        that began before the one ahead of it would let that one's words through).
        """
        if len(table) > 1 and bool(np.any(table.first[1:] < table.first[:-1])):
            raise ValueError("the span table is not in token order")
        firsts, lasts = table.first.tolist(), table.last.tolist()
        names = table.entity_names()
        replacements = [
            self._replacement(name, run, scanned)
            for name, run in zip(names, table.run.tolist(), strict=True)
        ]
        lengths = table.last - table.first + 1
        changed, _ = ragged_positions(table.first, lengths)
        changed_from = np.zeros(len(table) + 1, dtype=np.int64)
        np.cumsum(lengths, out=changed_from[1:])
        starts, ends, segments = batch.times_of(changed)
        new_words = changed_words(replacements, changed_from, starts, ends, segments, result=Word)
        begins = batch.offsets[table.doc].tolist()
        spans = list(
            map(
                tuple.__new__,
                repeat(Span),
                zip(
                    names,
                    [table.detectors[i].name for i in table.detector.tolist()],
                    [first - begin for first, begin in zip(firsts, begins, strict=True)],
                    [last + 1 - begin for last, begin in zip(lasts, begins, strict=True)],
                    batch.start_of(table.first).tolist(),
                    batch.end_of(table.last).tolist(),
                    table.score.tolist(),
                    strict=True,
                ),
            )
        )
        parts = Assembly(
            texts=batch.texts,
            offsets=batch.offsets,
            span_bounds=np.searchsorted(table.doc, np.arange(len(transcripts) + 1)),
            firsts=table.first,
            lasts=table.last,
            replacements=replacements,
            spans=spans,
            changed_at=changed,
            change_bounds=changed_from,
            new_words=new_words,
        )
        skip_empty = bool(np.any(batch.ids == VOCABULARY.empty_id))
        return assemble(batch.word_lists, parts, skip_empty=skip_empty, result=Redaction)

    def _replacement(self, entity: str, run: int, scanned: Scan) -> str:
        if self.style == "last4" and entity == "CARD" and run != -1:
            runs = scanned.runs
            if run < -1 and scanned.parts is not None:  # a part of a joined number
                runs, run = scanned.parts.runs, -2 - run
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
