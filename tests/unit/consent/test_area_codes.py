"""The NANP area-code table: committed copy matches phonenumbers, and lookups use it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneNumber, geocoder

from gateway.consent import nanp_area_codes
from gateway.consent.areacode_gen import generate, place_codes, render
from gateway.consent.areacodes import TABLE_VERSION, non_geographic_service, place_of

TABLE_FILE = Path(nanp_area_codes.__file__)


def test_committed_table_matches_a_fresh_generation() -> None:
    fresh = render(generate())
    committed = TABLE_FILE.read_text(encoding="utf-8")
    assert fresh == committed, (
        f"{TABLE_FILE} differs from phonenumbers {metadata.version('phonenumbers')}: "
        "run python scripts/make_area_codes.py"
    )


def test_table_names_the_phonenumbers_version() -> None:
    assert metadata.version("phonenumbers") == TABLE_VERSION
    assert f"phonenumbers {TABLE_VERSION}" in TABLE_FILE.read_text(encoding="utf-8")


def test_geocoder_agrees_with_the_table_for_every_single_place_area_code() -> None:
    """Independent of the generator: ask phonenumbers' public geocoder about one number each."""
    checked = 0
    for npa, (_, subdivisions) in nanp_area_codes.AREA_CODES.items():
        if len(subdivisions) != 1:
            continue
        number = PhoneNumber(country_code=1, national_number=int(f"{npa}5550100"))
        if not phonenumbers.is_valid_number(number) or place_of(f"{npa}5550100") is None:
            continue
        if place_of(f"{npa}5550100").prefix != npa:  # type: ignore[union-attr]
            continue
        codes = place_codes(geocoder.description_for_number(number, "en"))
        if codes is None:
            continue
        assert codes == subdivisions, f"area code {npa}"
        checked += 1
    assert checked > 300


@pytest.mark.parametrize(
    ("npa", "kind"),
    [
        ("800", "TOLL_FREE"),
        ("833", "TOLL_FREE"),
        ("844", "TOLL_FREE"),
        ("855", "TOLL_FREE"),
        ("866", "TOLL_FREE"),
        ("877", "TOLL_FREE"),
        ("888", "TOLL_FREE"),
        ("900", "PREMIUM_RATE"),
        ("500", "PERSONAL_NUMBER"),
        ("533", "PERSONAL_NUMBER"),
    ],
)
def test_non_geographic_area_codes(npa: str, kind: str) -> None:
    assert non_geographic_service(npa + "5550100") == kind
    assert npa not in nanp_area_codes.AREA_CODES


def test_geographic_area_code_is_not_non_geographic() -> None:
    assert non_geographic_service("4155550100") is None


@pytest.mark.parametrize(
    ("national", "country", "subdivisions"),
    [
        ("4155550100", "US", ("US-CA",)),
        ("2125550100", "US", ("US-NY",)),
        ("4165550100", "CA", ("CA-ON",)),
        ("9025550100", "CA", ("CA-NS", "CA-PE")),
        ("8675550100", "CA", ("CA-NT", "CA-NU", "CA-YT")),
    ],
)
def test_place_of(national: str, country: str, subdivisions: tuple[str, ...]) -> None:
    place = place_of(national)
    assert place is not None
    assert (place.country, place.subdivisions, place.prefix) == (
        country,
        subdivisions,
        national[:3],
    )


def test_exchange_prefix_overrides_its_area_code() -> None:
    prefix, codes = next(
        (prefix, codes)
        for prefix, codes in sorted(nanp_area_codes.EXCHANGES.items())
        if nanp_area_codes.AREA_CODES[prefix[:3]][1] != codes
    )
    national = (prefix + "0000000")[:10]
    place = place_of(national)
    assert place is not None
    assert (place.subdivisions, place.prefix) == (codes, prefix)


def test_unknown_area_code_is_not_placed() -> None:
    assert place_of("2115550100") is None


@pytest.mark.parametrize(
    ("description", "codes"),
    [
        ("San Francisco, CA", ("US-CA",)),
        ("Toronto, ON", ("CA-ON",)),
        ("New Jersey", ("US-NJ",)),
        ("Washington State", ("US-WA",)),
        ("Washington D.C.", ("US-DC",)),
        ("British Colombia", ("CA-BC",)),
        ("Nova Scotia/Prince Edward Island", ("CA-NS", "CA-PE")),
        ("Northwest Territories/Nunavut/Yukon", ("CA-NT", "CA-NU", "CA-YT")),
        ("Watson Lake", None),
        ("Somewhere, ZZ", None),
        ("", None),
    ],
)
def test_place_codes(description: str, codes: tuple[str, ...] | None) -> None:
    assert place_codes(description) == codes
