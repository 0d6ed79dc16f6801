"""Spoken and written numbers to digits: the tokenizer and the scan's runs of digit tokens."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.redact import Word, redact, scan, tokenize
from dsp.redact.vocab import VOCABULARY, Flag, Kind
from tests.support.spoken_corpus import words_of


def numbers(text: str) -> list[str]:
    """The digits of every number the scan finds in ``text`` (three digits or more)."""
    scanned = scan(tokenize([words_of(text)]))
    runs = scanned.runs
    digits = scanned.digits.tolist()
    return [
        "".join(str(d) for d in digits[offset : offset + count])
        for offset, count in zip(runs.offset.tolist(), runs.ndigits.tolist(), strict=True)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("four one one one", "4111"),
        ("forty one eleven", "4111"),
        ("oh nine twenty seven", "0927"),
        ("zero o oh seven", "0007"),
        ("double five triple seven", "55777"),
        ("double oh seven", "007"),
        ("4111 1111", "41111111"),
        ("4 one 1 1 eleven 1", "4111111"),
        ("forty-one eleven", "4111"),
        ("09/27", "0927"),
        ("+1-415-555-0134", "14155550134"),
        ("one eight hundred five five five", "1800555"),
        ("two thousand five", "2005"),
        ("two thousand fifteen", "2015"),
        ("nineteen eighty five", "1985"),
        ("twenty oh five", "2005"),
        ("march third nineteen eighty five", "0331985"),
        ("the third of march nineteen eighty five", "3031985"),
        ("september twenty seven", "0927"),
    ],
)
def test_spoken_forms_become_digits(text: str, expected: str) -> None:
    assert numbers(text) == [expected]


def test_fillers_and_pauses_stay_inside_a_number() -> None:
    assert numbers("four one, um, one one uh one like one") == ["411111"]
    assert numbers("one two three, four five, six seven eight nine") == ["123456789"]
    assert numbers("forty um one eleven") == ["4111"]


def test_a_pause_after_tens_keeps_its_zero() -> None:
    assert numbers("three six five, fifty, two nine two four") == ["365502924"]


def test_words_end_a_number() -> None:
    assert numbers("four one one one and then one two three") == ["4111", "123"]


def test_oh_and_months_are_words_alone() -> None:
    assert numbers("oh okay I may call in march") == []
    assert numbers("oh one two three") == ["0123"]


def test_last_four_is_a_count() -> None:
    assert numbers("the last four are one two three four") == ["1234"]


def test_segments_join_when_the_gap_is_short() -> None:
    assert numbers("four one one one | one one one one") == ["41111111"]
    assert numbers("four one one one | mhm | one one one one") == ["41111111"]
    assert numbers("four one one one || one one one one") == ["4111", "1111"]
    assert numbers("four one one one. | one one one one") == ["4111", "1111"]


def test_transcripts_never_join() -> None:
    batch = tokenize([words_of("four one one"), words_of("one one one")])
    scanned = scan(batch)
    assert scanned.runs.ndigits.tolist() == [3, 3]
    assert scanned.runs.doc.tolist() == [0, 1]


def test_written_numerals_carry_flags() -> None:
    batch = tokenize([words_of("$49.99 3:30 09/27 +44 123-45-6789 gb82 4th me@x.com")])
    kinds = batch.kind[batch.ids].tolist()
    flags = batch.flags[batch.ids].tolist()
    assert flags[0] & Flag.MONEY
    assert flags[1] & Flag.TIME
    assert flags[2] & Flag.DATE
    assert flags[3] & Flag.PLUS
    assert kinds[4] == Kind.NUMERAL
    assert flags[5] & Flag.IBAN_ANCHOR
    assert kinds[6] == Kind.ORDINAL
    assert kinds[7] == Kind.EMAIL


def test_case_and_punctuation_do_not_change_a_word() -> None:
    batch = tokenize([words_of("Four, ONE. one? one!")])
    assert (batch.kind[batch.ids] == Kind.UNIT).all()
    assert batch.flags[batch.ids[0]] & Flag.PAUSE
    assert batch.flags[batch.ids[1]] & Flag.STOP


def test_tuples_without_segments_are_accepted() -> None:
    words = [("four", 0.0, 0.3), ("one", 0.35, 0.6), ("one", 0.65, 0.9)]
    batch = tokenize([words])
    assert batch.segment_of(np.arange(batch.size)).tolist() == [0, 0, 0]
    assert scan(batch).runs.ndigits.tolist() == [3]


def test_empty_batches_and_transcripts() -> None:
    assert tokenize([]).size == 0
    scanned = scan(tokenize([[], [Word("hello", 0.0, 0.2)]]))
    assert len(scanned.runs) == 0


def test_numerals_of_a_batch_do_not_stay_in_the_vocabulary() -> None:
    size = len(VOCABULARY.ids)
    tokenize([words_of("4111111111111111 5500000000000004")])
    assert "4111111111111111" not in VOCABULARY.ids
    assert len(VOCABULARY.ids) == size


def test_digits_of_other_scripts_are_read_without_failing_the_batch() -> None:
    """ASR output is ASCII; a stray Arabic-Indic or full-width digit is no digit here, and
    never stops the batch it is in (the card beside it is still found)."""
    text = "\u0663rd \uff13rd \u0663\u0664-\u0665 my card is 4111 1111 1111 1111"
    result = redact(words_of(text))
    assert [span.entity for span in result.spans] == ["CARD"]
    assert "4111" not in result.text and "\u0663rd" in result.text
