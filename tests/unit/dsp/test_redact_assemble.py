"""The redacted views put together: the C extension against the same work in Python.

``dsp.redact._words``' ``changed_words`` and ``assemble`` must give what
``dsp.redact.words``' Python functions give for any batch and any spans in token order
(overlapping ones, empty texts left out or kept), and refuse parts that do not fit
together, whether they come through the checking wrappers or straight to the extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.redact import Word, words
from dsp.redact.words import Assembly
from tests.support.native_words import native_words


class Result(NamedTuple):
    text: str
    words: list[Any]
    spans: list[Any]


@st.composite
def assemblies(draw: st.DrawFn) -> tuple[list[Sequence[Any]], Assembly, bool]:
    """A batch, spans in token order (some overlapping) and what they change."""
    text = st.sampled_from(["", "card", "4111", "one", "é", "two words"])
    word_lists: list[Sequence[Any]] = []
    texts: list[str] = []
    firsts: list[int] = []
    lasts: list[int] = []
    span_bounds = [0]
    for _ in range(draw(st.integers(0, 5))):
        begin = len(texts)
        made = [Word(draw(text), float(i), i + 0.5, i % 2) for i in range(draw(st.integers(0, 9)))]
        word_lists.append(tuple(made) if draw(st.booleans()) else made)
        texts += [word.text for word in made]
        if made:
            starts = sorted(draw(st.lists(st.integers(0, len(made) - 1), max_size=4)))
            for start in starts:
                firsts.append(begin + start)
                lasts.append(begin + draw(st.integers(start, len(made) - 1)))
        span_bounds.append(len(firsts))
    changed_at = [
        token for first, last in zip(firsts, lasts, strict=True) for token in range(first, last + 1)
    ]
    change_bounds = np.cumsum(
        [0] + [last - first + 1 for first, last in zip(firsts, lasts, strict=True)]
    )
    replacements = [draw(st.sampled_from(["[CARD]", "[SSN]", ""])) for _ in firsts]
    offsets = np.cumsum([0] + [len(made) for made in word_lists])
    parts = Assembly(
        texts=texts,
        offsets=offsets.astype(np.int64),
        span_bounds=np.array(span_bounds, dtype=np.int64),
        firsts=np.array(firsts, dtype=np.int64),
        lasts=np.array(lasts, dtype=np.int64),
        replacements=replacements,
        spans=[("span", first, last) for first, last in zip(firsts, lasts, strict=True)],
        changed_at=np.array(changed_at, dtype=np.int64),
        change_bounds=change_bounds.astype(np.int64),
        new_words=[Word(f"new {token}", 0.0, 1.0, 7) for token in changed_at],
    )
    return word_lists, parts, draw(st.booleans())


@settings(max_examples=400, deadline=None)
@given(assemblies())
def test_assembly_is_the_python_one(case: tuple[list[Sequence[Any]], Assembly, bool]) -> None:
    word_lists, parts, skip_empty = case
    native = native_words().assemble(word_lists, *parts, skip_empty, Result)
    python = words.python_assemble(word_lists, parts, skip_empty=skip_empty, result=Result)
    assert native == python
    assert all(type(made) is Result for made in native)
    for made, original in zip(native, word_lists, strict=True):
        assert made.words is not original and isinstance(made.words, list)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 4), max_size=8), st.data())
def test_changed_words_are_the_python_ones(lengths: list[int], data: st.DataObject) -> None:
    changes = sum(lengths)
    bounds = np.cumsum([0, *lengths]).astype(np.int64)
    replacements = [f"[R{i}]" for i in range(len(lengths))]
    floats = st.floats(allow_nan=False, width=64)
    starts = np.array(data.draw(st.lists(floats, min_size=changes, max_size=changes)))
    ends = np.array(data.draw(st.lists(floats, min_size=changes, max_size=changes)))
    segments = np.array(
        data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=changes, max_size=changes)),
        dtype=np.int64,
    )
    native = native_words().changed_words(
        replacements, bounds, starts.astype(np.float64), ends.astype(np.float64), segments, Word
    )
    python = words.python_changed_words(
        replacements, bounds, starts.astype(np.float64), ends.astype(np.float64), segments, Word
    )
    assert native == python
    assert all(type(word) is Word for word in native)
    assert [word.text for word in native if word.text] == replacements


def _one_transcript() -> tuple[list[Sequence[Any]], Assembly]:
    word_lists: list[Sequence[Any]] = [[Word("my", 0, 1), Word("4111", 1, 2), Word("x", 2, 3)]]
    parts = Assembly(
        texts=["my", "4111", "x"],
        offsets=np.array([0, 3], dtype=np.int64),
        span_bounds=np.array([0, 1], dtype=np.int64),
        firsts=np.array([1], dtype=np.int64),
        lasts=np.array([1], dtype=np.int64),
        replacements=["[CARD]"],
        spans=["the span"],
        changed_at=np.array([1], dtype=np.int64),
        change_bounds=np.array([0, 1], dtype=np.int64),
        new_words=[Word("[CARD]", 1, 2)],
    )
    return word_lists, parts


def test_one_transcript_is_put_together_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    native_words()
    word_lists, parts = _one_transcript()
    expected = [
        Result(
            "my [CARD] x", [Word("my", 0, 1), Word("[CARD]", 1, 2), Word("x", 2, 3)], ["the span"]
        )
    ]
    assert words.assemble(word_lists, parts, skip_empty=False, result=Result) == expected
    monkeypatch.setattr(words, "_words", None)
    assert words.assemble(word_lists, parts, skip_empty=False, result=Result) == expected
    assert word_lists[0][1] == Word("4111", 1, 2)  # the batch's own list is not changed


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"offsets": np.array([0, 2], dtype=np.int64)}, "rise from 0 to 3"),
        ({"span_bounds": np.array([0], dtype=np.int64)}, "sizes"),
        ({"replacements": []}, "sizes"),
        ({"change_bounds": np.array([1, 1], dtype=np.int64)}, "rise from 0"),
        ({"firsts": np.array([2], dtype=np.int64)}, "first..last"),
        ({"lasts": np.array([3], dtype=np.int64)}, "first..last"),
    ],
)
def test_parts_that_do_not_fit_are_refused(change: dict[str, Any], reason: str) -> None:
    word_lists, parts = _one_transcript()
    with pytest.raises(ValueError, match=reason):
        words.assemble(word_lists, parts._replace(**change), skip_empty=False, result=Result)


def test_a_transcript_that_changed_length_is_refused_either_way() -> None:
    word_lists, parts = _one_transcript()
    word_lists[0].append(Word("more", 3, 4))  # type: ignore[attr-defined]
    for skip_empty in (False, True):
        with pytest.raises(ValueError, match="changed after it was tokenized"):
            native_words().assemble(word_lists, *parts, skip_empty, Result)
        with pytest.raises(ValueError, match="changed after it was tokenized"):
            words.python_assemble(word_lists, parts, skip_empty=skip_empty, result=Result)


def test_the_extension_refuses_parts_the_wrappers_would_have_checked() -> None:
    """Straight to the extension, past the checks in Python: errors, never a crash."""
    native = native_words()
    word_lists, parts = _one_transcript()
    bad = [
        parts._replace(offsets=np.array([0], dtype=np.int64)),
        parts._replace(offsets=np.array([2, 1], dtype=np.int64)),
        parts._replace(span_bounds=np.array([0, 5], dtype=np.int64)),
        parts._replace(firsts=np.array([-4], dtype=np.int64)),
        parts._replace(changed_at=np.array([90], dtype=np.int64)),
        parts._replace(change_bounds=np.array([0, 9], dtype=np.int64)),
    ]
    reasons = ["do not fit", "do not rise", "do not rise", "does not cover", "outside", "rise"]
    for broken, reason in zip(bad, reasons, strict=True):
        with pytest.raises((ValueError, IndexError), match=reason):
            native.assemble(word_lists, *broken, False, Result)
    beyond = [
        parts._replace(lasts=np.array([2**63 - 1], dtype=np.int64)),
        parts._replace(lasts=np.array([3], dtype=np.int64)),
        parts._replace(firsts=np.array([0], dtype=np.int64), lasts=np.array([0], dtype=np.int64)),
    ]
    for broken in beyond[:2]:
        with pytest.raises(ValueError, match="does not cover"):
            native.assemble(word_lists, *broken, False, Result)
    far = parts._replace(changed_at=np.array([-(2**63)], dtype=np.int64))
    with pytest.raises(IndexError, match="outside"):
        native.assemble(word_lists, *far, False, Result)
    # a span on the transcript's first token is fine, straight or through the wrapper
    straight = native.assemble(word_lists, *beyond[2], False, Result)
    assert straight == words.python_assemble(word_lists, beyond[2], skip_empty=False, result=Result)
    with pytest.raises(TypeError, match="offsets"):
        native.assemble(
            word_lists, *parts._replace(offsets=parts.offsets.astype(np.int32)), False, Result
        )
    with pytest.raises(TypeError, match="tuple class"):
        native.assemble(word_lists, *parts, False, dict)
    bounds_and_starts = [
        ("do not fit", [0, 2], np.zeros(1)),
        ("rise by 1", [0, 0, 1], np.zeros(1)),
        ("starts", [0, 1], np.zeros(1, dtype=np.int64)),
    ]
    for reason, bounds, starts in bounds_and_starts:
        replacements = ["a"] * (len(bounds) - 1)
        with pytest.raises((ValueError, TypeError), match=reason):
            native.changed_words(
                replacements,
                np.array(bounds, dtype=np.int64),
                starts,
                np.zeros(1),
                np.zeros(1, dtype=np.int64),
                Word,
            )


class _Emptying(str):
    """A text whose truth empties the list of replacements, as a finalizer might."""

    target: list[str] = []

    def __bool__(self) -> bool:
        _Emptying.target.clear()
        return True


def test_a_list_changed_by_python_code_in_the_middle_is_an_error_not_a_crash() -> None:
    native = native_words()
    word_lists, parts = _one_transcript()
    replacements = ["[CARD]"]
    _Emptying.target = replacements
    texts = [_Emptying("my"), "4111", "x"]
    with pytest.raises(ValueError, match="replacements list changed"):
        native.assemble(
            word_lists, *parts._replace(texts=texts, replacements=replacements), True, Result
        )


class _Transcript:
    """A word list that is neither a list nor a tuple: a sequence by its protocol."""

    def __init__(self, items: list[Word]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Word:
        return self.items[index]


def test_other_sequences_are_taken_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    native_words()
    word_lists, parts = _one_transcript()
    odd = (_Transcript(list(word_lists[0])),)
    as_tuples = parts._replace(
        texts=tuple(parts.texts), replacements=tuple(parts.replacements), spans=tuple(parts.spans)
    )
    native = words.assemble(odd, as_tuples, skip_empty=True, result=Result)
    monkeypatch.setattr(words, "_words", None)
    assert words.assemble(odd, as_tuples, skip_empty=True, result=Result) == native
    assert native[0].text == "my [CARD] x" and native[0].spans == ["the span"]
