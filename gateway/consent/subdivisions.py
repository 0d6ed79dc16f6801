"""ISO 3166-2 subdivision codes the consent rules know by name.

The United States (states, the District of Columbia and the outlying areas
that have their own NANP area codes), Canada (provinces and territories)
and Australia (states and territories): the places whose rules differ
inside one country in the reference facts. Other countries' subdivision
codes are accepted by form only (``CC-`` and one to three letters or digits,
ISO 3166-2 section 5).
"""

from __future__ import annotations

import re

import phonenumbers

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas",
    "CA": "California", "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware",
    "DC": "District of Columbia", "FL": "Florida", "GA": "Georgia", "HI": "Hawaii",
    "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin",
    "WY": "Wyoming",
}  # fmt: skip

US_OUTLYING_AREAS: dict[str, str] = {
    "AS": "American Samoa",
    "GU": "Guam",
    "MP": "Northern Mariana Islands",
    "PR": "Puerto Rico",
    "UM": "United States Minor Outlying Islands",
    "VI": "United States Virgin Islands",
}

CA_PROVINCES: dict[str, str] = {
    "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories",
    "NU": "Nunavut", "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec",
    "SK": "Saskatchewan", "YT": "Yukon",
}  # fmt: skip

AU_STATES: dict[str, str] = {
    "ACT": "Australian Capital Territory", "NSW": "New South Wales",
    "NT": "Northern Territory", "QLD": "Queensland", "SA": "South Australia",
    "TAS": "Tasmania", "VIC": "Victoria", "WA": "Western Australia",
}  # fmt: skip

KNOWN_SUBDIVISIONS: dict[str, dict[str, str]] = {
    "US": {**US_STATES, **US_OUTLYING_AREAS},
    "CA": CA_PROVINCES,
    "AU": AU_STATES,
}
"""Country -> subdivision code (after ``CC-``) -> name, for the countries checked by name."""

NANP_OUTLYING_REGIONS: frozenset[str] = frozenset({"AS", "GU", "MP", "PR", "VI"})
"""Regions with their own NANP area codes that are US outlying areas (ISO 3166-2:US)."""

COUNTRIES: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)
"""ISO 3166-1 alpha-2 codes of every country or territory with a telephone numbering plan."""

_SUBDIVISION = re.compile(r"^([A-Z]{2})-([A-Z0-9]{1,3})$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_country(code: str) -> str:
    """``code`` if it is an ISO 3166-1 alpha-2 country code, else ValueError with the reason."""
    if not _COUNTRY.match(code):
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (two letters)")
    if code not in COUNTRIES:
        raise ValueError(f"{code!r} is not a country code with a telephone numbering plan")
    return code


def check_subdivision(code: str) -> tuple[str, str]:
    """``(country, code)`` for an ISO 3166-2 code such as ``US-CA``; ValueError if not one."""
    match = _SUBDIVISION.match(code)
    if match is None:
        raise ValueError(
            f"{code!r} is not an ISO 3166-2 subdivision code (CC-XXX, such as US-CA or CA-ON)"
        )
    country, local = match.groups()
    check_country(country)
    names = KNOWN_SUBDIVISIONS.get(country)
    if names is not None and local not in names:
        raise ValueError(f"{code!r}: {local!r} is not a subdivision of {country}")
    return country, code


def is_subdivision_code(code: str) -> bool:
    """Whether ``code`` has the form of an ISO 3166-2 code (``CC-`` and 1-3 letters or digits)."""
    return _SUBDIVISION.match(code) is not None
