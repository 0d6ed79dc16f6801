"""Build the NANP area-code table from the installed ``phonenumbers`` data.

The North American Numbering Plan (country code +1) puts the United States,
Canada and Caribbean countries behind one country code; the three-digit
area code (NPA) tells which, and for the US and Canada which state or
province. ``phonenumbers`` (Google's libphonenumber metadata) knows each
number's region and type, and its geocoder names a place for each area code
and exchange prefix: ``"New Jersey"``, ``"San Francisco, CA"``,
``"Nova Scotia/Prince Edward Island"``. This module turns those names into
ISO 3166-2 codes and renders the Python module that the gateway reads at run
time (``gateway/consent/nanp_area_codes.py``). ``scripts/make_area_codes.py``
writes it; a unit test regenerates it and compares, so the committed table
cannot drift from the installed library unnoticed.

Only US and Canadian area codes are tabled: for the other NANP countries,
and for the US outlying areas with area codes of their own (Puerto Rico,
Guam, ...), the region ``phonenumbers`` reports for the number is the whole
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

from gateway.consent.subdivisions import CA_PROVINCES, US_STATES

TABLED_REGIONS: frozenset[str] = frozenset({"US", "CA"})

NON_GEOGRAPHIC_TYPES: frozenset[int] = frozenset(
    {
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.VOIP,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.PAGER,
        PhoneNumberType.UAN,
        PhoneNumberType.VOICEMAIL,
    }
)
"""Number types that say nothing about where the party is."""

_TYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(PhoneNumberType).items() if name.isupper()
}

# Names the geocoder uses for a whole state or province, where they differ from ISO's.
_NAME_ALIASES: dict[str, str] = {
    "Washington State": "US-WA",
    "Washington D.C.": "US-DC",
    "British Colombia": "CA-BC",
}

_CITY_AND_CODE = re.compile(r"^.+, ([A-Z]{2})$")

# Exchanges tried when looking for a valid number in an area code with no geocoder entry.
_SAMPLE_EXCHANGES: tuple[str, ...] = tuple(str(nxx) for nxx in range(200, 1000, 50))
_LINE = "0100"


def _names_to_codes() -> dict[str, str]:
    names = {name: f"US-{code}" for code, name in US_STATES.items()}
    names.update({name: f"CA-{code}" for code, name in CA_PROVINCES.items()})
    names.update(_NAME_ALIASES)
    return names


_NAMES = _names_to_codes()


def place_codes(description: str) -> tuple[str, ...] | None:
    """ISO 3166-2 codes a geocoder description names, or None when it names no state/province.

    ``"San Francisco, CA"`` -> ``("US-CA",)``; ``"Ontario"`` -> ``("CA-ON",)``;
    ``"Nova Scotia/Prince Edward Island"`` -> ``("CA-NS", "CA-PE")``.
    """
    match = _CITY_AND_CODE.match(description)
    if match is not None:
        code = match.group(1)
        if code in US_STATES:
            return (f"US-{code}",)
        if code in CA_PROVINCES:
            return (f"CA-{code}",)
        return None
    codes: list[str] = []
    for part in description.split("/"):
        code = _NAMES.get(part.strip())
        if code is None:
            return None
        codes.append(code)
    return tuple(sorted(set(codes)))


@dataclass
class AreaCodeTable:
    """The generated table, before rendering."""

    phonenumbers_version: str
    area_codes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    exchanges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    non_geographic: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)


def _geocode_data() -> dict[str, str]:
    """Geocoder prefixes under +1 (without the 1) -> English description."""
    from phonenumbers.geodata import GEOCODE_DATA

    found: dict[str, str] = {}
    for prefix, names in GEOCODE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4 and "en" in names:
            found[prefix[1:]] = names["en"]
    return found


def _number(digits: str) -> PhoneNumber:
    return PhoneNumber(country_code=1, national_number=int(digits))


def _representative(npa: str, prefixes: list[str]) -> PhoneNumber | None:
    """A valid number in the area code: from a geocoded prefix, else a sampled exchange."""
    candidates = [(prefix + "2000100")[:10] for prefix in prefixes]
    candidates += [npa + nxx + _LINE for nxx in _SAMPLE_EXCHANGES]
    for digits in candidates:
        number = _number(digits)
        if phonenumbers.is_valid_number(number):
            return number
    return None


def _inherited(prefix: str, effective: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    for end in range(len(prefix) - 1, 2, -1):
        found = effective.get(prefix[:end])
        if found is not None:
            return found
    raise KeyError(prefix)


def _place_area_code(
    table: AreaCodeTable, npa: str, country: str, geocoded: dict[str, str]
) -> None:
    """Record the area code's place and the exchanges the geocoder puts elsewhere."""
    placed: dict[str, tuple[str, ...]] = {}
    for prefix in sorted(geocoded):
        codes = place_codes(geocoded[prefix])
        if codes is None:
            table.unplaced[prefix] = geocoded[prefix]
        else:
            placed[prefix] = codes
    whole = placed.get(npa)
    if whole is None:
        whole = tuple(sorted({code for codes in placed.values() for code in codes}))
    table.area_codes[npa] = (country, whole)
    effective: dict[str, tuple[str, ...]] = {npa: whole}
    for prefix in sorted((p for p in placed if p != npa), key=lambda p: (len(p), p)):
        if placed[prefix] != _inherited(prefix, effective):
            effective[prefix] = placed[prefix]
            table.exchanges[prefix] = placed[prefix]


def generate() -> AreaCodeTable:
    """The table for every area code 200-999 from the installed ``phonenumbers``."""
    table = AreaCodeTable(phonenumbers_version=metadata.version("phonenumbers"))
    geocoded = _geocode_data()
    by_area: dict[str, dict[str, str]] = {}
    for prefix, description in geocoded.items():
        by_area.setdefault(prefix[:3], {})[prefix] = description
    for value in range(200, 1000):
        npa = str(value)
        here = by_area.get(npa, {})
        number = _representative(npa, sorted(here, key=lambda p: (len(p), p)))
        if number is None:
            continue
        region = phonenumbers.region_code_for_number(number)
        if region not in TABLED_REGIONS:
            continue
        kind = phonenumbers.number_type(number)
        if kind in NON_GEOGRAPHIC_TYPES:
            table.non_geographic[npa] = _TYPE_NAMES[kind]
            continue
        _place_area_code(table, npa, region, here)
    return table


def _codes(codes: tuple[str, ...]) -> str:
    inner = ", ".join(f'"{code}"' for code in codes)
    return f"({inner},)" if len(codes) == 1 else f"({inner})"


def _text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(table: AreaCodeTable) -> str:
    """The generated module's source text."""
    out = [
        f'"""NANP area codes (+1) and their places: generated from phonenumbers '
        f"{table.phonenumbers_version}.",
        "",
        "Do not edit: run ``python scripts/make_area_codes.py`` to regenerate",
        "(``gateway/consent/areacode_gen.py`` says how the table is built).",
        '"""',
        "",
        f'PHONENUMBERS_VERSION = "{table.phonenumbers_version}"',
        "",
        "# Area code -> (ISO 3166-1 country, ISO 3166-2 subdivisions). Several subdivisions:",
        "# the geocoder names more than one for the area code as a whole; none: no place.",
        "AREA_CODES: dict[str, tuple[str, tuple[str, ...]]] = {",
    ]
    for npa, (country, codes) in sorted(table.area_codes.items()):
        out.append(f'    "{npa}": ("{country}", {_codes(codes)}),')
    out += [
        "}",
        "",
        "# Area code + leading exchange digits -> subdivisions, where the geocoder places",
        "# those numbers elsewhere than the area code (longest prefix wins).",
        "EXCHANGES: dict[str, tuple[str, ...]] = {",
    ]
    for prefix, codes in sorted(table.exchanges.items()):
        out.append(f'    "{prefix}": {_codes(codes)},')
    out += [
        "}",
        "",
        "# Area codes of services with no place (toll-free, premium, personal, ...)",
        "# -> phonenumbers number type.",
        "NON_GEOGRAPHIC: dict[str, str] = {",
    ]
    for npa, kind in sorted(table.non_geographic.items()):
        out.append(f'    "{npa}": "{kind}",')
    out += [
        "}",
        "",
        "# Geocoder descriptions that name no state or province: these prefixes take",
        "# the place of the area code (or exchange prefix) they belong to.",
        "UNPLACED: dict[str, str] = {",
    ]
    for prefix, description in sorted(table.unplaced.items()):
        out.append(f'    "{prefix}": {_text(description)},')
    out += ["}", ""]
    return "\n".join(out)
