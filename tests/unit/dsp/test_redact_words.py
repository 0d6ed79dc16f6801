"""The per-word reads of redaction: the C extension against the same reads in Python.

``dsp.redact._words`` must give what ``dsp.redact.words``' Python functions give,
for any batch (lists and tuples of words, named and plain tuples, with and without
segments, words the vocabulary lacks), refuse what they refuse, and leave the whole
redaction unchanged when it runs instead of them.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.redact import Redactor, Word, words
from dsp.redact.vocab import VOCABULARY
from tests.support.native_words import native_words
from tests.support.spoken_corpus import generate

VOCABULARY_WORDS = sorted(VOCABULARY.ids)[:400]


def _both_texts_and_ids(
    word_lists: list[Sequence[Any]], table: dict[str, int], total: int
) -> tuple[tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    native_ids = np.full(total, 7, dtype=np.int32)
    python_ids = np.full(total, 7, dtype=np.int32)
    native = native_words().texts_and_ids(word_lists, table, native_ids)
    python = words.python_texts_and_ids(word_lists, table, python_ids)
    return (native, native_ids), (python, python_ids)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Sequence[Any]], bool]:
    """A batch as an ASR backend might hand it over: every word with or without a segment."""
    with_segment = draw(st.booleans())
    text = st.one_of(
        st.sampled_from(VOCABULARY_WORDS),
        st.from_regex(r"[0-9]{1,19}", fullmatch=True),
        st.text(max_size=8),
    )
    time = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(-(2**53), 2**53),
    )
    segment = st.integers(-(2**63), 2**63 - 1)

    def word(values: tuple[Any, ...]) -> tuple[Any, ...]:
        named = draw(st.booleans())
        if with_segment:
            return Word(*values) if named else tuple(values)
        return Word(*values[:3]) if named else tuple(values[:3])

    transcripts: list[Sequence[Any]] = []
    for _ in range(draw(st.integers(0, 6))):
        count = draw(st.integers(0, 12))
        made = [word(draw(st.tuples(text, time, time, segment))) for _ in range(count)]
        transcripts.append(tuple(made) if draw(st.booleans()) else made)
    return transcripts, with_segment


def _offsets_and_doc(word_lists: list[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(words_) for words_ in word_lists], dtype=np.int64)
    offsets = np.zeros(len(word_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    doc = np.repeat(np.arange(len(word_lists), dtype=np.int32), lengths)
    return offsets, doc


@settings(max_examples=300, deadline=None)
@given(batches())
def test_texts_and_ids_are_the_python_reads(batch: tuple[list[Sequence[Any]], bool]) -> None:
    word_lists, _ = batch
    total = sum(map(len, word_lists))
    (native, native_ids), (python, python_ids) = _both_texts_and_ids(
        word_lists, VOCABULARY.ids, total
    )
    assert native == python
    assert all(a is b for a, b in zip(native, python, strict=True))  # the words' own texts
    assert native_ids.tolist() == python_ids.tolist()
    expected = [VOCABULARY.ids.get(text, -1) for text in python]
    assert native_ids.tolist() == expected


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_gathered_fields_are_the_python_reads(
    batch: tuple[list[Sequence[Any]], bool], data: st.DataObject
) -> None:
    word_lists, with_segment = batch
    offsets, doc = _offsets_and_doc(word_lists)
    size = len(doc)
    picked = data.draw(st.lists(st.integers(0, size - 1), max_size=30)) if size else []
    fields = [(1, np.float64), (2, np.float64)] + ([(3, np.int64)] if with_segment else [])
    for tokens in (None, np.array(picked, dtype=np.int64), np.array(picked, dtype=np.int32)):
        for item, dtype in fields:
            count = size if tokens is None else len(tokens)
            native_out = np.empty(count, dtype=dtype)
            python_out = np.empty(count, dtype=dtype)
            wide = None if tokens is None else tokens.astype(np.int64)
            native_words().gather(word_lists, offsets, doc, wide, item, native_out)
            words.python_gather(word_lists, offsets, doc, wide, item, python_out)
            assert native_out.tobytes() == python_out.tobytes()
            flat = [word for words_ in word_lists for word in words_]
            chosen = range(size) if tokens is None else tokens.tolist()
            assert native_out.tolist() == [dtype(flat[t][item]).item() for t in chosen]
            # the public function widens the tokens itself
            assert words.gather(word_lists, offsets, doc, tokens, item, dtype).tolist() == (
                native_out.tolist()
            )


Refusal = Callable[[list[Sequence[Any]], np.ndarray, np.ndarray, np.ndarray], None]


def _both_gathers() -> list[Callable[..., None]]:
    return [native_words().gather, words.python_gather]


@pytest.mark.parametrize("token", [-1, 3])
def test_a_token_outside_the_batch_is_an_index_error(token: int) -> None:
    word_lists: list[Sequence[Any]] = [[("a", 0.0, 1.0), ("b", 1.0, 2.0)], [("c", 2.0, 3.0)]]
    offsets, doc = _offsets_and_doc(word_lists)
    for gather in _both_gathers():
        with pytest.raises(IndexError):
            gather(word_lists, offsets, doc, np.array([token]), 1, np.empty(1))


def test_a_transcript_shorter_than_its_batch_is_an_index_error() -> None:
    word_lists: list[Sequence[Any]] = [[("a", 0.0, 1.0), ("b", 1.0, 2.0)], [("c", 2.0, 3.0)]]
    offsets, doc = _offsets_and_doc(word_lists)
    word_lists[0] = word_lists[0][:1]
    for gather in _both_gathers():
        with pytest.raises(IndexError):
            gather(word_lists, offsets, doc, np.array([1]), 1, np.empty(1))
        with pytest.raises(IndexError):
            gather(word_lists, offsets, doc, None, 1, np.empty(3))


def test_a_word_without_the_field_or_with_a_string_time_is_refused() -> None:
    short: list[Sequence[Any]] = [[("a", 0.0, 1.0)]]
    offsets, doc = _offsets_and_doc(short)
    written: list[Sequence[Any]] = [[("a", "0.5", 1.0)]]
    for gather in _both_gathers():
        with pytest.raises(IndexError):
            gather(short, offsets, doc, None, 3, np.empty(1, dtype=np.int64))
        with pytest.raises(TypeError):  # float("0.5") would parse it: neither read does
            gather(written, offsets, doc, None, 1, np.empty(1))
        with pytest.raises(TypeError):
            gather(short, offsets, doc, None, 1, np.empty(1, dtype=np.int64))  # 0.0 as int
        with pytest.raises(OverflowError):
            gather([[("a", 0.0, 1.0, 2**63)]], offsets, doc, None, 3, np.empty(1, np.int64))


def test_ids_of_another_length_or_an_unhashable_text_are_refused() -> None:
    word_lists: list[Sequence[Any]] = [[("a", 0.0, 1.0), ("b", 1.0, 2.0)]]
    native = native_words()
    for reads in (native.texts_and_ids, words.python_texts_and_ids):
        for wrong in (1, 3):
            with pytest.raises(ValueError):
                reads(word_lists, {}, np.empty(wrong, dtype=np.int32))
        with pytest.raises(TypeError):
            reads([[(["a"], 0.0, 1.0)]], {}, np.empty(1, dtype=np.int32))


def test_the_extension_checks_its_buffers() -> None:
    native = native_words()
    word_lists: list[Sequence[Any]] = [[("a", 0.0, 1.0)]]
    offsets, doc = _offsets_and_doc(word_lists)
    with pytest.raises(TypeError, match="ids"):
        native.texts_and_ids(word_lists, {}, np.empty(1, dtype=np.int64))
    with pytest.raises(BufferError):  # read-only
        native.texts_and_ids(word_lists, {}, bytes(4))
    with pytest.raises(TypeError, match="out"):
        native.gather(word_lists, offsets, doc, None, 1, np.empty(1, dtype=np.float32))
    with pytest.raises(TypeError, match="doc"):
        native.gather(word_lists, offsets, doc.astype(np.int64), None, 1, np.empty(1))
    with pytest.raises(ValueError, match="one item per token"):
        native.gather(word_lists, offsets, doc, None, 1, np.empty(2))
    with pytest.raises(ValueError, match="offsets"):
        native.gather([*word_lists, []], offsets, doc, None, 1, np.empty(1))


def test_redaction_is_the_same_with_the_python_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    native_words()
    dense = [t.words for t in generate(150, seed=11)]
    calls = [t.words for t in generate(12, seed=12, talk=40)]
    mixed = [list(map(tuple, doc[:30])) for doc in dense[:20]] + [tuple(calls[0])]
    redactor = Redactor(style="last4")
    expected = [redactor.redact_batch(batch) for batch in (dense, calls, mixed)]
    assert any(r.spans for r in expected[0]) and any(r.spans for r in expected[1])
    monkeypatch.setattr(words, "_words", None)
    assert [redactor.redact_batch(batch) for batch in (dense, calls, mixed)] == expected


def test_a_word_moved_to_another_transcript_is_an_index_error() -> None:
    """The batch's offsets place each word; the same total in other places is refused."""
    word_lists: list[Sequence[Any]] = [[("a", 0.0, 1.0), ("b", 1.0, 2.0)], [("c", 2.0, 3.0)]]
    offsets, doc = _offsets_and_doc(word_lists)
    moved = word_lists[0].pop()  # type: ignore[attr-defined]
    word_lists[1].insert(0, moved)  # type: ignore[attr-defined]
    for gather in _both_gathers():
        with pytest.raises(IndexError):
            gather(word_lists, offsets, doc, None, 1, np.empty(3))


def test_an_id_beyond_int32_is_an_overflow_error() -> None:
    for reads in (native_words().texts_and_ids, words.python_texts_and_ids):
        with pytest.raises(OverflowError):
            reads([[("a", 0.0, 1.0)]], {"a": 2**31}, np.empty(1, dtype=np.int32))


class _Peeking(str):
    """A text whose hashing looks for the list of texts being built, as a profiler might:
    a list with empty slots in its hands would crash the interpreter."""

    hashed = 0
    found = 0

    def __hash__(self) -> int:
        _Peeking.hashed += 1
        for referrer in gc.get_referrers(self):
            if type(referrer) is list and len(referrer) == 3:
                _Peeking.found += 1
        return str.__hash__(self)

    __eq__ = str.__eq__


def test_the_list_of_texts_is_out_of_sight_until_it_is_whole() -> None:
    native = native_words()
    _Peeking.hashed = _Peeking.found = 0
    batch = [[("a", 0.0, 1.0), (_Peeking("b"), 1.0, 2.0), ("c", 2.0, 3.0)]]
    texts = native.texts_and_ids(batch, {}, np.empty(3, dtype=np.int32))
    assert texts == ["a", "b", "c"]
    assert _Peeking.hashed == 1 and _Peeking.found == 0
    assert gc.is_tracked(texts)
