"""Where a US or Canadian number is, by its area code (and exchange, where they differ).

Reads the table generated from ``phonenumbers`` (``nanp_area_codes.py``,
written by ``scripts/make_area_codes.py``). An area code is a hint, not proof
of where a party is: numbers are ported, mobiles travel, VoIP numbers are
anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.consent.nanp_area_codes import (
    AREA_CODES,
    EXCHANGES,
    NON_GEOGRAPHIC,
    PHONENUMBERS_VERSION,
)

TABLE_VERSION = PHONENUMBERS_VERSION
"""The ``phonenumbers`` version the table was generated from."""

_LONGEST_EXCHANGE = max((len(prefix) for prefix in EXCHANGES), default=3)


@dataclass(frozen=True, slots=True)
class AreaCodePlace:
    """What the table says about a number's area code.

    ``subdivisions`` has one ISO 3166-2 code when the place is certain, more
    than one when the area code spans several, none when the table names no
    place. ``prefix`` is the table key that matched (area code, or area code
    and leading exchange digits).
    """

    country: str
    subdivisions: tuple[str, ...]
    prefix: str


def non_geographic_service(national_number: str) -> str | None:
    """The number type of a non-geographic area code (``"TOLL_FREE"``, ...), else None."""
    return NON_GEOGRAPHIC.get(national_number[:3])


def place_of(national_number: str) -> AreaCodePlace | None:
    """The place of a ten-digit NANP national number, or None when its area code is not tabled."""
    area = AREA_CODES.get(national_number[:3])
    if area is None:
        return None
    country, subdivisions = area
    for end in range(min(_LONGEST_EXCHANGE, len(national_number)), 3, -1):
        found = EXCHANGES.get(national_number[:end])
        if found is not None:
            return AreaCodePlace(country, found, national_number[:end])
    return AreaCodePlace(country, subdivisions, national_number[:3])
