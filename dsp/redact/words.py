"""The per-word work of a batch of word lists: reading texts, ids and fields, and writing
the redacted views.

Redaction turns ASR words into arrays. Everything after that is NumPy over whole
columns, but these reads touch every word (the texts and ids) or many of them (the
times of the numbers and the keywords around them). Done with Python's iterators they
were over half of what redacting a call-length transcript cost, so they are done in
C when the extension ``dsp.redact._words`` is built (``pip install`` builds it; the
package also works without it). The functions here are the reference: the same
reads in Python, which the extension is tested against and which run where it is
missing.

- :func:`texts_and_ids`: every word's text in one list, and its id in a table;
- :func:`gather`: one field (start, end, segment) of the words at some tokens;
- :func:`changed_words`: the words that replace the spans' words;
- :func:`assemble`: the way back, each transcript's redacted text and word list from
  the batch's texts and its spans (a loop over the transcripts that cost a third of a
  redaction in Python).

A batch is a list of transcripts (each a list or tuple of words); a word is a tuple
``(text, start, end[, segment])`` or any other sequence. Times are read as C doubles
from real numbers (``float``, ``int``, anything with ``__float__``: not strings) and
segments as 64-bit integers from anything with ``__index__``; others are a TypeError.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from math import ldexp
from operator import getitem, index, itemgetter
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

try:
    from dsp.redact import _words  # type: ignore[attr-defined]  # C, no stubs
except ImportError as exc:  # not built: the reads below in Python
    _words = None
    NATIVE_MISSING: str | None = f"dsp.redact._words is not built ({exc})"
else:
    NATIVE_MISSING = None

__all__ = [
    "NATIVE",
    "NATIVE_MISSING",
    "Assembly",
    "assemble",
    "changed_words",
    "gather",
    "texts_and_ids",
]

NATIVE: Final = _words is not None
"""Whether the reads run in C."""


def texts_and_ids(
    word_lists: list[Sequence[Any]], table: dict[str, int], total: int
) -> tuple[list[str], npt.NDArray[np.int32]]:
    """Every word's text in order, and its id in ``table`` (-1 where it has none).

    ``total`` is the number of words in ``word_lists``; a batch with another count is
    refused (ValueError)."""
    ids = np.empty(total, dtype=np.int32)
    if _words is not None:
        return _words.texts_and_ids(word_lists, table, ids), ids
    return python_texts_and_ids(word_lists, table, ids), ids


def python_texts_and_ids(
    word_lists: list[Sequence[Any]], table: dict[str, int], ids: npt.NDArray[np.int32]
) -> list[str]:
    """:func:`texts_and_ids` in Python, writing into ``ids``."""
    texts = list(map(itemgetter(0), chain.from_iterable(word_lists)))
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} words for {len(ids)} ids")
    ids[:] = np.fromiter(map(table.get, texts, repeat(-1)), np.int32, len(texts))
    return texts


def gather(
    word_lists: list[Sequence[Any]],
    offsets: npt.NDArray[np.int64],
    doc: npt.NDArray[np.int32],
    tokens: npt.NDArray[np.integer] | None,
    item: int,
    dtype: type[np.float64] | type[np.int64],
) -> np.ndarray:
    """Field ``item`` of the words at ``tokens`` (None: every word in order), as ``dtype``.

    Token ``t`` is word ``t - offsets[doc[t]]`` of transcript ``doc[t]``, as in a
    :class:`~dsp.redact.tokens.TokenBatch`. A token outside the batch, or a transcript
    shorter than the batch says, raises IndexError."""
    if tokens is not None:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    out = np.empty(len(doc) if tokens is None else len(tokens), dtype=dtype)
    if _words is not None:
        _words.gather(word_lists, offsets, doc, tokens, item, out)
    else:
        python_gather(word_lists, offsets, doc, tokens, item, out)
    return out


def python_gather(
    word_lists: list[Sequence[Any]],
    offsets: npt.NDArray[np.int64],
    doc: npt.NDArray[np.int32],
    tokens: npt.NDArray[np.int64] | None,
    item: int,
    out: np.ndarray,
) -> None:
    """:func:`gather` in Python, writing into ``out``."""

    # ldexp(x, 0) reads x as the C reads do (PyFloat_AsDouble): float() would parse a str
    def read(values: Any) -> Any:
        return map(ldexp, values, repeat(0)) if out.dtype == np.float64 else map(index, values)

    if len(offsets) - 1 != len(word_lists):
        raise ValueError("offsets do not match the word lists")
    if tokens is None:
        if list(map(len, word_lists)) == np.diff(offsets).tolist():
            words = list(chain.from_iterable(word_lists))
            out[:] = np.fromiter(read(map(itemgetter(item), words)), out.dtype, len(words))
            return
        tokens = np.arange(len(doc), dtype=np.int64)  # a transcript changed: word by place
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= len(doc)):
        raise IndexError("a token is outside the batch")
    docs = doc[tokens]
    places = tokens - offsets[docs]
    lists = map(word_lists.__getitem__, docs.tolist())
    words = map(getitem, lists, places.tolist())
    out[:] = np.fromiter(read(map(itemgetter(item), words)), out.dtype, len(tokens))


def changed_words(
    replacements: list[str],
    change_bounds: npt.NDArray[np.int64],
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
    segments: npt.NDArray[np.int64],
    *,
    result: type,
) -> list[Any]:
    """The words that stand for the spans' words: ``result(text, start, end, segment)``.

    Span ``s`` changes the words ``change_bounds[s]:change_bounds[s + 1]`` (at least
    one); the first reads ``replacements[s]``, the others an empty text; each keeps the
    time and segment given for it in ``starts``, ``ends`` and ``segments`` (one item
    per changed word). ``result`` is a class of four-item tuples (a ``NamedTuple``)."""
    if type(replacements) is not list:  # the extension takes a list
        replacements = list(replacements)
    change_bounds = np.ascontiguousarray(change_bounds, dtype=np.int64)
    starts = np.ascontiguousarray(starts, dtype=np.float64)
    ends = np.ascontiguousarray(ends, dtype=np.float64)
    segments = np.ascontiguousarray(segments, dtype=np.int64)
    changes = len(starts)
    if not (len(change_bounds) == len(replacements) + 1 and len(ends) == len(segments) == changes):
        raise ValueError("the parts of the changed words have sizes that do not fit together")
    if (
        change_bounds[0] != 0
        or change_bounds[-1] != changes
        or bool(np.any(np.diff(change_bounds) < 1))
    ):
        raise ValueError(f"change_bounds must rise from 0 to {changes}, by 1 or more a span")
    if not (isinstance(result, type) and issubclass(result, tuple)):
        raise TypeError(f"result must be a tuple class, got {result!r}")
    if _words is not None:
        return _words.changed_words(replacements, change_bounds, starts, ends, segments, result)
    return python_changed_words(replacements, change_bounds, starts, ends, segments, result)


def python_changed_words(
    replacements: list[str],
    change_bounds: npt.NDArray[np.int64],
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
    segments: npt.NDArray[np.int64],
    result: type,
) -> list[Any]:
    """:func:`changed_words` in Python (parts already checked)."""
    texts: list[str] = []
    for replacement, length in zip(replacements, np.diff(change_bounds).tolist(), strict=True):
        texts.append(replacement)
        texts += [""] * (length - 1)
    # tuple.__new__ through map: no Python frame per word
    return list(
        map(
            tuple.__new__,
            repeat(result),
            zip(texts, starts.tolist(), ends.tolist(), segments.tolist(), strict=True),
        )
    )


class Assembly(NamedTuple):
    """What :func:`assemble` puts together: the batch's texts and the spans' changes.

    Token ``t`` of the batch is ``texts[t]``; transcript ``d`` holds tokens
    ``offsets[d]:offsets[d + 1]`` and spans ``span_bounds[d]:span_bounds[d + 1]``. Span
    ``s`` covers tokens ``firsts[s]..lasts[s]`` (inclusive; spans in token order), reads
    ``replacements[s]`` in the text, and changes the words ``changed_at[c]`` (tokens) to
    ``new_words[c]`` for ``c`` in ``change_bounds[s]:change_bounds[s + 1]``.
    """

    texts: list[str]
    offsets: npt.NDArray[np.int64]
    span_bounds: npt.NDArray[np.int64]
    firsts: npt.NDArray[np.int64]
    lasts: npt.NDArray[np.int64]
    replacements: list[str]
    spans: list[Any]
    changed_at: npt.NDArray[np.int64]
    change_bounds: npt.NDArray[np.int64]
    new_words: list[Any]


def assemble(
    word_lists: Sequence[Sequence[Any]], parts: Assembly, *, skip_empty: bool, result: type
) -> list[Any]:
    """Each transcript's ``result(text, words, spans)``: its text joined by spaces from its
    texts between its spans and the spans' replacements (empty texts left out with
    ``skip_empty``), a copy of its word list with the spans' words changed, and its spans.

    ``result`` is a class of three-item tuples (a ``NamedTuple``). Parts that do not fit
    together are refused (ValueError), as is a word list whose length is no longer its
    share of the batch ("changed after it was tokenized")."""
    # the extension takes lists and int64 arrays: other sequences are copied into them
    parts = Assembly(
        *(
            np.ascontiguousarray(value, dtype=np.int64)
            if isinstance(value, np.ndarray)
            else value
            if type(value) is list
            else list(value)
            for value in parts
        )
    )
    if type(word_lists) is not list:
        word_lists = list(word_lists)
    _check_assembly(len(word_lists), parts)
    if not (isinstance(result, type) and issubclass(result, tuple)):
        raise TypeError(f"result must be a tuple class, got {result!r}")
    if _words is not None:
        return _words.assemble(word_lists, *parts, skip_empty, result)
    return python_assemble(word_lists, parts, skip_empty=skip_empty, result=result)


def _check_assembly(documents: int, parts: Assembly) -> None:
    """Refuse (ValueError) parts whose sizes or bounds do not fit together."""
    spans, changes = len(parts.firsts), len(parts.changed_at)
    sizes_fit = (
        len(parts.offsets) == documents + 1
        and len(parts.span_bounds) == documents + 1
        and len(parts.lasts) == spans
        and len(parts.replacements) == spans
        and len(parts.spans) == spans
        and len(parts.change_bounds) == spans + 1
        and len(parts.new_words) == changes
    )
    if not sizes_fit:
        raise ValueError("the parts of an assembly have sizes that do not fit together")
    for name, bounds, top in (
        ("offsets", parts.offsets, len(parts.texts)),
        ("span_bounds", parts.span_bounds, spans),
        ("change_bounds", parts.change_bounds, changes),
    ):
        if bounds[0] != 0 or bounds[-1] != top or bool(np.any(np.diff(bounds) < 0)):
            raise ValueError(f"{name} must rise from 0 to {top}")
    if not spans:
        return
    span_doc = np.repeat(np.arange(documents), np.diff(parts.span_bounds))
    inside = (
        (parts.firsts >= parts.offsets[span_doc])
        & (parts.lasts >= parts.firsts)
        & (parts.lasts < parts.offsets[span_doc + 1])
    )
    if not bool(np.all(inside)):
        raise ValueError("every span must cover tokens first..last of its own transcript")


def python_assemble(
    word_lists: list[Sequence[Any]], parts: Assembly, *, skip_empty: bool, result: type
) -> list[Any]:
    """:func:`assemble` in Python (parts already checked)."""
    texts, replacements, spans, new_words = (
        parts.texts,
        parts.replacements,
        parts.spans,
        parts.new_words,
    )
    offsets, span_bounds = parts.offsets.tolist(), parts.span_bounds.tolist()
    firsts, lasts = parts.firsts.tolist(), parts.lasts.tolist()
    changed_at, change_bounds = parts.changed_at.tolist(), parts.change_bounds.tolist()
    join = _join_words if skip_empty else " ".join
    results: list[Any] = []
    for doc in range(len(word_lists)):
        begin, finish = offsets[doc], offsets[doc + 1]
        low, high = span_bounds[doc], span_bounds[doc + 1]
        doc_words = list(word_lists[doc])
        if len(doc_words) != finish - begin:
            raise ValueError(f"transcript {doc} changed after it was tokenized")
        if low == high:
            results.append(tuple.__new__(result, (join(texts[begin:finish]), doc_words, [])))
            continue
        pieces: list[str] = []
        at = begin
        for span in range(low, high):
            if firsts[span] > at:
                pieces += texts[at : firsts[span]]
            pieces.append(replacements[span])
            at = max(at, lasts[span] + 1)
        pieces += texts[at:finish]
        for change in range(change_bounds[low], change_bounds[high]):
            place = changed_at[change] - begin
            if not 0 <= place < len(doc_words):
                raise IndexError(f"a changed word of transcript {doc} is outside it")
            doc_words[place] = new_words[change]
        results.append(tuple.__new__(result, (join(pieces), doc_words, spans[low:high])))
    return results


def _join_words(words: list[str]) -> str:
    """The words joined by spaces, empty ones left out."""
    return " ".join(filter(None, words))
