"""The words the redactor knows: number words, fillers, context keywords, as lookup tables.

Every known word has an id; per-id tables (NumPy arrays indexed by the id)
give its kind, its context classes (a bit mask), its flags and the digits it
stands for (an offset and a length into a pool of digits). Spelling variants
an ASR engine writes (``forty-one``, ``uh-huh``, ``o'clock``, a capital at
the start of a sentence, a trailing comma or full stop) have entries of
their own, so a transcript is turned into ids with one dictionary lookup
per word, without lower-casing it first.

Kinds of number words, and what they contribute to a number (the rules
:mod:`dsp.redact.tokens` applies):

- ``UNIT``: zero..nine, one digit ("oh" and "o" are ``OH``: a zero only
  next to another number word, else the interjection);
- ``TEEN``: ten..nineteen and hyphenated compounds ("forty-one"), two digits;
- ``TENS``: twenty..ninety, two digits, or one when a unit follows
  ("forty one" is 41, "forty" alone 40);
- ``SCALE``: hundred is two zeros ("one eight hundred five five five" is
  1800555, as phone numbers are read); thousand pads what follows to three
  digits ("two thousand five" 2005);
- ``MULT``: double, triple: the next digit said two or three times;
- ``ORDINAL``: first..thirty-first, a day of the month, counted only in a date;
- ``MONTH``: january..december, two digits, counted only next to a number.

Fillers, pauses and backchannels ("um", "uh", "like", "okay", "mhm") and
connectors ("dash", "slash") may stand inside a number without ending it
(people say them while reading digits; the other speaker says "mhm").
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "PUNCTUATION",
    "VOCABULARY",
    "Ctx",
    "Flag",
    "Kind",
    "Vocabulary",
]


class Kind(IntEnum):
    """What a token is; 0 (``WORD``) is a word of no interest to any detector."""

    WORD = 0
    KEYWORD = 1  # a context word only
    UNIT = 2
    OH = 3
    TEEN = 4
    TENS = 5
    SCALE = 6
    MULT = 7
    ORDINAL = 8
    MONTH = 9
    NUMERAL = 10  # written digits: "4111", "09/27", "+1-415-555-0134"
    FILLER = 11  # um, uh, like, okay, mhm: may sit inside a number
    CONNECTOR = 12  # dash, slash: may sit inside a number
    OF = 13  # "the third of march": inside a date only
    AT = 14  # "at" / "@": spoken e-mail addresses, times
    DOT = 15  # "dot" / ".": spoken e-mail addresses
    LETTER = 16  # a single letter, as in a spelled IBAN or e-mail name
    ALNUM = 17  # letters and digits in one word: "gb82", "john85"
    EMAIL = 18  # a written e-mail address
    PLUS = 19  # "plus" before a number: E.164
    PUNCT = 20  # any other word that ends a sentence ("hotel.")


class Ctx(IntFlag):
    """Context classes of keywords; a run of digits is scored by the classes near it."""

    PAY = 1 << 0  # card, credit, debit, visa, payment
    CVV = 1 << 1  # cvv, cvc, "security code", "on the back"
    CODE = 1 << 2  # "code": a CVV in payment talk, else nothing
    SECURITY = 1 << 3  # with "code" next to it: CVV
    EXPIRY = 1 << 4
    PIN = 1 << 5
    SSN = 1 << 6
    ACCOUNT = 1 << 7
    ROUTING = 1 << 8
    BANK = 1 << 9
    IBAN = 1 << 10
    PHONE = 1 << 11
    EMAIL = 1 << 12
    DOB = 1 << 13
    NEGATIVE = 1 << 14  # order, tracking, confirmation: not payment data
    MONEY_AFTER = 1 << 15  # dollars, cents
    MONEY_BEFORE = 1 << 16  # total, price, cost
    TIME_BEFORE = 1 << 17  # at, around, until
    TIME_AFTER = 1 << 18  # pm, o'clock, minutes
    PLUS = 1 << 19  # "plus": an E.164 number follows
    NUMBER = 1 << 20  # "number", "digits"
    YEAR_BEFORE = 1 << 21  # since, in: a year follows
    LAST4 = 1 << 22  # "last four": set by the scan on "last" before "four"


CONTEXT_CLASSES: Final = tuple(Ctx)


class Flag(IntFlag):
    """Properties of one written form."""

    PAUSE = 1 << 0  # ends with a comma or full stop: a pause after it
    MONEY = 1 << 1  # "$49.99", "49.99"
    TIME = 1 << 2  # "3:30"
    DATE = 1 << 3  # "09/27"
    PLUS = 1 << 4  # "+44..."
    LAST = 1 << 5  # "last", "first": the number word after it is a count ("last four")
    IBAN_ANCHOR = 1 << 6  # "gb82": a country code and check digits
    STOP = 1 << 7  # ends with a full stop, question or exclamation mark: a sentence ends


PUNCTUATION: Final = ",.?!;:"
"""Trailing punctuation an ASR engine writes; a comma or full stop marks a pause."""

_PAUSE_MARKS: Final = ",.;:"
_STOP_MARKS: Final = ".?!"

_UNITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS: Final = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS: Final = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_UNITS: Final = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
)
_ORDINAL_TEENS: Final = (
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
)
_MONTHS: Final = (
    ("january", "jan"),
    ("february", "feb"),
    ("march", "mar"),
    ("april", "apr"),
    ("may",),
    ("june", "jun"),
    ("july", "jul"),
    ("august", "aug"),
    ("september", "sep", "sept"),
    ("october", "oct"),
    ("november", "nov"),
    ("december", "dec"),
)
_FILLERS: Final = (
    "um",
    "umm",
    "uh",
    "uhh",
    "er",
    "erm",
    "ah",
    "eh",
    "hmm",
    "hm",
    "mm",
    "mhm",
    "mm-hmm",
    "uh-huh",
    "like",
    "okay",
    "ok",
    "yeah",
    "yep",
    "yes",
    "right",
    "sure",
    "alright",
    "sorry",
    "...",
    "-",
    "--",
)
_CONNECTORS: Final = ("dash", "hyphen", "slash", "/", "space", "underscore")

_KEYWORDS: Final[dict[Ctx, tuple[str, ...]]] = {
    Ctx.PAY: (
        "card",
        "cards",
        "card's",
        "credit",
        "debit",
        "visa",
        "mastercard",
        "master",
        "amex",
        "discover",
        "maestro",
        "jcb",
        "diners",
        "payment",
        "pay",
        "paying",
        "cardholder",
        "charge",
    ),
    Ctx.CVV: ("cvv", "cvc", "cvv2", "cvc2", "csc", "cid", "cvn", "verification", "back"),
    Ctx.CODE: ("code",),
    Ctx.SECURITY: ("security",),
    Ctx.EXPIRY: ("expiry", "expiration", "expires", "expire", "expiring", "exp", "valid"),
    Ctx.PIN: ("pin", "pin's", "passcode"),
    Ctx.SSN: ("social", "ssn", "socials", "itin"),
    Ctx.ACCOUNT: ("account", "account's", "checking", "savings", "acct"),
    Ctx.ROUTING: ("routing", "aba", "transit"),
    Ctx.BANK: ("bank", "banking", "wire", "deposit"),
    Ctx.IBAN: ("iban",),
    Ctx.PHONE: (
        "phone",
        "call",
        "reach",
        "cell",
        "mobile",
        "callback",
        "telephone",
        "landline",
        "text",
        "fax",
        "dial",
    ),
    Ctx.EMAIL: ("email", "e-mail", "mail", "emails"),
    Ctx.DOB: ("birth", "born", "birthday", "dob", "birthdate"),
    Ctx.NEGATIVE: (
        "order",
        "tracking",
        "confirmation",
        "reference",
        "invoice",
        "ticket",
        "case",
        "claim",
        "serial",
        "model",
        "flight",
        "room",
        "booking",
        "reservation",
        "item",
        "sku",
        "package",
        "shipment",
        "extension",
    ),
    Ctx.MONEY_AFTER: (
        "dollars",
        "dollar",
        "bucks",
        "cents",
        "euros",
        "euro",
        "pounds",
        "usd",
        "percent",
    ),
    Ctx.MONEY_BEFORE: ("total", "price", "cost", "costs", "amount", "balance", "fee", "$"),
    Ctx.TIME_BEFORE: ("at", "around", "by", "before", "after", "from"),
    Ctx.TIME_AFTER: (
        "am",
        "pm",
        "a.m.",
        "p.m.",
        "o'clock",
        "oclock",
        "tonight",
        "tomorrow",
        "today",
        "morning",
        "afternoon",
        "evening",
        "minutes",
        "hours",
        "days",
        "weeks",
        "months",
        "years",
    ),
    Ctx.PLUS: ("plus",),
    Ctx.NUMBER: ("number", "numbers", "digits", "no.", "num"),
    Ctx.YEAR_BEFORE: ("since", "in", "year"),
}

_LETTERS: Final = tuple("bcdefghjklmnpqrstuvwxyz")  # "a", "i" and "o" are words first


class Vocabulary:
    """Known words and their per-id tables, extended per batch by written numerals.

    ``ids`` maps a written form (lower case or capitalised) to its id; ``kind``, ``ctx``,
    ``flags``, ``digit_start`` and ``digit_count`` are indexed by id, and
    ``pool`` holds the digits (``pool_break`` marks a separator written
    before a digit, as in "123-45-6789"). ``stop_id`` is the id of any other
    word that ends a sentence: keywords beyond a sentence end count less. ``empty_id``
    is the id of an empty word.
    """

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._kind: list[int] = []
        self._ctx: list[int] = []
        self._flags: list[int] = []
        self._start: list[int] = []
        self._count: list[int] = []
        self._pool: list[int] = []
        self._pool_break: list[bool] = []
        self._add("", Kind.WORD)  # id 0: any word of no interest
        self.stop_id = self._entry("<stop>", Kind.PUNCT, "", 0, Flag.STOP | Flag.PAUSE)
        # an empty word is of no interest either, but the views leave it out of the text
        self.empty_id = self._entry("<empty>", Kind.WORD, "", 0, 0)
        self.ids[""] = self.empty_id
        self._build()
        self.freeze()

    # ------------------------------------------------------------------ building

    def _add(self, word: str, kind: Kind, digits: str = "", ctx: int = 0, flags: int = 0) -> int:
        """Add ``word`` and its punctuated variants; returns the id of the bare form."""
        bare = self._entry(word, kind, digits, ctx, flags)
        if word:
            forms = (word, word.capitalize()) if word.capitalize() != word else (word,)
            for form in forms:
                self._entry(form, kind, digits, ctx, flags)
                for mark in PUNCTUATION:
                    pause = Flag.PAUSE if mark in _PAUSE_MARKS else 0
                    stop = Flag.STOP if mark in _STOP_MARKS else 0
                    self._entry(form + mark, kind, digits, ctx, flags | pause | stop)
        return bare

    def _entry(self, word: str, kind: Kind, digits: str, ctx: int, flags: int) -> int:
        existing = self.ids.get(word)
        if existing is not None:  # a word in two lists: merge what it is
            self._ctx[existing] |= int(ctx)
            self._flags[existing] |= int(flags)
            return existing
        index = len(self._kind)
        self.ids[word] = index
        self._kind.append(int(kind))
        self._ctx.append(int(ctx))
        self._flags.append(int(flags))
        self._start.append(len(self._pool))
        self._count.append(len(digits))
        self._pool.extend(int(d) for d in digits)
        self._pool_break.extend(False for _ in digits)
        return index

    def _build(self) -> None:
        for value, word in enumerate(_UNITS):
            self._add(word, Kind.UNIT, str(value))
        for word in ("oh", "o", "nought", "naught"):
            self._add(word, Kind.OH, "0")
        for value, word in enumerate(_TEENS, start=10):
            self._add(word, Kind.TEEN, str(value))
        for value, word in enumerate(_TENS, start=2):
            self._add(word, Kind.TENS, f"{value}0")
            for unit, unit_word in enumerate(_UNITS[1:], start=1):
                self._add(f"{word}-{unit_word}", Kind.TEEN, f"{value}{unit}")
            for unit, ordinal in enumerate(_ORDINAL_UNITS, start=1):
                self._add(f"{word}-{ordinal}", Kind.ORDINAL, f"{value}{unit}")
        self._add("hundred", Kind.SCALE, "00")
        self._add("thousand", Kind.SCALE, "000")
        self._add("double", Kind.MULT, "2")  # the digit is the repeat count, not a digit
        self._add("triple", Kind.MULT, "3")
        for value, word in enumerate(_ORDINAL_UNITS, start=1):
            self._add(word, Kind.ORDINAL, str(value))
        for value, word in enumerate(_ORDINAL_TEENS, start=10):
            self._add(word, Kind.ORDINAL, str(value))
        self._add("twentieth", Kind.ORDINAL, "20")
        self._add("thirtieth", Kind.ORDINAL, "30")
        for value, names in enumerate(_MONTHS, start=1):
            for name in names:
                self._add(name, Kind.MONTH, f"{value:02d}")
        for width in (1, 2, 3):  # numerals of up to three digits, written alone or in groups
            for value in range(10**width):
                self._add(f"{value:0{width}d}", Kind.NUMERAL, f"{value:0{width}d}")
        for word in _FILLERS:
            self._add(word, Kind.FILLER)
        for word in _CONNECTORS:
            self._add(word, Kind.CONNECTOR)
        self._add("of", Kind.OF)
        self._add("dot", Kind.DOT)
        self._add("at", Kind.AT)
        self._add("@", Kind.AT)
        self._add("plus", Kind.PLUS, flags=Flag.PLUS)
        for letter in _LETTERS:
            self._add(letter, Kind.LETTER)
        for ctx, words in _KEYWORDS.items():
            for word in words:
                kind = Kind(self._kind[self.ids[word]]) if word in self.ids else Kind.KEYWORD
                self._add(word, kind, ctx=ctx)
        for word in ("last", "first"):
            kind = Kind(self._kind[self.ids[word]]) if word in self.ids else Kind.KEYWORD
            self._add(word, kind, flags=Flag.LAST)

    def freeze(self) -> None:
        """Turn the lists into the NumPy tables the kernels index."""
        self.kind: npt.NDArray[np.int8] = np.array(self._kind, dtype=np.int8)
        self.ctx: npt.NDArray[np.uint32] = np.array(self._ctx, dtype=np.uint32)
        self.flags: npt.NDArray[np.uint16] = np.array(self._flags, dtype=np.uint16)
        self.digit_start: npt.NDArray[np.int32] = np.array(self._start, dtype=np.int32)
        self.digit_count: npt.NDArray[np.int32] = np.array(self._count, dtype=np.int32)
        self.pool: npt.NDArray[np.int8] = np.array(self._pool, dtype=np.int8)
        self.pool_break: npt.NDArray[np.bool_] = np.array(self._pool_break, dtype=np.bool_)

    def __len__(self) -> int:
        return len(self._kind)


VOCABULARY: Final = Vocabulary()
"""The shared vocabulary (read-only once built)."""
