"""E-mail addresses, written ("john.smith@gmail.com") and spoken ("john dot smith at gmail
dot com").

A spoken address is a local part, "at", then a domain of two or more labels
joined by "dot" whose last label is a top-level domain. A local part of one
word of talk ("is", "me", "you": "the meeting is at noon dot com") is none. Labels are words or
spelled letters, never numbers: "meet me at one dot me" is no address. The
local part reaches back over "dot", "underscore", "dash" and spelled
letters from the word before "at". Candidates are the "at" tokens followed
by a label and "dot" (found by array comparisons); only those are read
word by word.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from dsp.redact.detectors.base import Candidates, SpanDetector
from dsp.redact.scan import Scan
from dsp.redact.vocab import Ctx, Kind

__all__ = ["TOP_LEVEL_DOMAINS", "EmailDetector"]

_DOMAIN_NAMES: Final = (
    "com net org edu gov mil int io co uk us de fr ca au me info biz ai app dev nl es it "
    "ch at be se no dk fi ie pl pt br mx in jp cn nz za eu tv ly gg"
)
TOP_LEVEL_DOMAINS: Final = frozenset(_DOMAIN_NAMES.split())
"""The top-level domains a spoken address may end in (the common ones)."""
_LABEL: Final = frozenset(
    int(k) for k in (Kind.WORD, Kind.LETTER, Kind.ALNUM, Kind.KEYWORD, Kind.PUNCT)
)
_LOCAL_JOINERS: Final = frozenset({"dot", "underscore", "dash", "hyphen", ".", "_", "-"})
_NUMBER: Final = frozenset(int(k) for k in (Kind.UNIT, Kind.OH, Kind.TEEN, Kind.TENS, Kind.NUMERAL))
_BRIDGES: Final = frozenset({int(Kind.FILLER)})
_NUMBER_KINDS: Final = np.zeros(max(Kind) + 1, dtype=np.bool_)
_NUMBER_KINDS[list(_NUMBER)] = True
_AT, _DOT, _LETTER, _WORD, _ALNUM = (
    int(Kind.AT),
    int(Kind.DOT),
    int(Kind.LETTER),
    int(Kind.WORD),
    int(Kind.ALNUM),
)
_NOT_NAMES: Final = frozenset(
    {"is", "it's", "it", "me", "us", "you", "them", "him", "her", "are", "was", "be"}
    | {"see", "meet", "call", "email", "mail", "write"}
)
"""Words that stand before "at" in talk, never alone as an address's name."""
_MAX_LABELS: Final = 4
_MAX_LOCAL_TOKENS: Final = 12


class EmailDetector(SpanDetector):
    """Written addresses (0.95) and spoken ones (0.85, 0.95 near "email")."""

    name = "email"
    entity = "EMAIL"

    def find(self, scan: Scan) -> Candidates:
        batch = scan.batch
        written = scan.interesting[scan.kinds == Kind.EMAIL]
        firsts = written.tolist()
        lasts = written.tolist()
        scores = [0.95] * len(firsts)
        at = scan.interesting[scan.kinds == Kind.AT]
        at = at[at + 2 < batch.size]
        if len(at):  # "at" with "dot" two to four tokens on (a filler may come between)
            ahead = np.minimum(at[:, None] + np.arange(2, 5), batch.size - 1)
            dot_soon = (batch.kind[batch.ids[ahead]] == Kind.DOT).any(axis=1)
            number_next = _NUMBER_KINDS[batch.kind[batch.ids[at + 1]]]  # "at one dot me"
            at = at[dot_soon & ~number_next]
        email_words = scan.positions_of(Ctx.EMAIL)
        for position in at.tolist():
            span = self._spoken(scan, position)
            if span is None:
                continue
            first, last = span
            near = np.searchsorted(email_words, first)
            named = near > 0 and first - email_words[near - 1] <= 10
            firsts.append(first)
            lasts.append(last)
            scores.append(0.95 if named else 0.85)
        return Candidates(
            np.array(firsts, dtype=np.int64),
            np.array(lasts, dtype=np.int64),
            np.array(scores, dtype=np.float64),
        )

    @staticmethod
    def _spoken(scan: Scan, at: int) -> tuple[int, int] | None:
        """The span of the spoken address around the "at" at ``at``, if it is one."""
        batch = scan.batch
        doc = int(batch.doc[at])
        low = max(int(batch.offsets[doc]), at - _MAX_LOCAL_TOKENS)
        high = min(int(batch.offsets[doc + 1]), at + 2 * _MAX_LABELS + 6)
        kinds = batch.kind[batch.ids[low:high]].tolist()
        texts = [text.lower() for text in batch.texts[low:high]]
        here = at - low
        solid = [i for i, k in enumerate(kinds) if k not in _BRIDGES]  # fillers aside
        where = solid.index(here)

        # the domain: label (dot label)+, ending in a top-level domain
        after = solid[where + 1 :]
        labels = 0
        last = here
        for step in range(0, len(after), 2):
            if kinds[after[step]] not in _LABEL:
                break
            labels += 1
            last = after[step]
            if step + 1 >= len(after) or kinds[after[step + 1]] != _DOT or labels >= _MAX_LABELS:
                break
        if labels < 2 or texts[last].rstrip(".,?!") not in TOP_LEVEL_DOMAINS:
            return None

        # the local part: words, spelled letters and digits, joined by dot/underscore/dash
        first = here
        previous = _AT
        for index in reversed(solid[:where]):
            token_kind, text = kinds[index], texts[index].rstrip(",")
            if text in _LOCAL_JOINERS or token_kind == _DOT:
                accept, token_kind = previous not in (_DOT, _AT), _DOT
            elif token_kind == _LETTER or (len(text) == 1 and text.isalpha()):
                accept, token_kind = previous in (_AT, _DOT, _WORD, _LETTER), _LETTER
            elif token_kind in _NUMBER:
                accept = previous in _NUMBER or previous in (_AT, _DOT)
            elif token_kind in (_WORD, _ALNUM):
                accept = previous in (_AT, _DOT) or previous in _NUMBER
            else:
                accept = False
            if not accept:
                break
            first, previous = index, token_kind
        while first < here and (texts[first] in _LOCAL_JOINERS or kinds[first] == _DOT):
            first += 1
        if first == here or (first == here - 1 and texts[first] in _NOT_NAMES):
            return None
        return low + first, low + last
