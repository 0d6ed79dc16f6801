"""Where a call's party is, for the recording-consent rules: from its number or an assertion.

A number is read with ``phonenumbers`` (libphonenumber) into E.164 (ITU-T
E.164; RFC 3966 for the visual separators dropped first). The country comes
from the country code; for +1 (NANP) numbers in the United States and Canada
the state or province comes from the area code, by the table generated from
``phonenumbers`` data (:mod:`gateway.consent.areacodes`). US outlying areas
with area codes of their own (Puerto Rico, Guam, ...) are the US with an
ISO 3166-2:US subdivision (``US-PR``).

A party whose place cannot be told is *unknown*, and the rules treat unknown
as strictest: withheld numbers (no number, ``anonymous``, ``restricted``,
``unavailable``, ``private``, ``withheld``, ``unknown``), numbers that do not
parse or are not valid, and number types that say nothing about where the
party is (toll-free, premium rate, shared cost, VoIP, personal numbers,
pagers, UAN, voicemail; the NANP's 8XX, 900, 5XX, 600 area codes).

The PBX may assert a party's jurisdiction (from CRM data, say) with the SIP
extension header ``X-Callgate-Jurisdiction`` (RFC 3261 section 7.3.1
header syntax)::

    X-Callgate-Jurisdiction: caller=US-CA;callee=DE

``;``-separated ``party=code`` items; parties are ``caller`` and ``callee``;
a code is an ISO 3166-1 alpha-2 country (``DE``, ``GB``), an ISO 3166-2
subdivision (``US-CA``, ``CA-ON``, ``AU-NSW``) or ``unknown``; case does not
matter. An asserted jurisdiction replaces the one the number gives. The
header is trusted only as far as the PBX that sends it: it is for the
gateway's PBX side, never the trunk side.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from gateway.consent.areacode_gen import NON_GEOGRAPHIC_TYPES
from gateway.consent.areacodes import TABLE_VERSION, non_geographic_service, place_of
from gateway.consent.subdivisions import (
    COUNTRIES,
    NANP_OUTLYING_REGIONS,
    check_country,
    check_subdivision,
)

HEADER = "X-Callgate-Jurisdiction"
"""The SIP header a PBX uses to assert its parties' jurisdictions."""

PARTY_NAMES: tuple[str, ...] = ("caller", "callee")
"""Parties a header may name."""

UNKNOWN = "unknown"

WITHHELD: frozenset[str] = frozenset(
    {"", "anonymous", "restricted", "unavailable", "private", "withheld", "unknown"}
)
"""Caller-ID values (compared in lower case) that mean the number is withheld."""

_TYPE_LABELS: dict[int, str] = {
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "universal access (UAN)",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

_VISUAL_SEPARATORS = str.maketrans("", "", "-.() \t")
_DIALLED = re.compile(r"^\+?[0-9]+$")


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """Where one party is, as far as the gateway can tell, and why it thinks so.

    ``country`` is ISO 3166-1 alpha-2, ``subdivision`` ISO 3166-2 (``US-CA``)
    and always inside ``country``. ``known`` is False when the place cannot
    be told; then both are None and the strictest rule applies. ``reason``
    says where the answer came from (``"area code 415"``, ``"country code
    +49"``, ``"toll-free number +18005550100"``, ``"withheld number
    ('anonymous')"``, ``"asserted by header X-Callgate-Jurisdiction"``).
    """

    country: str | None
    subdivision: str | None
    known: bool
    reason: str

    def __post_init__(self) -> None:
        if not self.known and (self.country is not None or self.subdivision is not None):
            raise ValueError("an unknown jurisdiction has no country or subdivision")
        if self.known and self.country is None:
            raise ValueError("a known jurisdiction needs a country")
        if self.subdivision is not None and not self.subdivision.startswith(f"{self.country}-"):
            raise ValueError(f"subdivision {self.subdivision} is not in country {self.country}")

    @classmethod
    def unknown(cls, reason: str) -> Jurisdiction:
        return cls(None, None, False, reason)

    @property
    def code(self) -> str:
        """The most precise code: ``US-CA``, ``DE``, or ``unknown``."""
        return self.subdivision or self.country or UNKNOWN

    def __str__(self) -> str:
        return f"{self.code} ({self.reason})"


def resolve_number(number: str | None, *, default_region: str) -> Jurisdiction:
    """The jurisdiction a party's number points to.

    ``number`` is the number as signalled (E.164 with ``+``, or national
    digits of ``default_region``, with visual separators allowed).
    ``default_region`` is the tenant's ISO 3166-1 country; a value that is
    not one is a ValueError, since it is configuration, not call input.
    """
    if default_region not in COUNTRIES:
        raise ValueError(f"default region {default_region!r} is not a country code")
    return _resolve(number, default_region)


@functools.lru_cache(maxsize=8192)
def _resolve(number: str | None, default_region: str) -> Jurisdiction:
    """:func:`resolve_number`, remembered: the same numbers call again and again
    (an agent's line, a busy customer), and parsing costs some 30 us."""
    text = (number or "").strip()
    if text.lower() in WITHHELD:
        shown = repr(text) if text else "none given"
        return Jurisdiction.unknown(f"withheld number ({shown})")
    digits = text.translate(_VISUAL_SEPARATORS)
    if not _DIALLED.match(digits):
        return Jurisdiction.unknown(f"unparsable number {text!r}")
    try:
        parsed = phonenumbers.parse(digits, default_region)
    except NumberParseException as error:
        detail = str(error).split(") ", 1)[-1].rstrip(".")
        return Jurisdiction.unknown(f"unparsable number {text!r}: {detail}")
    if not phonenumbers.is_valid_number(parsed):
        return Jurisdiction.unknown(f"invalid number {text!r}")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    kind = phonenumbers.number_type(parsed)
    if kind in NON_GEOGRAPHIC_TYPES:
        return Jurisdiction.unknown(f"{_TYPE_LABELS[kind]} number {e164}")
    region = phonenumbers.region_code_for_number(parsed)
    if region is None or region not in COUNTRIES:
        return Jurisdiction.unknown(f"non-geographic country code +{parsed.country_code}")
    if parsed.country_code == 1:
        return _nanp(phonenumbers.national_significant_number(parsed), region, e164)
    return Jurisdiction(region, None, True, f"country code +{parsed.country_code}")


def _nanp(national: str, region: str, e164: str) -> Jurisdiction:
    """A +1 number: state or province from the area-code table, else the region alone."""
    npa = national[:3]
    if region in NANP_OUTLYING_REGIONS:
        return Jurisdiction("US", f"US-{region}", True, f"area code {npa}")
    if region not in ("US", "CA"):
        return Jurisdiction(region, None, True, f"area code {npa}")
    service = non_geographic_service(national)
    if service is not None:
        return Jurisdiction.unknown(f"non-geographic area code {npa} number {e164}")
    place = place_of(national)
    if place is None:
        reason = f"area code {npa} is not in the area-code table (phonenumbers {TABLE_VERSION})"
        return Jurisdiction(region, None, True, reason)
    where = f"area code {npa}"
    if len(place.prefix) > 3:
        where = f"exchange prefix {npa}-{place.prefix[3:]}"
    if len(place.subdivisions) == 1:
        return Jurisdiction(place.country, place.subdivisions[0], True, where)
    if place.subdivisions:
        return Jurisdiction(
            place.country, None, True, f"{where} spans {', '.join(place.subdivisions)}"
        )
    return Jurisdiction(place.country, None, True, f"{where} has no known place")


def parse_asserted(value: str, *, source: str = "API") -> Jurisdiction | None:
    """An asserted jurisdiction code (``US-CA``, ``DE``, ``unknown``), or None for an empty one.

    ``source`` names who asserted it, for the reason (``"API"``,
    ``"header X-Callgate-Jurisdiction"``, ``"tenant home"``). A code that is
    not an ISO 3166-1 country, an ISO 3166-2 subdivision or ``unknown`` is a
    ValueError that says why.
    """
    code = value.strip().upper()
    if not code:
        return None
    reason = f"asserted by {source}"
    if code == UNKNOWN.upper():
        return Jurisdiction.unknown(reason)
    try:
        if "-" in code:
            country, subdivision = check_subdivision(code)
            return Jurisdiction(country, subdivision, True, reason)
        if code == "UK":
            raise ValueError("the United Kingdom's ISO 3166-1 code is GB")
        return Jurisdiction(check_country(code), None, True, reason)
    except ValueError as error:
        raise ValueError(f"jurisdiction {value.strip()!r}: {error}") from None


def parse_jurisdiction_header(value: str) -> dict[str, Jurisdiction]:
    """The parties' jurisdictions a ``X-Callgate-Jurisdiction`` header asserts.

    ``caller=US-CA;callee=DE`` -> ``{"caller": ..., "callee": ...}``. An item
    without ``=``, a party other than caller or callee, a party named twice,
    an empty code or an invalid code is a ValueError naming the header.
    """
    found: dict[str, Jurisdiction] = {}
    source = f"header {HEADER}"
    for item in value.split(";"):
        text = item.strip()
        if not text:
            continue
        name, equals, code = text.partition("=")
        party = name.strip().lower()
        if not equals:
            raise ValueError(f"{HEADER}: {text!r} is not party=jurisdiction")
        if party not in PARTY_NAMES:
            raise ValueError(
                f"{HEADER}: unknown party {name.strip()!r} (expected {' or '.join(PARTY_NAMES)})"
            )
        if party in found:
            raise ValueError(f"{HEADER}: {party} is named twice")
        try:
            asserted = parse_asserted(code, source=source)
        except ValueError as error:
            raise ValueError(f"{HEADER}: {party}: {error}") from None
        if asserted is None:
            raise ValueError(f"{HEADER}: {party}= has no jurisdiction")
        found[party] = asserted
    if not found:
        raise ValueError(f"{HEADER}: no party=jurisdiction items in {value!r}")
    return found


def resolve_party(
    number: str | None, *, default_region: str, asserted: Jurisdiction | None = None
) -> Jurisdiction:
    """A party's jurisdiction: the asserted one when there is one, else its number's.

    When both exist the reason keeps what the number said, for the record.
    """
    from_number = resolve_number(number, default_region=default_region)
    if asserted is None:
        return from_number
    reason = f"{asserted.reason}; the number says {from_number}"
    return Jurisdiction(asserted.country, asserted.subdivision, asserted.known, reason)
