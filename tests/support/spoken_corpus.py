"""A seeded generator of spoken-form call transcripts with labelled sensitive entities.

Transcripts are what a streaming ASR engine gives for a customer-service
call: words with start and end times and a segment id (a new segment at
every speaker turn, and sometimes inside one, where the engine cut its
stream). Entities are said in many ways:

- numbers digit by digit ("four one one one"), in pairs ("forty one
  eleven"), with "oh" for zero, "double"/"triple", as numerals ("4111",
  "4111-1111-..."), mixed ("4 one 1 1 eleven"), in groups with commas or
  pauses, with fillers inside ("four one, um, one one"), split across two
  segments, or with the other party's "mhm" in between;
- e-mail addresses spoken ("john dot smith at gmail dot com") or written;
- IBANs spoken letter by letter or written in groups of four.

Near misses are labelled as nothing: times ("at three thirty"), amounts
("forty nine ninety nine dollars", "$49.99"), order and tracking numbers
outside payment talk, counts ("two cards"), "meet me at one dot me".

Every entity records its words and, of those, the ones that carry its
content (fillers inside a number need not be redacted). :func:`evaluate`
scores predicted spans against the labels per entity type.

Deterministic: the same seed gives the same corpus.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dsp.redact.redactor import redact
from dsp.redact.tokens import Word

__all__ = [
    "ENTITY_TYPES",
    "Entity",
    "LabelledTranscript",
    "Score",
    "card_number",
    "evaluate",
    "found",
    "generate",
    "speak_digits",
    "words_of",
]

ENTITY_TYPES = (
    "CARD",
    "CVV",
    "EXPIRY",
    "PIN",
    "SSN",
    "BANK_ACCOUNT",
    "ROUTING",
    "IBAN",
    "PHONE",
    "EMAIL",
    "DOB",
    "DIGITS",
)
"""Labelled types. ``DIGITS`` is a number that must be redacted whatever it is called
(a card read short inside payment talk): any predicted type covers it."""

# The number words are written out here, not taken from dsp.redact.vocab: the
# generator is the oracle the redactor is measured against, and a word missing
# from one list must not be missing from the other by construction.
UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = (
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
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINALS = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
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
    "twentieth",
)
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
FILLERS = ("um", "uh", "er", "like", "uh", "um")
BACKCHANNELS = ("mhm", "okay", "uh-huh", "yep", "mm-hmm", "right")


@dataclass(frozen=True)
class Entity:
    """A labelled entity: words ``start_word`` to ``end_word`` (exclusive) of its transcript;
    ``content`` are the word indices that carry it (all but fillers inside)."""

    type: str
    start_word: int
    end_word: int
    content: tuple[int, ...]
    value: str


@dataclass
class LabelledTranscript:
    """A generated transcript and its entities."""

    words: list[Word]
    entities: list[Entity]
    scenario: str = ""


def words_of(text: str, *, word_s: float = 0.3, gap_s: float = 0.05) -> list[Word]:
    """Words of ``text`` with even timing; ``|`` starts a new segment, ``||`` one after a
    two-second silence."""
    words: list[Word] = []
    clock = 0.0
    segment = 0
    for token in text.split():
        if token in ("|", "||"):
            segment += 1
            clock += 2.0 if token == "||" else 0.2
            continue
        words.append(Word(token, round(clock, 3), round(clock + word_s, 3), segment))
        clock += word_s + gap_s
    return words


def found(text: str, **options: object) -> list[tuple[str, str]]:
    """What the default redactor finds in ``text`` (see :func:`words_of`): (entity, words)."""
    words = words_of(text)
    result = redact(words, **options)  # type: ignore[arg-type]
    return [
        (span.entity, " ".join(w.text for w in words[span.start_word : span.end_word]))
        for span in result.spans
    ]


# ---------------------------------------------------------------------- numbers


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial`` + digit pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


_CARD_PREFIXES = (
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3528", 16),
    ("36", 14),
    ("62", 17),
    ("62", 19),
    ("6759", 18),
)


def card_number(rng: random.Random, *, valid: bool = True) -> str:
    """A card number of some issuer's range and length; Luhn-valid unless ``valid`` is False."""
    prefix, length = rng.choice(_CARD_PREFIXES)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def aba_number(rng: random.Random) -> str:
    """A routing number with a valid ABA check digit."""
    body = [rng.choice("0123") if i == 0 else rng.choice(string.digits) for i in range(8)]
    weights = (3, 7, 1, 3, 7, 1, 3, 7)
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return "".join(body) + str((10 - total % 10) % 10)


_IBAN_FORMATS = {"gb": (22, "WEST"), "de": (22, ""), "fr": (27, ""), "nl": (18, "ABNA"),
                 "es": (24, ""), "it": (27, "X"), "be": (16, ""), "ch": (21, "")}  # fmt: skip


def iban_number(rng: random.Random) -> str:
    """A valid IBAN (upper case, no spaces) of one of a few countries."""
    country, (length, bank) = rng.choice(sorted(_IBAN_FORMATS.items()))
    body = bank + "".join(rng.choice(string.digits) for _ in range(length - 4 - len(bank)))
    numeric = "".join(str(int(c, 36)) for c in body + country.upper() + "00")
    check = 98 - int(numeric) % 97
    return f"{country.upper()}{check:02d}{body}"


def _pair_words(pair: str, rng: random.Random) -> list[str]:
    """Two digits said as a number: "41" forty one, "11" eleven, "07" oh seven."""
    tens, unit = int(pair[0]), int(pair[1])
    if tens == 0:
        return [rng.choice(("oh", "zero", "o")), UNITS[unit]] if unit else ["double", "oh"]
    if tens == 1:
        return [TEENS[unit]]
    return [TENS[tens]] if unit == 0 else [TENS[tens], UNITS[unit]]


def _digit_word(digit: str, rng: random.Random) -> str:
    if digit == "0":
        return rng.choice(("zero", "oh", "oh", "o"))
    return UNITS[int(digit)]


def speak_group(group: str, rng: random.Random, style: str) -> list[str]:
    """One group of digits in ``style``: digits, pairs, doubles, numeral or mixed."""
    if style == "numeral":
        return [group]
    if style == "mixed":
        words: list[str] = []
        index = 0
        while index < len(group):
            if (
                index + 1 < len(group)
                and group[index] == "1"
                and group[index + 1] == "1"
                and (rng.random() < 0.4)
            ):
                words.append("eleven")
                index += 2
                continue
            digit = group[index]
            words.append(digit if rng.random() < 0.5 else _digit_word(digit, rng))
            index += 1
        return words
    if style == "pairs" and len(group) % 2 == 0:
        return [w for i in range(0, len(group), 2) for w in _pair_words(group[i : i + 2], rng)]
    if style == "doubles":
        words = []
        index = 0
        while index < len(group):
            same = 1
            while index + same < len(group) and group[index + same] == group[index] and same < 3:
                same += 1
            if same == 3 and rng.random() < 0.7:
                words += ["triple", _digit_word(group[index], rng)]
            elif same >= 2:
                words += ["double", _digit_word(group[index], rng)]
                same = 2
            else:
                words.append(_digit_word(group[index], rng))
                same = 1
            index += same
        return words
    return [_digit_word(d, rng) for d in group]


def split_groups(digits: str, sizes: Sequence[int]) -> list[str]:
    groups = []
    index = 0
    for size in sizes:
        if index >= len(digits):
            break
        groups.append(digits[index : index + size])
        index += size
    if index < len(digits):
        groups.append(digits[index:])
    return groups


def speak_digits(
    digits: str,
    rng: random.Random,
    sizes: Sequence[int] | None = None,
    *,
    filler_rate: float = 0.08,
    styles: Sequence[str] = ("digits", "digits", "pairs", "doubles", "mixed", "numeral"),
) -> list[tuple[str, bool]]:
    """``digits`` as spoken words: ``(word, carries_content)`` pairs.

    The number is read in groups (``sizes``, else one group), each in a
    style picked at random; groups end with a comma or not; fillers are
    dropped in at ``filler_rate`` per word.
    """
    groups = split_groups(digits, sizes) if sizes else [digits]
    base = rng.choice(styles)
    out: list[tuple[str, bool]] = []
    comma = rng.random() < 0.5
    for number, group in enumerate(groups):
        style = base if rng.random() < 0.8 else rng.choice(styles)
        words = speak_group(group, rng, style)
        for word in words:
            if out and rng.random() < filler_rate:
                out.append((rng.choice(FILLERS), False))
            out.append((word, True))
        if comma and number < len(groups) - 1:
            last_word, content = out[-1]
            out[-1] = (last_word + ",", content)
    return out


def written(digits: str, rng: random.Random, sizes: Sequence[int]) -> list[tuple[str, bool]]:
    """``digits`` as an ASR engine writes them: grouped by spaces, dashes, or run together."""
    groups = split_groups(digits, sizes)
    form = rng.random()
    if form < 0.4:
        return [(group, True) for group in groups]
    if form < 0.7:
        return [("-".join(groups), True)]
    return [(digits, True)]


# ---------------------------------------------------------------------- transcript builder


@dataclass
class _Builder:
    """Words with times and segments, and the entities laid over them."""

    rng: random.Random
    words: list[Word] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    clock: float = 0.0
    segment: int = 0
    speaker: str = "agent"

    def turn(self, speaker: str, pause: tuple[float, float] = (0.3, 1.0)) -> None:
        """A new segment for ``speaker`` after a pause (seconds, drawn from ``pause``)."""
        if self.words:
            self.segment += 1
            self.clock += self.rng.uniform(*pause)
        self.speaker = speaker

    def add(self, text: str) -> None:
        self.clock += self.rng.uniform(0.02, 0.12)
        duration = self.rng.uniform(0.18, 0.42)
        capitalise = not self.words or self.words[-1].segment != self.segment
        shown = text[:1].upper() + text[1:] if capitalise and self.rng.random() < 0.5 else text
        self.words.append(
            Word(shown, round(self.clock, 3), round(self.clock + duration, 3), self.segment)
        )
        self.clock += duration
        if text.endswith(","):
            self.clock += self.rng.uniform(0.2, 0.5)

    def say(self, text: str) -> None:
        for word in text.split():
            self.add(word)

    def entity(self, kind: str, pieces: list[tuple[str, bool]], value: str) -> None:
        """Say an entity's words, perhaps split across segments, and label them."""
        start = len(self.words)
        content: list[int] = []
        split_at = -1
        if len(pieces) > 3 and self.rng.random() < 0.15:
            split_at = self.rng.randrange(1, len(pieces) - 1)
            if pieces[split_at - 1][0] in ("double", "triple", "plus"):
                split_at += 1  # said together with the digit after it
        for index, (word, carries) in enumerate(pieces):
            if index == split_at:
                if self.rng.random() < 0.5:  # the engine cut its stream here
                    self.segment += 1
                    self.clock += self.rng.uniform(0.05, 0.4)
                else:  # the other party says "mhm"
                    speaker = self.speaker
                    self.turn("agent" if speaker == "customer" else "customer", (0.0, 0.3))
                    self.add(self.rng.choice(BACKCHANNELS))
                    self.turn(speaker, (0.0, 0.3))
            if carries:
                content.append(len(self.words))
            self.add(word)
        self.entities.append(Entity(kind, start, len(self.words), tuple(content), value))

    def end_sentence(self) -> None:
        if self.words and self.rng.random() < 0.85:
            last = self.words[-1]
            if last.text[-1:] not in ",.?":
                self.words[-1] = last._replace(text=last.text + ".")


# ---------------------------------------------------------------------- entity phrasings

Say = Callable[[_Builder], None]


def _around(
    builder: _Builder,
    before: str,
    kind: str,
    pieces: list[tuple[str, bool]],
    value: str,
    after: str = "",
) -> None:
    builder.say(before)
    builder.entity(kind, pieces, value)
    if after:
        builder.say(after)
    builder.end_sentence()


def say_card(builder: _Builder) -> None:
    rng = builder.rng
    number = card_number(rng, valid=rng.random() < 0.9)
    sizes = (4, 6, 5) if len(number) == 15 else (4, 4, 4, 4, 3)
    if rng.random() < 0.15:
        pieces = written(number, rng, sizes)
    else:
        pieces = speak_digits(number, rng, sizes if rng.random() < 0.7 else None)
    if rng.random() < 0.35:
        builder.say(
            rng.choice(
                (
                    "can I get the long number on the card please",
                    "okay what's the card number",
                    "go ahead with the card number when you're ready",
                    "and the sixteen digits on the front of the card",
                )
            )
        )
        builder.turn("customer")
        _around(builder, rng.choice(("", "sure it's", "yeah", "okay um")), "CARD", pieces, number)
        return
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("my card number is", ""),
            ("it's a visa the number is", ""),
            ("the credit card is", ""),
            ("sure the debit card number is", ""),
            ("okay so it's", "on my mastercard"),
            ("card number", ""),
            ("I'll pay with my amex it's", ""),
            ("", "that's the card number"),
        )
    )
    _around(builder, before, "CARD", pieces, number, after)


def say_cvv(builder: _Builder) -> None:
    rng = builder.rng
    value = "".join(rng.choice(string.digits) for _ in range(rng.choice((3, 3, 3, 4))))
    pieces = speak_digits(value, rng, styles=("digits", "digits", "mixed", "numeral", "doubles"))
    if rng.random() < 0.4:
        builder.say(
            rng.choice(
                (
                    "and the security code on the back",
                    "what's the cvv",
                    "and the three digits on the back of the card",
                    "can I have the card verification code",
                )
            )
        )
        builder.turn("customer")
        _around(builder, rng.choice(("", "it's", "that's", "um")), "CVV", pieces, value)
        return
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("the security code is", ""),
            ("cvv", ""),
            ("the cvv is", ""),
            ("the code on the back is", ""),
            ("", "is the security code"),
            ("and the cvc is", ""),
            ("three digits on the back", ""),
        )
    )
    _around(builder, before, "CVV", pieces, value, after)


def spoken_expiry(rng: random.Random) -> tuple[list[tuple[str, bool]], str]:
    month = rng.randint(1, 12)
    year = rng.randint(24, 35)
    value = f"{month:02d}{year}"
    form = rng.randrange(7)
    if form == 0:
        words = _pair_words(f"{month:02d}", rng) if month < 10 else _pair_words(f"{month}", rng)
        words += _pair_words(f"{year}", rng)
    elif form == 1:
        words = [f"{month:02d}/{year}"]
    elif form == 2:
        words = [MONTHS[month - 1], *_pair_words(f"{year}", rng)]
    elif form == 3:
        words = [MONTHS[month - 1], "twenty", *_pair_words(f"{year}", rng)]
        value = f"{month:02d}20{year}"
    elif form == 4:
        month_words = [UNITS[month]] if month < 10 else _pair_words(f"{month}", rng)
        words = [*month_words, *_pair_words(f"{year}", rng)]
    elif form == 5:
        words = [_digit_word(d, rng) for d in f"{month:02d}{year}"]
    else:
        words = [f"{month:02d}/20{year}"]
        value = f"{month:02d}20{year}"
    return [(word, True) for word in words], value


def say_expiry(builder: _Builder) -> None:
    rng = builder.rng
    pieces, value = spoken_expiry(rng)
    if rng.random() < 0.3:
        builder.say(
            rng.choice(
                (
                    "and the expiry date",
                    "when does the card expire",
                    "what's the expiration on the card",
                )
            )
        )
        builder.turn("customer")
        _around(builder, rng.choice(("", "it's", "um")), "EXPIRY", pieces, value)
        return
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("the expiry is", ""),
            ("it expires", ""),
            ("expiration date", ""),
            ("valid until", ""),
            ("and the card expires in", ""),
            ("exp", ""),
        )
    )
    _around(builder, before, "EXPIRY", pieces, value, after)


def say_pin(builder: _Builder) -> None:
    rng = builder.rng
    value = "".join(rng.choice(string.digits) for _ in range(rng.choice((4, 4, 6))))
    pieces = speak_digits(value, rng, styles=("digits", "pairs", "doubles", "numeral"))
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("my pin is", ""),
            ("the pin number is", ""),
            ("pin", ""),
            ("", "is my pin"),
            ("the passcode is", ""),
        )
    )
    _around(builder, before, "PIN", pieces, value, after)


def say_ssn(builder: _Builder) -> None:
    rng = builder.rng
    area = rng.randint(1, 899)
    while area == 666:
        area = rng.randint(1, 899)
    value = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    if rng.random() < 0.2:
        last4 = value[-4:]
        pieces = speak_digits(last4, rng, styles=("digits", "pairs", "mixed", "numeral"))
        builder.turn("customer")
        before, after = rng.choice(
            (
                ("the last four of my social are", ""),
                ("last four of my social security number", ""),
                ("the last four digits of my ssn are", ""),
                ("", "are the last four of my social"),
            )
        )
        _around(builder, before, "SSN", pieces, last4, after)
        return
    if rng.random() < 0.1:
        pieces = [(f"{value[:3]}-{value[3:5]}-{value[5:]}", True)]
    else:
        sizes = (3, 2, 4) if rng.random() < 0.7 else None
        pieces = speak_digits(value, rng, sizes)
    if rng.random() < 0.3:
        builder.say(
            rng.choice(
                (
                    "can you verify your social security number",
                    "and your social please",
                    "I'll need your ssn",
                )
            )
        )
        builder.turn("customer")
        _around(builder, rng.choice(("", "sure it's", "yeah")), "SSN", pieces, value)
        return
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("my social is", ""),
            ("social security number", ""),
            ("my ssn is", ""),
            ("", "is my social"),
            ("okay my social security number is", ""),
        )
    )
    _around(builder, before, "SSN", pieces, value, after)


def say_bank(builder: _Builder) -> None:
    rng = builder.rng
    builder.turn("customer")
    if rng.random() < 0.6:
        routing = aba_number(rng)
        pieces = speak_digits(routing, rng, (3, 3, 3) if rng.random() < 0.3 else None)
        before = rng.choice(
            ("the routing number is", "routing", "my bank's routing number is", "the aba number is")
        )
        _around(builder, before, "ROUTING", pieces, routing)
        builder.turn("customer")
    account = "".join(rng.choice(string.digits) for _ in range(rng.randint(8, 17)))
    if rng.random() < 0.2:
        pieces = [(account, True)]
    else:
        pieces = speak_digits(account, rng, (4, 4, 4, 4, 4) if rng.random() < 0.4 else None)
    before, after = rng.choice(
        (
            ("and the account number is", ""),
            ("my checking account is", ""),
            ("account number", ""),
            ("the savings account number is", ""),
            ("", "is my account number"),
        )
    )
    _around(builder, before, "BANK_ACCOUNT", pieces, account, after)


def say_iban(builder: _Builder) -> None:
    rng = builder.rng
    iban = iban_number(rng)
    if rng.random() < 0.5:
        pieces = [(iban[i : i + 4], True) for i in range(0, len(iban), 4)]
    else:
        pieces = []
        for char in iban.lower():
            if char.isdigit():
                pieces.append((_digit_word(char, rng) if rng.random() < 0.8 else char, True))
            else:
                pieces.append((char, True))
    builder.turn("customer")
    before = rng.choice(("my iban is", "the iban is", "iban", "sure the iban number is"))
    _around(builder, before, "IBAN", pieces, iban)


def phone_number(rng: random.Random) -> str:
    return (
        f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        + "".join(rng.choice(string.digits) for _ in range(4))
    )


def say_phone(builder: _Builder) -> None:
    rng = builder.rng
    number = phone_number(rng)
    form = rng.random()
    if form < 0.15:
        pieces = [
            (rng.choice((f"({number[:3]})", number[:3])), True),
            (f"{number[3:6]}-{number[6:]}", True),
        ]
    elif form < 0.25:
        pieces = [("plus", True), ("one", True), *speak_digits(number, rng, (3, 3, 4))]
        number = "1" + number
    elif form < 0.35:
        pieces = [("one", True), *speak_digits(number, rng, (3, 3, 4))]
        number = "1" + number
    else:
        pieces = speak_digits(number, rng, (3, 3, 4) if rng.random() < 0.7 else None)
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("you can call me back at", ""),
            ("my phone number is", ""),
            ("my cell is", ""),
            ("reach me on", ""),
            ("", "is my phone number"),
            ("the best number to call is", ""),
            ("my mobile", ""),
        )
    )
    _around(builder, before, "PHONE", pieces, number, after)


_FIRST = ("john", "mary", "alex", "priya", "li", "maria", "james", "sam", "fatima", "olga")
_LAST = ("smith", "jones", "garcia", "chen", "patel", "nguyen", "brown", "miller", "kim")
_DOMAINS = (
    ("gmail", "com"),
    ("yahoo", "com"),
    ("outlook", "com"),
    ("hotmail", "co", "uk"),
    ("acme", "io"),
    ("company", "org"),
    ("mail", "de"),
)


def say_email(builder: _Builder) -> None:
    rng = builder.rng
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    domain = rng.choice(_DOMAINS)
    form = rng.randrange(5)
    if form == 0:
        local = [first, "dot", last]
    elif form == 1:
        local = [first[0], last]
    elif form == 2:
        local = [first, "underscore", last]
    elif form == 3:
        local = [first + last, *_pair_words(f"{rng.randint(10, 99)}", rng)]
    else:
        local = [first]
    address = f"{first}.{last}@{'.'.join(domain)}"
    if rng.random() < 0.25:
        pieces = [(address, True)]
    else:
        spoken_domain = [w for part in domain for w in ("dot", part)][1:]
        pieces = [(w, True) for w in (*local, "at", *spoken_domain)]
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("my email is", ""),
            ("email", ""),
            ("you can email me at", ""),
            ("it's", "that's my email address"),
            ("send it to", ""),
        )
    )
    _around(builder, before, "EMAIL", pieces, address, after)


def spoken_date(rng: random.Random) -> tuple[list[tuple[str, bool]], str]:
    month, day, year = rng.randint(1, 12), rng.randint(1, 28), rng.randint(1940, 2005)
    value = f"{month:02d}{day:02d}{year}"
    century, rest = divmod(year, 100)
    year_words = (
        [TEENS[century - 10], *(_pair_words(f"{rest:02d}", rng))]
        if year < 2000
        else ["two", "thousand", UNITS[rest]]
        if rest
        else ["two", "thousand"]
    )
    day_words = [ORDINALS[day]] if day <= 20 else [TENS[day // 10], ORDINALS[day % 10]]
    form = rng.randrange(5)
    if form == 0:
        words = [MONTHS[month - 1], *day_words, *year_words]
    elif form == 1:
        words = ["the", *day_words, "of", MONTHS[month - 1], *year_words]
        return [("the", False), *[(w, True) for w in words[1:]]], value
    elif form == 2:
        words = [f"{month:02d}/{day:02d}/{year}"]
    elif form == 3:
        words = [
            *_pair_words(f"{month:02d}", rng),
            *_pair_words(f"{day:02d}", rng),
            *_pair_words(f"{rest:02d}", rng),
        ]
    else:
        day_number = [UNITS[day]] if day < 10 else _pair_words(f"{day}", rng)
        words = [MONTHS[month - 1], *day_number, *year_words]
    return [(w, True) for w in words], value


def say_dob(builder: _Builder) -> None:
    rng = builder.rng
    pieces, value = spoken_date(rng)
    builder.turn("customer")
    before, after = rng.choice(
        (
            ("my date of birth is", ""),
            ("I was born on", ""),
            ("dob", ""),
            ("my birthday is", ""),
            ("date of birth", ""),
        )
    )
    _around(builder, before, "DOB", pieces, value, after)


def say_short_card(builder: _Builder) -> None:
    """A card read short in payment talk (the engine dropped words): must still go."""
    rng = builder.rng
    number = card_number(rng)[: rng.randint(9, 12)]
    builder.turn("customer")
    _around(builder, "the card number is", "DIGITS", speak_digits(number, rng, (4, 4, 4)), number)


# ---------------------------------------------------------------------- near misses


def say_time(builder: _Builder) -> None:
    rng = builder.rng
    hour, minute = rng.randint(1, 12), rng.choice((15, 30, 45, 10, 20, 40, 50))
    words = [UNITS[hour] if hour < 10 else TEENS[hour - 10], *_pair_words(f"{minute}", rng)]
    form = rng.randrange(4)
    speaker = rng.choice(("agent", "customer"))
    builder.turn(speaker)
    if form == 0:
        builder.say(f"can you call me back at {' '.join(words)}")
    elif form == 1:
        builder.say(f"the branch opens at {' '.join(words)} tomorrow")
    elif form == 2:
        builder.say(f"around {' '.join(words)} {rng.choice(('am', 'pm'))} works for me")
    else:
        builder.say(f"I'll be home by {hour}:{minute:02d}")
    builder.end_sentence()


def say_price(builder: _Builder) -> None:
    rng = builder.rng
    dollars, cents = rng.randint(10, 99), rng.randint(10, 99)
    spoken = " ".join([*_pair_words(f"{dollars}", rng), *_pair_words(f"{cents}", rng)])
    builder.turn(rng.choice(("agent", "customer")))
    builder.say(
        rng.choice(
            (
                f"that comes to {spoken} dollars",
                f"the total is {spoken}",
                f"it was ${dollars}.{cents} last month",
                f"it costs {spoken} a month",
                f"you'll be charged {spoken} dollars",
            )
        )
    )
    builder.end_sentence()


def say_order(builder: _Builder) -> None:
    rng = builder.rng
    length = rng.choice((6, 8, 10, 13, 14, 16))
    value = "".join(rng.choice(string.digits) for _ in range(length))
    spoken = " ".join(w for w, _ in speak_digits(value, rng, filler_rate=0.0))
    builder.turn(rng.choice(("agent", "customer")))
    builder.say(
        rng.choice(
            (
                f"my order number is {spoken}",
                f"the tracking number is {spoken}",
                f"your confirmation number is {spoken}",
                f"I'm calling about order {spoken}",
                f"the reference number is {spoken}",
            )
        )
    )
    builder.end_sentence()


def say_chatter(builder: _Builder) -> None:
    rng = builder.rng
    builder.turn(rng.choice(("agent", "customer")))
    builder.say(
        rng.choice(
            (
                "thank you for calling how can I help you today",
                "I have two cards with you and one of them was declined",
                "meet me at one dot me",
                "sure no problem let me pull that up",
                "we've been customers since twenty nineteen",
                "I called three or four times last week",
                "is there anything else I can help you with",
                "I'm in room two oh four at the hotel",
                "okay give me one second",
                "can you hold for a moment please",
                "we talked at one dot five percent interest",
                "I'd like to update my details",
            )
        )
    )
    builder.end_sentence()


_TALK = (
    "so I was looking at my statement and something didn't look right",
    "the app keeps logging me out every time I open it",
    "I understand that must be frustrating let me see what I can do",
    "could you tell me a bit more about what happened",
    "we moved house a few weeks ago and the letters went to the old address",
    "my daughter usually handles this but she's away this week",
    "I just want to make sure nothing else gets charged by mistake",
    "thanks for your patience while I look into this for you",
    "the website said it would take about five working days",
    "I'm not sure if I'm on the right line to be honest",
    "let me just check the notes on your file",
    "it looks like there was a system update over the weekend",
    "can you hear me okay the line is a bit crackly",
    "I'll put a note on the account so the next person can see it",
    "is it alright if I place you on a brief hold",
    "the weather has been terrible here all week",
    "yes that's right that's the one I was talking about",
    "no I don't think I've ever received a letter about that",
    "we usually get a text message when something like this happens",
    "I'd rather not go through all of that again if possible",
    "that makes sense thank you for explaining it",
    "you should receive an email confirmation within the hour",
    "is there a reference I can quote if I need to call back",
    "I was told last time that it had been sorted out",
    "the branch on the high street closed last year",
    "we can also send a replacement to your registered address",
    "please don't worry we'll get this resolved today",
    "I'm driving at the moment so I can't write anything down",
    "it happened twice last month and once the month before",
    "my husband has a card on the same account as well",
)


def say_talk(builder: _Builder) -> None:
    """A sentence of ordinary call talk (for call-length transcripts)."""
    builder.turn(builder.rng.choice(("agent", "customer")))
    builder.say(builder.rng.choice(_TALK))
    builder.end_sentence()


_SCENARIOS: dict[str, tuple[tuple[Say, float], ...]] = {
    "payment": (
        (say_card, 1.0),
        (say_expiry, 0.8),
        (say_cvv, 0.8),
        (say_price, 0.4),
        (say_time, 0.2),
        (say_short_card, 0.05),
    ),
    "identity": ((say_ssn, 0.9), (say_dob, 0.6), (say_phone, 0.6), (say_email, 0.5)),
    "banking": ((say_bank, 1.0), (say_iban, 0.3), (say_pin, 0.4), (say_phone, 0.2)),
    "support": ((say_order, 1.0), (say_time, 0.6), (say_price, 0.5), (say_chatter, 1.0)),
}


def generate(count: int, seed: int = 0, *, talk: int = 0) -> list[LabelledTranscript]:
    """``count`` labelled transcripts, the same for the same ``seed``.

    ``talk`` sentences of ordinary conversation are mixed into each (0: the
    transcripts are mostly their entities; 60 or so make them about as long as
    a five-minute call, with the same entities).
    """
    rng = random.Random(seed)
    names = sorted(_SCENARIOS)
    corpus: list[LabelledTranscript] = []
    for _ in range(count):
        scenario = rng.choice(names)
        builder = _Builder(rng)
        builder.turn("agent")
        builder.say(
            rng.choice(
                (
                    "hi thanks for calling",
                    "hello how can I help",
                    "good morning you're through to accounts",
                )
            )
        )
        builder.end_sentence()
        parts = [say for say, chance in _SCENARIOS[scenario] if rng.random() < chance]
        rng.shuffle(parts)
        if rng.random() < 0.5:
            parts.append(say_chatter)
        parts += [say_talk] * talk
        if talk:
            rng.shuffle(parts)
        for say in parts:
            if rng.random() < 0.3:
                say_chatter(builder)
            say(builder)
        corpus.append(LabelledTranscript(builder.words, builder.entities, scenario))
    return corpus


# ---------------------------------------------------------------------- scoring


@dataclass
class Score:
    """Entity-level counts of one type."""

    gold: int = 0
    found: int = 0  # gold entities whose content words are all redacted and typed right
    covered: int = 0  # gold entities whose content words are all redacted, any type
    predicted: int = 0
    correct: int = 0  # predicted spans that overlap a gold entity of their type

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 1.0

    @property
    def coverage(self) -> float:
        return self.covered / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0


Predicted = Sequence[tuple[str, int, int]]
"""Predicted spans of one transcript: (type, start_word, end_word exclusive)."""


def evaluate(
    corpus: Sequence[LabelledTranscript], predictions: Sequence[Predicted]
) -> dict[str, Score]:
    """Per-type scores of ``predictions`` against the corpus labels.

    Recall: a gold entity is found when every content word of it lies in a
    predicted span and a span of its type overlaps it (any type for
    ``DIGITS``). Precision: a predicted span is correct when it overlaps a
    gold entity of its type, or any gold entity when either is ``DIGITS``.
    """
    scores = {kind: Score() for kind in ENTITY_TYPES}
    for transcript, spans in zip(corpus, predictions, strict=True):
        redacted: set[int] = set()
        for _, start, end in spans:
            redacted.update(range(start, end))
        for entity in transcript.entities:
            score = scores[entity.type]
            score.gold += 1
            if all(index in redacted for index in entity.content):
                score.covered += 1
                if entity.type == "DIGITS" or any(
                    kind == entity.type and start < entity.end_word and end > entity.start_word
                    for kind, start, end in spans
                ):
                    score.found += 1
        for kind, start, end in spans:
            score = scores.setdefault(kind, Score())
            score.predicted += 1
            if any(
                (gold.type == kind or "DIGITS" in (gold.type, kind))
                and start < gold.end_word
                and end > gold.start_word
                for gold in transcript.entities
            ):
                score.correct += 1
    return scores


def format_scores(scores: dict[str, Score]) -> list[list[str]]:
    """Table rows: type, gold, recall, coverage (any type), predicted, precision."""
    return [
        [
            kind,
            str(score.gold),
            f"{score.recall:.3f}",
            f"{score.coverage:.3f}",
            str(score.predicted),
            f"{score.precision:.3f}",
        ]
        for kind, score in scores.items()
        if score.gold or score.predicted
    ]
