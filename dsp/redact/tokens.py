"""ASR word lists to token arrays: one id per word, its times, segment and transcript.

A transcript is a sequence of words with start and end times in seconds and,
optionally, a segment id (an ASR segment or a speaker turn). A batch of
transcripts becomes one set of flat arrays (:class:`TokenBatch`), so every
later step runs once over the whole batch.

Words are matched as written against :data:`dsp.redact.vocab.VOCABULARY`
(one dictionary lookup each). A word it does not know is looked at once,
lower-cased:

- written digits ("4111", "09/27", "$49.99", "3:30", "+1-415-555-0134",
  "123-45-6789") become a ``NUMERAL`` of the batch with its digits, the
  separators it was written with (a group break before the digit that
  follows one) and flags for money, time, date and a leading "+";
- "4th", "22nd" are ordinals; "gb82..." is an IBAN anchor; other words
  mixing letters and digits are ``ALNUM`` (no digits of their own);
- an address with "@" is a written e-mail address;
- any other word is of no interest (id 0), or only as the end of a
  sentence when it ends with a full stop, and is remembered as such.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from dsp.redact.vocab import PUNCTUATION, VOCABULARY, Flag, Kind, Vocabulary
from dsp.redact.words import gather, texts_and_ids

__all__ = ["TokenBatch", "Word", "tokenize"]

_WHOLE_COLUMN_SHARE: Final = 4
"""A request for a quarter of the batch's words or more reads the whole column at once."""
_MAX_REMEMBERED: Final = 200_000  # words of no interest remembered, beyond the built-in ones
# ASCII digits only: "\d" also matches other scripts' digits, which are no digits here
_ORDINAL_NUMERAL: Final = re.compile(r"^([0-9]{1,2})(st|nd|rd|th)$")
_IBAN_ANCHOR: Final = re.compile(r"^[a-z]{2}[0-9]{2}[a-z0-9]*$")
_DECIMAL_MONEY: Final = re.compile(r"^\$?[0-9]+\.[0-9][0-9]$")
_DIGIT_GROUPS: Final = re.compile(r"[0-9]+")
_PAUSE_MARKS: Final = ",.;:"


class Word(NamedTuple):
    """One ASR word: its text, start and end in seconds, and its segment (or speaker turn)."""

    text: str
    start: float
    end: float
    segment: int = 0


_SEGMENT: Final = 3
"""Where a word tuple holds its segment."""


@dataclass(frozen=True)
class TokenBatch:
    """A batch of transcripts as flat token arrays, and the lookup tables for its ids.

    Transcript ``t`` holds tokens ``offsets[t]:offsets[t + 1]``. The tables
    (``kind`` ... ``pool_break``) are the shared vocabulary's, extended by
    the written numerals of this batch.

    Times and segments are read from the words only where they are needed
    (:meth:`start_of`, :meth:`end_of`, :meth:`segment_of`): the numbers, the
    keywords around them and the spans, a small part of a call's words.
    """

    texts: list[str]
    offsets: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int32]
    word_lists: list[Sequence[Any]]
    """Each transcript's words as given: ``(text, start, end[, segment])``. They are not
    copied into one flat list: a word is found by its transcript and place, so the
    lists must not change until the batch's views are made (:meth:`Redactor.views` checks
    their lengths)."""
    has_segment: bool
    doc: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int8]
    ctx: npt.NDArray[np.uint32]
    flags: npt.NDArray[np.uint16]
    digit_start: npt.NDArray[np.int32]
    digit_count: npt.NDArray[np.int32]
    pool: npt.NDArray[np.int8]
    pool_break: npt.NDArray[np.bool_]
    _columns: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """Whole columns of the words, once read (see :meth:`_field`)."""

    @property
    def size(self) -> int:
        """Tokens in the batch."""
        return len(self.ids)

    @property
    def transcripts(self) -> int:
        return len(self.offsets) - 1

    def times_of(
        self, tokens: npt.NDArray[np.integer]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Start, end and segment of the words at ``tokens``."""
        return self.start_of(tokens), self.end_of(tokens), self.segment_of(tokens)

    def start_of(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
        """Start times (seconds) of the words at ``tokens``."""
        return self._field(1, tokens, np.float64)

    def end_of(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
        """End times (seconds) of the words at ``tokens``."""
        return self._field(2, tokens, np.float64)

    def segment_of(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        """Segments (or speaker turns) of the words at ``tokens``; 0 for words without one."""
        if not self.has_segment:
            return np.zeros(len(tokens), dtype=np.int64)
        return self._field(_SEGMENT, tokens, np.int64)

    def _field(
        self, item: int, tokens: npt.NDArray[np.integer], dtype: type[np.float64] | type[np.int64]
    ) -> np.ndarray:
        """Field ``item`` of the words at ``tokens``. Where they are a large share of the
        batch (dense payment talk), the whole column is read once and kept: one pass over
        the words in order beats gathering them again and again."""
        if len(tokens) == 0:
            return np.zeros(0, dtype=dtype)
        column = self._columns.get(item)
        if column is None and len(tokens) * _WHOLE_COLUMN_SHARE >= self.size:
            column = gather(self.word_lists, self.offsets, self.doc, None, item, dtype)
            self._columns[item] = column
        if column is not None:
            return column[tokens]
        return gather(self.word_lists, self.offsets, self.doc, tokens, item, dtype)


# flags as plain ints: an IntFlag's "|" makes a new enum member each time
_PAUSE: Final = int(Flag.PAUSE)
_STOP: Final = int(Flag.STOP)
_PLUS: Final = int(Flag.PLUS)
_MONEY: Final = int(Flag.MONEY)
_TIME: Final = int(Flag.TIME)
_DATE: Final = int(Flag.DATE)
_IBAN: Final = int(Flag.IBAN_ANCHOR)

Entry = tuple[int, bytes, bytes, int]
"""A word the vocabulary lacks, as read: its kind, its digits as ASCII, a 1 before each
digit that follows a separator, and its flags. Entries live as long as their batch: they
are numbers and addresses, which no memory outside the batch may keep."""


class _Extra:
    """Entries this batch adds to the vocabulary: written numerals and the like."""

    def __init__(self, base: Vocabulary) -> None:
        self.base = base
        self.first_id = len(base)
        self.kind: list[int] = []
        self.flags: list[int] = []
        self.start: list[int] = []
        self.count: list[int] = []
        self.digits = bytearray()  # ASCII, as written
        self.breaks = bytearray()
        self.pool_size = len(base.pool)
        self.ids: dict[str, int] = {}

    def add(self, word: str, entry: Entry) -> int:
        kind, digits, breaks, flags = entry
        index = self.first_id + len(self.kind)
        self.ids[word] = index
        self.kind.append(kind)
        self.flags.append(flags)
        self.start.append(self.pool_size + len(self.digits))
        self.count.append(len(digits))
        self.digits += digits
        self.breaks += breaks
        return index

    def add_digit_words(self, words: list[str]) -> list[int]:
        """Ids of words made of digits only ("4111"), added together without parsing each."""
        unique = [word for word in dict.fromkeys(words) if word not in self.ids]
        if unique:
            lengths = np.fromiter(map(len, unique), np.int64, len(unique))
            first = self.first_id + len(self.kind)
            self.ids.update(zip(unique, range(first, first + len(unique)), strict=True))
            self.kind += [Kind.NUMERAL] * len(unique)
            self.flags += [0] * len(unique)
            offset = self.pool_size + len(self.digits)
            self.start += (np.cumsum(lengths) - lengths + offset).tolist()
            self.count += lengths.tolist()
            written = "".join(unique).encode("ascii")
            self.digits += written
            self.breaks += bytes(len(written))
        ids = self.ids
        return [ids[word] for word in words]

    def classify(self, written: str) -> int:
        """The id of a word the vocabulary does not know as written."""
        known = self.ids.get(written)
        if known is not None:
            return known
        found = self._read(written)
        if isinstance(found, int):
            return found
        return self.add(written, found)

    def _remember(self, written: str, found: int) -> int:
        if len(self.base.ids) < _MAX_REMEMBERED:
            self.base.ids[written] = found  # "The" as "the" from now on
        return found

    def _read(self, written: str) -> int | Entry:
        """A base id for ``written``, or the entry this batch must add for it."""
        word = written.lower()
        if word != written:
            known = self.base.ids.get(word)
            if known is not None:
                return self._remember(written, known)
        core = word.rstrip(PUNCTUATION)
        flags = 0
        if core != word:
            flags |= _PAUSE if word[len(core)] in _PAUSE_MARKS else 0
            flags |= _STOP if word[-1] in ".?!" else 0
            base = self.base.ids.get(core + word[-1])
            if base is not None:
                return base
        if "@" in core and "." in core.rpartition("@")[2]:
            return (Kind.EMAIL, b"", b"", flags)
        if core.isalpha() or not any(c.isdigit() for c in core):
            return self._remember(written, self.base.stop_id if flags & _STOP else 0)
        if any(c.isalpha() for c in core):
            ordinal = _ORDINAL_NUMERAL.match(core)
            if ordinal:
                digits = ordinal.group(1).encode("ascii")
                return (Kind.ORDINAL, digits, bytes(len(digits)), flags)
            if _IBAN_ANCHOR.match(core):
                flags |= _IBAN
            return (Kind.ALNUM, b"", b"", flags)
        return _numeral(core, flags)

    def tables(self) -> tuple[np.ndarray, ...]:
        base = self.base
        if not self.kind:
            return (
                base.kind,
                base.ctx,
                base.flags,
                base.digit_start,
                base.digit_count,
                base.pool,
                base.pool_break,
            )
        digits = np.frombuffer(self.digits, np.uint8) - np.uint8(48)
        return (
            np.concatenate([base.kind, np.array(self.kind, dtype=np.int8)]),
            np.concatenate([base.ctx, np.zeros(len(self.kind), dtype=np.uint32)]),
            np.concatenate([base.flags, np.array(self.flags, dtype=np.uint16)]),
            np.concatenate([base.digit_start, np.array(self.start, dtype=np.int32)]),
            np.concatenate([base.digit_count, np.array(self.count, dtype=np.int32)]),
            np.concatenate([base.pool, digits.view(np.int8)]),
            np.concatenate([base.pool_break, np.frombuffer(self.breaks, np.uint8) != 0]),
        )


def _numeral(core: str, flags: int) -> Entry:
    """A written number: its digits, a break where a separator stood, money/time/date."""
    groups = _DIGIT_GROUPS.findall(core)
    digits = "".join(groups).encode("ascii")
    breaks = bytearray(len(digits))
    position = 0
    for group in groups[:-1]:
        position += len(group)
        breaks[position] = 1
    if core.startswith("+"):
        flags |= _PLUS
    if core[0] in "$€£" or _DECIMAL_MONEY.match(core):
        flags |= _MONEY
    if ":" in core:
        flags |= _TIME
    if "/" in core:
        flags |= _DATE
    return (Kind.NUMERAL, digits, bytes(breaks), flags)


def tokenize(
    transcripts: Sequence[Sequence[Word] | Sequence[tuple]],
    vocabulary: Vocabulary = VOCABULARY,
) -> TokenBatch:
    """Turn a batch of word lists into one :class:`TokenBatch`.

    Each word is a :class:`Word` or a tuple ``(text, start, end[, segment])``, every word
    of the batch of the same length, times as numbers. The word lists are kept, not
    copied: they must not change while the batch is in use. The words are taken as given:
    times and segments are read where the scan needs them, not checked for every word.
    """
    word_lists = list(transcripts)
    lengths = np.fromiter(map(len, word_lists), np.int64, len(word_lists))
    offsets = np.zeros(len(word_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    texts, ids = texts_and_ids(word_lists, vocabulary.ids, int(offsets[-1]))
    extra = _Extra(vocabulary)
    unknown = np.flatnonzero(ids < 0).tolist()
    if unknown:
        words = [texts[i] for i in unknown]
        plain = [word.isdigit() and word.isascii() for word in words]
        digit_words = list(compress(words, plain))
        if digit_words:
            ids[list(compress(unknown, plain))] = extra.add_digit_words(digit_words)
        others = [not flag for flag in plain]
        if not all(plain):
            classify = extra.classify
            ids[list(compress(unknown, others))] = list(map(classify, compress(words, others)))
    kind, ctx, flags, digit_start, digit_count, pool, pool_break = extra.tables()
    doc = np.repeat(np.arange(len(word_lists), dtype=np.int32), lengths)
    return TokenBatch(
        texts=texts,
        offsets=offsets,
        ids=ids,
        word_lists=word_lists,
        has_segment=next((len(words[0]) > 3 for words in word_lists if len(words)), False),
        doc=doc,
        kind=kind,
        ctx=ctx,
        flags=flags,
        digit_start=digit_start,
        digit_count=digit_count,
        pool=pool,
        pool_break=pool_break,
    )
