"""The shared pass of every detector: numbers found as runs of digit tokens, with their features.

Method (all of it array operations over the whole batch; nothing loops over
tokens in Python):

1. One gather of the kind table picks out the tokens of interest (number
   words, numerals, fillers, keywords): in talk, a minority. Everything
   after works on those positions only.
2. Words that are numbers only next to numbers are settled from their
   neighbours: "oh" beside a number word, "double"/"triple" before a digit,
   a month or ordinal in a date ("march third", "the third of march"), and a
   unit after "last"/"first" is a count ("last four of my social").
3. Consecutive digit tokens are one number when only fillers or connectors
   ("um", "like", "okay", "dash") stand between them, both are in the same
   transcript, and the silence between them is short: up to
   ``max_pause_s`` within a segment, ``max_join_gap_s`` across a segment or
   speaker boundary (a number an ASR engine split in two, or read on after
   the other party's "mhm"). Run starts come from ``np.diff``-style
   comparisons of neighbours; run lengths from cumulative sums. The words'
   times are read only for tokens that may join a neighbour or are long
   enough to be a number alone.
4. Each digit token's digits are gathered from the digit pool in one ragged
   gather: "forty" is 4 before a unit and 40 alone, "hundred" is 00,
   "thousand" pads what follows to three digits, "double five" is 55. A pause (a comma, or
   ``group_pause_s`` of silence) before a token marks a group break before
   its first digit ("one two three, four five, six seven eight nine").
5. Per run: digit count, Luhn and ABA checks, leading digits, group breaks,
   the OR of its tokens' flags and kinds; and, on demand, the distance to the
   nearest keyword of each context class before and after it (one
   ``searchsorted`` of the run bounds into that class's keyword positions),
   and the effective distance, which reads the keywords' segments, for the
   keywords closer than :data:`HORIZON` only.
6. A number joined across a segment boundary may be two numbers said one
   after the other ("... is the security code" | "four one one one ..."):
   its parts, cut at every such boundary, are kept as a second set of runs
   (:attr:`Scan.parts`) for the registry to choose between.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from dsp.redact.checksums import aba_valid, luhn_valid
from dsp.redact.tokens import TokenBatch
from dsp.redact.vocab import VOCABULARY, Ctx, Flag, Kind

__all__ = [
    "AFTER_PENALTY",
    "AFTER_WEIGHT",
    "BEFORE_PENALTY",
    "FAR",
    "HORIZON",
    "Runs",
    "Scan",
    "ScanConfig",
    "scan",
]

FAR: Final = 1 << 30
"""Distance reported when no keyword of a class is in the transcript on that side."""


BEFORE_PENALTY: Final = 3
"""Extra distance of a keyword before the number in another segment (a question it answers)."""
AFTER_PENALTY: Final = 8
"""Extra distance of a keyword after the number in another segment or sentence (most often
about what is said next)."""
AFTER_WEIGHT: Final = 2
"""A distance after the number counts this many times."""
HORIZON: Final = 32
"""Effective distances below this are exact (:meth:`Scan.effective`). The detectors'
closeness bottoms out at an effective distance of 19, and a negated number's keyword is at
most 14 away (8 + 3 before it, 2 x 3 + 8 after)."""


def _kinds(*kinds: Kind) -> npt.NDArray[np.bool_]:
    table = np.zeros(max(Kind) + 1, dtype=np.bool_)
    table[list(kinds)] = True
    return table


_ALWAYS_DIGIT: Final = _kinds(Kind.UNIT, Kind.TEEN, Kind.TENS, Kind.NUMERAL, Kind.SCALE)
_NUMBERISH: Final = _kinds(
    Kind.UNIT, Kind.TEEN, Kind.TENS, Kind.NUMERAL, Kind.SCALE, Kind.MULT, Kind.OH
)
_BEFORE_MONTH: Final = _kinds(Kind.UNIT, Kind.TEEN, Kind.TENS, Kind.NUMERAL, Kind.ORDINAL, Kind.OH)
_BRIDGE: Final = _kinds(Kind.FILLER, Kind.CONNECTOR)
_FOUR_IDS: Final = np.array([VOCABULARY.ids["four"], VOCABULARY.ids["4"]])
_ONE_DIGIT_AFTER: Final = _kinds(Kind.UNIT, Kind.OH)
_TWO_DIGITS_AFTER: Final = _kinds(Kind.TEEN, Kind.TENS)


@dataclass(frozen=True)
class ScanConfig:
    """How numbers are joined: silences in seconds."""

    max_pause_s: float = 5.0
    """Longest silence inside a number within one segment."""
    max_join_gap_s: float = 2.0
    """Longest silence across a segment (or speaker) boundary inside a number."""
    group_pause_s: float = 0.35
    """Silence that separates groups of digits ("one two three ... four five")."""
    min_digits: int = 3
    """Runs with fewer digits are no number of interest ("one of them", "two cards")."""


@dataclass
class Runs:
    """Numbers found: runs of digit tokens and their features, one entry per run."""

    first: npt.NDArray[np.int64]  # token index of the first digit token
    last: npt.NDArray[np.int64]  # token index of the last digit token (inclusive)
    doc: npt.NDArray[np.int32]
    ndigits: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]  # into Scan.digits
    flags: npt.NDArray[np.int64]  # OR of the tokens' Flag bits
    kinds: npt.NDArray[np.int64]  # OR of 1 << Kind over the tokens
    luhn: npt.NDArray[np.bool_]
    aba: npt.NDArray[np.bool_]
    lead2: npt.NDArray[np.int64]  # the first two digits as a number (-1 when fewer)
    tail2: npt.NDArray[np.int64]  # the last two digits as a number
    groups_324: npt.NDArray[np.bool_]  # breaks after digits 3 and 5 (an SSN read in groups)
    segment_first: npt.NDArray[np.int64]  # segment of the first token
    segment_last: npt.NDArray[np.int64]  # and of the last
    stops_before_last: npt.NDArray[np.int64]  # sentence ends before the last token
    token_start: npt.NDArray[np.int64]  # index of the first digit token among all of them
    digits: npt.NDArray[np.int8]  # every digit of the batch, runs' ``offset`` index it

    def __len__(self) -> int:
        return len(self.first)

    def has_kind(self, kind: Kind) -> npt.NDArray[np.bool_]:
        return (self.kinds & (1 << int(kind))) != 0

    def has_flag(self, flag: Flag) -> npt.NDArray[np.bool_]:
        return (self.flags & int(flag)) != 0

    def lead(self, count: int) -> npt.NDArray[np.int64]:
        """The first ``count`` digits of each run as a number (runs must be long enough)."""
        index = np.minimum(self.offset[:, None] + np.arange(count), len(self.digits) - 1)
        matrix = self.digits[index].astype(np.int64)
        return matrix @ (10 ** np.arange(count - 1, -1, -1, dtype=np.int64))


@dataclass
class Scan:
    """What the detectors share: the batch, its numbers, its keywords."""

    batch: TokenBatch
    config: ScanConfig
    interesting: npt.NDArray[np.int64]  # token positions of interest, fillers aside
    kinds: npt.NDArray[np.int8]  # their kinds
    digits: npt.NDArray[np.int8]  # every run's digits, run after run
    runs: Runs
    keyword_positions: npt.NDArray[np.int64]
    keyword_bits: npt.NDArray[np.uint32]
    stop_positions: npt.NDArray[np.int64]  # tokens that end a sentence
    parts: Scan | None = None
    """The numbers joined across a segment boundary, cut at it (see :func:`scan`)."""
    parent: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """For each run of :attr:`parts`, the run of this scan it is a part of."""
    cache: dict[str, npt.NDArray] = field(default_factory=dict)
    """Features the detectors share (payment context, vetoes), computed once per scan."""
    _class_positions: dict[int, npt.NDArray[np.int64]] = field(default_factory=dict)
    _distances: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _effective: dict[int, np.ndarray] = field(default_factory=dict)

    def positions_of(self, ctx: Ctx) -> npt.NDArray[np.int64]:
        """Token positions of the keywords of any class in ``ctx``."""
        key = int(ctx)
        found = self._class_positions.get(key)
        if found is None:
            found = self.keyword_positions[(self.keyword_bits & np.uint32(key)) != 0]
            self._class_positions[key] = found
        return found

    def distances(self, ctx: Ctx) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Tokens from each run to the nearest keyword of ``ctx`` before it and after it.

        A keyword right before the run's first token is at distance 1; one
        in another transcript, or none, is at :data:`FAR`.
        """
        key = int(ctx)
        cached = self._distances.get(key)
        if cached is not None:
            return cached
        runs = self.runs
        positions = self.positions_of(ctx)
        before = np.full(len(runs), FAR, dtype=np.int64)
        after = np.full(len(runs), FAR, dtype=np.int64)
        if len(positions) and len(runs):
            doc = self.batch.doc
            index = np.searchsorted(positions, runs.first) - 1
            found = index >= 0
            nearest = positions[np.maximum(index, 0)]
            found &= doc[nearest] == runs.doc
            before[found] = (runs.first - nearest)[found]
            index = np.searchsorted(positions, runs.last, side="right")
            found = index < len(positions)
            nearest = positions[np.minimum(index, len(positions) - 1)]
            found &= doc[nearest] == runs.doc
            after[found] = (nearest - runs.last)[found]
        cached = (before, after)
        self._distances[key] = cached
        return cached

    def effective(self, ctx: Ctx) -> npt.NDArray[np.int64]:
        """How far the nearest keyword of ``ctx`` is, as evidence: a distance after the
        number counts :data:`AFTER_WEIGHT` times; a keyword before it in another segment
        is :data:`BEFORE_PENALTY` tokens further, one after it in another segment or
        sentence :data:`AFTER_PENALTY`.

        The penalties need the keywords' segments, which are read from the words: they
        are read only where they can matter, for keywords closer than :data:`HORIZON`
        (weighted). So a value below :data:`HORIZON` is exact, and one at or past it
        says only that the keyword is that far or further (the penalties left out);
        :data:`FAR` when there is no keyword."""
        key = int(ctx)
        cached = self._effective.get(key)
        if cached is not None:
            return cached
        before, after = self.distances(ctx)
        runs, segment_of = self.runs, self.batch.segment_of
        from_before = before.copy()  # FAR where there is none
        close = np.flatnonzero(before < HORIZON)
        if len(close):
            nearest = runs.first[close] - before[close]
            moved = segment_of(nearest) != runs.segment_first[close]
            from_before[close] += BEFORE_PENALTY * moved
        from_after = np.minimum(AFTER_WEIGHT * after, FAR)
        close = np.flatnonzero(from_after < HORIZON)
        if len(close):
            nearest = runs.last[close] + after[close]
            moved = segment_of(nearest) != runs.segment_last[close]
            moved |= np.searchsorted(self.stop_positions, nearest) > runs.stops_before_last[close]
            from_after[close] += AFTER_PENALTY * moved
        effective = np.minimum(from_before, from_after)
        self._effective[key] = effective
        return effective

    def near(self, ctx: Ctx, before: int, after: int) -> npt.NDArray[np.bool_]:
        """Whether a keyword of ``ctx`` is within ``before`` tokens before or ``after`` after."""
        distance_before, distance_after = self.distances(ctx)
        return (distance_before <= before) | (distance_after <= after)

    def nearest(self, ctx: Ctx) -> npt.NDArray[np.int64]:
        """Tokens to the nearest keyword of ``ctx`` on either side."""
        distance_before, distance_after = self.distances(ctx)
        return np.minimum(distance_before, distance_after)


def _segment_or(values: npt.NDArray[np.int64], bounds: npt.NDArray[np.int64]) -> np.ndarray:
    """Bitwise OR of ``values[bounds[2i] : bounds[2i + 1]]`` for every ``i`` (non-empty)."""
    if not len(bounds):
        return np.zeros(0, dtype=np.int64)
    padded = np.append(values, 0)
    return np.bitwise_or.reduceat(padded, bounds)[::2]


def _neighbours(
    values: npt.NDArray, adjacent_next: npt.NDArray[np.bool_], step: int, fill: int = 0
) -> npt.NDArray:
    """``values`` of the token ``step`` places on (negative: back) where adjacent, else fill."""
    out = np.full(len(values), fill, dtype=values.dtype)
    if step == 1:
        out[:-1] = np.where(adjacent_next[:-1], values[1:], fill)
    elif step == -1:
        out[1:] = np.where(adjacent_next[:-1], values[:-1], fill)
    elif step == 2:
        both = adjacent_next[:-2] & adjacent_next[1:-1]
        out[:-2] = np.where(both, values[2:], fill)
    elif step == -2:
        both = adjacent_next[:-2] & adjacent_next[1:-1]
        out[2:] = np.where(both, values[:-2], fill)
    return out


def _times_where_needed(
    batch: TokenBatch,
    positions: npt.NDArray[np.int64],
    next_to: npt.NDArray[np.bool_],
    long_enough: npt.NDArray[np.bool_],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and segment of the digit tokens at ``positions`` where they can matter:
    a token beside another one it may join (``next_to``: token ``i`` and ``i + 1``),
    or one with digits enough to be a number alone (``long_enough``). The others are
    numbers too short to keep ("one of them") whatever their times; theirs stay 0."""
    count = len(positions)
    needed = long_enough.copy()
    needed[1:] |= next_to
    needed[:-1] |= next_to
    read = np.flatnonzero(needed)
    if len(read) == count:
        return batch.times_of(positions)
    start, end, segment = np.zeros(count), np.zeros(count), np.zeros(count, dtype=np.int64)
    start[read], end[read], segment[read] = batch.times_of(positions[read])
    return start, end, segment


def scan(batch: TokenBatch, config: ScanConfig | None = None) -> Scan:
    """Find every number of ``batch`` and the keywords around it (see the module's notes)."""
    config = config or ScanConfig()
    ids = batch.ids
    kind_all = batch.kind[ids]
    interesting = np.flatnonzero(kind_all)
    kinds_all = kind_all[interesting]
    core_at = np.flatnonzero(~_BRIDGE[kinds_all])  # where in ``interesting``
    core = interesting[core_at]  # tokens of interest that are not fillers
    kinds = kinds_all[core_at]
    tid = ids[core]
    doc = batch.doc[core]
    flags = batch.flags[tid].astype(np.int64)
    # neighbours: nothing but fillers between them, in one transcript
    adjacent = np.zeros(len(core), dtype=np.bool_)
    if len(core) > 1:
        between = core[1:] - core[:-1] - 1
        bridged = core_at[1:] - core_at[:-1] - 1  # fillers and connectors between them
        adjacent[:-1] = (between == bridged) & (doc[1:] == doc[:-1])

    k_prev = _neighbours(kinds, adjacent, -1)
    k_next = _neighbours(kinds, adjacent, 1)
    k_prev2 = _neighbours(kinds, adjacent, -2)
    k_next2 = _neighbours(kinds, adjacent, 2)

    # 2. settle the words that are numbers only beside numbers
    is_digit = _ALWAYS_DIGIT[kinds].copy()
    after_last = (_neighbours(flags, adjacent, -1) & Flag.LAST) != 0
    is_digit &= ~(after_last & (kinds == Kind.UNIT))
    is_digit |= (kinds == Kind.MULT) & _ONE_DIGIT_AFTER[k_next]
    is_digit |= (kinds == Kind.OH) & (_NUMBERISH[k_prev] | _NUMBERISH[k_next])
    is_digit |= (kinds == Kind.PLUS) & _NUMBERISH[k_next]
    month_next = (k_next == Kind.MONTH) | ((k_next == Kind.OF) & (k_next2 == Kind.MONTH))
    is_digit |= (kinds == Kind.ORDINAL) & (
        (k_prev == Kind.TENS) | (k_prev == Kind.MONTH) | month_next
    )
    ordinal_before = (k_prev == Kind.ORDINAL) | ((k_prev == Kind.OF) & (k_prev2 == Kind.ORDINAL))
    is_digit |= (kinds == Kind.MONTH) & (_BEFORE_MONTH[k_next] | ordinal_before)
    date_of = (kinds == Kind.OF) & (k_prev == Kind.ORDINAL) & (k_next == Kind.MONTH)

    # 3. runs of digit tokens: neighbours, or with only "of" between ("third of march")
    digit_index = np.flatnonzero(is_digit)  # into core
    positions = core[digit_index]
    n = len(positions)

    # 4. digits of every token: how many, and where in the pool (counted before the
    # times are read: a token too short to be a number alone needs none)
    d_kind = kinds[digit_index]
    d_tid = tid[digit_index]
    count = batch.digit_count[d_tid].astype(np.int64)
    source = batch.digit_start[d_tid].astype(np.int64)
    stride = np.ones(n, dtype=np.int64)
    next_kind = k_next[digit_index]
    tid_next = _neighbours(tid, adjacent, 1)[digit_index]
    tens = d_kind == Kind.TENS
    one_after = _ONE_DIGIT_AFTER[next_kind] | (
        (next_kind == Kind.ORDINAL) & (batch.digit_count[tid_next] == 1)
    )
    pool = np.append(batch.pool, np.int8(0))  # entries without digits may point past the end
    said_apart = (flags[digit_index] & Flag.PAUSE) != 0  # "fifty, two" is 50 2
    count[tens & one_after & ~said_apart & (pool[batch.digit_start[tid_next]] != 0)] = 1
    scale = d_kind == Kind.SCALE
    filled = np.where(_ONE_DIGIT_AFTER[next_kind], 1, np.where(_TWO_DIGITS_AFTER[next_kind], 2, 0))
    padding = scale & (count == 3)  # "thousand" pads what follows; "hundred" is 00
    count[padding] = np.maximum(count[padding] - filled[padding], 0)
    mult = d_kind == Kind.MULT
    count[mult] = pool[source[mult]].astype(np.int64) - 1
    source[mult] = batch.digit_start[tid_next[mult]]
    stride[mult] = 0

    # 3, continued: neighbours by position, then by the silence between them
    link = np.zeros(max(n - 1, 0), dtype=np.bool_)
    if n > 1:
        apart = np.zeros(len(core) + 1, dtype=np.int64)
        np.cumsum(~adjacent, out=apart[1:])
        of_count = np.zeros(len(core) + 1, dtype=np.int64)
        np.cumsum(date_of, out=of_count[1:])
        here, there = digit_index[:-1], digit_index[1:]
        link = apart[there] - apart[here] == 0
        link &= (there - here - 1) == (of_count[there] - of_count[here + 1])
    position_start, position_end, position_segment = _times_where_needed(
        batch, positions, link, count >= config.min_digits
    )
    silence = np.zeros(max(n - 1, 0))
    same_segment = np.ones(max(n - 1, 0), dtype=np.bool_)
    if n > 1:
        silence = position_start[1:] - position_end[:-1]
        same_segment = position_segment[1:] == position_segment[:-1]
        limit = np.where(same_segment, config.max_pause_s, config.max_join_gap_s)
        link &= silence <= limit
        link &= same_segment | ((flags[here] & Flag.STOP) == 0)
    starts_mask = np.ones(n, dtype=np.bool_)
    starts_mask[1:] = ~link
    run_starts = np.flatnonzero(starts_mask)

    # 4, continued: the digits, by one ragged gather from the pool
    total = int(count.sum())
    first_digit = np.cumsum(count) - count
    token_of_digit = np.repeat(np.arange(n), count)
    within = np.arange(total) - first_digit[token_of_digit]
    pool_index = source[token_of_digit] + stride[token_of_digit] * within
    digits = pool[pool_index]
    breaks = batch.pool_break[pool_index].copy()
    if n > 1:
        paused = ((flags[digit_index[:-1]] & Flag.PAUSE) != 0) | (silence > config.group_pause_s)
        paused &= link & (count[1:] > 0)
        breaks[first_digit[1:][paused]] = True

    # 5. per-run features
    stop_positions = core[(flags & Flag.STOP) != 0]
    d_flags = flags[digit_index]
    d_kinds = np.left_shift(1, d_kind.astype(np.int64))
    count_sums = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=count_sums[1:])
    padded = np.append(digits, np.zeros(1, np.int8)).astype(np.int64)
    padded_digits = padded.astype(np.int8)
    padded_breaks = np.append(breaks, np.zeros(8, np.bool_))

    def make_runs(starts: np.ndarray, ends: np.ndarray, min_digits: int) -> Runs:
        """Runs over digit tokens ``starts[i]..ends[i]`` (inclusive), of ``min_digits`` or more."""
        ndigits = count_sums[ends + 1] - count_sums[starts]
        keep = ndigits >= min_digits
        starts, ends, ndigits = starts[keep], ends[keep], ndigits[keep]
        offset = first_digit[starts] if n else np.zeros(0, np.int64)
        bounds = np.stack([starts, ends + 1], axis=1).ravel()
        run_flags = _segment_or(d_flags, bounds)
        run_kinds = _segment_or(d_kinds, bounds)
        luhn = np.zeros(len(offset), dtype=np.bool_)
        card_length = (ndigits >= 12) & (ndigits <= 19)
        luhn[card_length] = luhn_valid(digits, offset[card_length], ndigits[card_length])
        aba = np.zeros(len(offset), dtype=np.bool_)
        nine = ndigits == 9
        aba[nine] = aba_valid(digits, offset[nine])
        lead2 = np.where(ndigits >= 2, padded[offset] * 10 + padded[offset + 1], -1)
        end = offset + ndigits
        tail2 = padded[np.maximum(end - 2, 0)] * 10 + padded[np.maximum(end - 1, 0)]
        groups_324 = nine & padded_breaks[offset + 3] & padded_breaks[offset + 5]
        run_first, run_last = positions[starts], positions[ends]
        return Runs(
            first=run_first,
            last=run_last,
            doc=doc[digit_index[starts]],
            ndigits=ndigits,
            offset=offset,
            flags=run_flags,
            kinds=run_kinds,
            luhn=luhn,
            aba=aba,
            lead2=lead2,
            tail2=tail2,
            groups_324=groups_324,
            segment_first=position_segment[starts],
            segment_last=position_segment[ends],
            stops_before_last=np.searchsorted(stop_positions, run_last),
            token_start=starts,
            digits=padded_digits,
        )

    run_ends = np.append(run_starts[1:], n) - 1
    runs = make_runs(run_starts, run_ends, config.min_digits)

    # 6. numbers joined across a segment boundary, also as their parts
    parts: Runs | None = None
    parent = np.zeros(0, dtype=np.int64)
    if n > 1:
        soft = link & ~same_segment
        if soft.any():
            run_of_token = np.cumsum(starts_mask) - 1
            joined = np.zeros(len(run_starts), dtype=np.bool_)
            joined[run_of_token[1:][soft]] = True
            joined &= count_sums[run_ends + 1] - count_sums[run_starts] >= config.min_digits
            part_mask = starts_mask.copy()
            part_mask[1:] |= soft
            part_starts = np.flatnonzero(part_mask)
            part_ends = np.append(part_starts[1:], n) - 1
            chosen = joined[run_of_token[part_starts]]
            parts = make_runs(part_starts[chosen], part_ends[chosen], 1)
            parent = np.searchsorted(runs.token_start, run_starts[run_of_token[parts.token_start]])

    # keywords, with "security code" read as a CVV keyword and "last four" marked
    bits = batch.ctx[tid]
    has_bits = np.flatnonzero(bits)
    keyword_bits = bits[has_bits]
    prev_bits = _neighbours(bits, adjacent, -1)[has_bits]
    security_code = ((keyword_bits & Ctx.CODE) != 0) & ((prev_bits & Ctx.SECURITY) != 0)
    keyword_bits[security_code] |= np.uint32(Ctx.CVV)
    next_tid = _neighbours(tid, adjacent, 1)[has_bits]
    last_four = ((flags[has_bits] & Flag.LAST) != 0) & np.isin(next_tid, _FOUR_IDS)
    keyword_bits[last_four] |= np.uint32(Ctx.LAST4)
    whole = Scan(
        batch=batch,
        config=config,
        interesting=core,
        kinds=kinds,
        digits=digits,
        runs=runs,
        keyword_positions=core[has_bits],
        keyword_bits=keyword_bits,
        stop_positions=stop_positions,
    )
    if parts is not None and len(parts):
        whole.parts = replace(
            whole, runs=parts, cache={}, _class_positions={}, _distances={}, _effective={}
        )
        whole.parent = parent
    return whole
