"""International bank account numbers (ISO 13616-1): country, check digits, account, mod-97.

An IBAN is a two-letter country code, two check digits and up to 30
letters and digits; its length is fixed per country (SWIFT's IBAN
Registry), and it passes ISO 7064 MOD 97-10. Spoken, it is letters, digit
words and groups ("g b eight two west one two three four ..."); written,
"GB82 WEST 1234 5698 7654 32". A candidate starts at a word such as "gb82"
or at the first letters after "IBAN"; characters are collected until the
country's length, then checked (all candidates of the batch at once).
A valid one scores 0.99; one that fails near "IBAN" is still redacted at
0.5 (a character misheard).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from dsp.redact.checksums import iban_valid
from dsp.redact.detectors.base import Candidates, SpanDetector
from dsp.redact.scan import Scan
from dsp.redact.tokens import TokenBatch
from dsp.redact.vocab import Ctx, Flag, Kind

__all__ = ["IBAN_LENGTHS", "IbanDetector"]

IBAN_LENGTHS: Final = {
    "ad": 24, "ae": 23, "at": 20, "ba": 20, "be": 16, "bg": 22, "br": 29, "ch": 21,
    "cy": 28, "cz": 24, "de": 22, "dk": 18, "ee": 20, "es": 24, "fi": 18, "fr": 27,
    "gb": 22, "gr": 27, "hr": 21, "hu": 28, "ie": 22, "il": 23, "is": 26, "it": 27,
    "li": 21, "lt": 20, "lu": 20, "lv": 21, "mc": 27, "mt": 31, "nl": 18, "no": 15,
    "pl": 28, "pt": 25, "ro": 24, "sa": 24, "se": 24, "si": 19, "sk": 24, "sm": 27,
    "tr": 26,
}  # fmt: skip
"""Length of an IBAN per country code (SWIFT IBAN Registry), for the countries listed."""

_SKIP_AFTER_KEYWORD: Final = 4
_MAX_TOKENS: Final = 64  # a spoken IBAN of 34 characters, with fillers
_DIGIT_KINDS: Final = frozenset(
    int(k) for k in (Kind.UNIT, Kind.OH, Kind.TEEN, Kind.TENS, Kind.NUMERAL)
)
_BRIDGES: Final = frozenset({int(Kind.FILLER), int(Kind.CONNECTOR)})
_LETTER, _ALNUM, _TENS, _UNIT, _WORD = (
    int(Kind.LETTER),
    int(Kind.ALNUM),
    int(Kind.TENS),
    int(Kind.UNIT),
    int(Kind.WORD),
)


class IbanDetector(SpanDetector):
    """IBANs, written or spoken, by their country's length and mod-97 check."""

    name = "iban"
    entity = "IBAN"

    def find(self, scan: Scan) -> Candidates:
        batch = scan.batch
        flags = batch.flags[batch.ids[scan.interesting]]
        anchors = scan.interesting[(flags & Flag.IBAN_ANCHOR) != 0]
        keywords = scan.positions_of(Ctx.IBAN)
        starts = sorted(set(anchors.tolist()) | {k + 1 for k in keywords.tolist()})
        if not starts:
            return Candidates.empty()
        found: list[tuple[int, int, str]] = []
        taken = -1
        digits = _DigitText(batch)
        for start in starts:
            if start <= taken:
                continue
            read = self._read(scan, start, digits)
            if read is not None:
                found.append(read)
                taken = read[1]
        if not found:
            return Candidates.empty()
        valid = iban_valid([code.upper() for _, _, code in found])
        firsts = np.array([first for first, _, _ in found], dtype=np.int64)
        index = np.searchsorted(keywords, firsts) - 1
        gap = firsts - keywords[np.maximum(index, 0)] if len(keywords) else firsts
        named = (index >= 0) & (gap <= _SKIP_AFTER_KEYWORD + 1)
        scores = np.where(valid, 0.99, np.where(named, 0.5, 0.0))
        keep = scores > 0
        return Candidates(
            firsts[keep],
            np.array([last for _, last, _ in found], dtype=np.int64)[keep],
            scores[keep],
        )

    @staticmethod
    def _read(scan: Scan, start: int, digits: _DigitText) -> tuple[int, int, str] | None:
        """Characters from ``start`` on until the country's length: (first, last, code)."""
        batch = scan.batch
        end_of_doc = int(batch.offsets[batch.doc[min(start, batch.size - 1)] + 1])
        stop = min(end_of_doc, start + _MAX_TOKENS)
        token_ids = batch.ids[start:stop].tolist()
        kinds = batch.kind[token_ids].tolist()
        next_kinds = [*kinds[1:], _WORD]
        texts = batch.texts
        code = ""
        first = -1
        skipped = 0
        length = 0
        for offset, token_kind in enumerate(kinds):
            text = texts[start + offset].lower().strip(".,?!:;")
            if token_kind in _DIGIT_KINDS:
                piece = digits.of(token_ids[offset], token_kind, next_kinds[offset])
            elif token_kind in _BRIDGES:
                if not code:
                    return None
                continue
            elif token_kind in (_LETTER, _ALNUM) or (len(text) == 1 and text.isalpha()):
                piece = text if text.isalnum() else ""
            elif code and text.isalpha() and len(text) <= 4:
                piece = text
            elif not code and skipped < _SKIP_AFTER_KEYWORD:
                skipped += 1
                continue
            else:
                return None
            if not piece:
                continue
            if first < 0:
                first = start + offset
            code += piece
            if length == 0 and len(code) >= 2:
                length = IBAN_LENGTHS.get(code[:2], 0)
                if length == 0 or not code[:2].isalpha():
                    return None
            if length and len(code) >= length:
                return (first, start + offset, code) if len(code) == length else None
        return None


class _DigitText:
    """The digits a token id stands for, as text ("forty" before a unit is "4")."""

    def __init__(self, batch: TokenBatch) -> None:
        self.batch = batch
        self._pool: str | None = None  # every digit of the pool as text, made on first use

    def of(self, tid: int, kind: int, next_kind: int) -> str:
        batch = self.batch
        if self._pool is None:  # the pool holds digits 0-9: as ASCII in one step
            self._pool = (batch.pool.astype(np.uint8) + 48).tobytes().decode("ascii")
        start = int(batch.digit_start[tid])
        count = 1 if kind == _TENS and next_kind == _UNIT else int(batch.digit_count[tid])
        return self._pool[start : start + count]
