"""The per-word reads of a batch of word lists: texts with their vocabulary ids, and fields.

Redaction turns ASR words into arrays. Everything after that is NumPy over whole
columns, but these reads touch every word (the texts and ids) or many of them (the
times of the numbers and the keywords around them). Done with Python's iterators they
were over half of what redacting a call-length transcript cost, so they are done in
C when the extension ``dsp.redact._words`` is built (``pip install`` builds it; the
package also works without it). The functions here are the reference: the same
reads in Python, which the extension is tested against and which run where it is
missing.

- :func:`texts_and_ids`: every word's text in one list, and its id in a table;
- :func:`gather`: one field (start, end, segment) of the words at some tokens.

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
from typing import Any, Final

import numpy as np
import numpy.typing as npt

try:
    from dsp.redact import _words  # type: ignore[attr-defined]  # C, no stubs
except ImportError as exc:  # not built: the reads below in Python
    _words = None
    NATIVE_MISSING: str | None = f"dsp.redact._words is not built ({exc})"
else:
    NATIVE_MISSING = None

__all__ = ["NATIVE", "NATIVE_MISSING", "gather", "texts_and_ids"]

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
