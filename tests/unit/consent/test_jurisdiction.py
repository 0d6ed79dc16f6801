"""Where a party is, from its number or an assertion: the table of numbers and the header."""

from __future__ import annotations

import pytest

from gateway.consent.jurisdiction import (
    HEADER,
    Jurisdiction,
    parse_asserted,
    parse_jurisdiction_header,
    resolve_number,
    resolve_party,
)

# number, default region, expected country, expected subdivision, words in the reason
KNOWN_NUMBERS = [
    ("california", "+13105550142", "US", "US", "US-CA", "area code 310"),
    ("san-francisco", "+14155550123", "US", "US", "US-CA", "area code 415"),
    ("new-york", "+12125550101", "US", "US", "US-NY", "area code 212"),
    ("florida", "+13055550134", "US", "US", "US-FL", "area code 305"),
    ("illinois", "+13125550178", "US", "US", "US-IL", "area code 312"),
    ("washington", "+12065550100", "US", "US", "US-WA", "area code 206"),
    ("oregon", "+15035550111", "US", "US", "US-OR", "area code 503"),
    ("texas", "+15125550199", "US", "US", "US-TX", "area code 512"),
    ("dc", "+12025550168", "US", "US", "US-DC", "area code 202"),
    ("vermont", "+18025550110", "US", "US", "US-VT", "area code 802"),
    ("puerto-rico", "+17875550123", "US", "US", "US-PR", "area code 787"),
    ("toronto", "+14165550123", "US", "CA", "CA-ON", "area code 416"),
    ("vancouver", "+16045550123", "US", "CA", "CA-BC", "area code 604"),
    ("montreal", "+15145550123", "US", "CA", "CA-QC", "area code 514"),
    ("quebec-city", "+14185550123", "US", "CA", "CA-QC", "area code 418"),
    ("nova-scotia-or-pei", "+19025550123", "US", "CA", None, "spans CA-NS, CA-PE"),
    ("bahamas", "+12423571234", "US", "BS", None, "area code 242"),
    ("germany-mobile", "+4915123456789", "US", "DE", None, "country code +49"),
    ("germany-landline", "+493012345678", "US", "DE", None, "country code +49"),
    ("uk", "+442079460018", "US", "GB", None, "country code +44"),
    ("denmark", "+4532123456", "US", "DK", None, "country code +45"),
    ("australia-landline", "+61298765432", "US", "AU", None, "country code +61"),
    ("australia-mobile", "+61491570156", "US", "AU", None, "country code +61"),
    ("france", "+33123456789", "US", "FR", None, "country code +33"),
    ("switzerland", "+41446681800", "US", "CH", None, "country code +41"),
    ("national-us", "(415) 555-0123", "US", "US", "US-CA", "area code 415"),
    ("national-dotted-us", "415.555.0123", "US", "US", "US-CA", "area code 415"),
    ("national-de", "030 12345678", "DE", "DE", None, "country code +49"),
    ("national-gb", "020 7946 0018", "GB", "GB", None, "country code +44"),
    ("international-prefix-from-de", "0014155550123", "DE", "US", "US-CA", "area code 415"),
    ("us-number-dialled-in-de", "+1 415 555 0123", "DE", "US", "US-CA", "area code 415"),
]


@pytest.mark.parametrize(
    ("number", "region", "country", "subdivision", "reason"),
    [case[1:] for case in KNOWN_NUMBERS],
    ids=[case[0] for case in KNOWN_NUMBERS],
)
def test_known_numbers(
    number: str, region: str, country: str, subdivision: str | None, reason: str
) -> None:
    found = resolve_number(number, default_region=region)
    assert found.known
    assert (found.country, found.subdivision) == (country, subdivision)
    assert reason in found.reason
    assert found.code == (subdivision or country)


UNKNOWN_NUMBERS = [
    ("toll-free-800", "+18005550199", "US", "toll-free number +18005550199"),
    ("toll-free-888", "+18885550123", "US", "toll-free number"),
    ("toll-free-833", "+18335550123", "US", "toll-free number"),
    ("toll-free-national", "1-800-555-0199", "US", "toll-free number +18005550199"),
    ("premium-900", "+19005550123", "US", "premium-rate number"),
    ("personal-500", "+15005550123", "US", "personal number"),
    ("canada-600", "+16005550123", "CA", "VoIP number"),
    ("german-freephone", "+498001234567", "DE", "toll-free number"),
    ("uk-voip-056", "+445612345678", "GB", "VoIP number"),
    ("international-freephone", "+80012345678", "US", "toll-free number"),
    ("none", None, "US", "withheld number (none given)"),
    ("empty", "", "US", "withheld number (none given)"),
    ("blank", "   ", "US", "withheld number (none given)"),
    ("anonymous", "anonymous", "US", "withheld number ('anonymous')"),
    ("restricted", "Restricted", "US", "withheld number ('Restricted')"),
    ("unavailable", "unavailable", "US", "withheld number"),
    ("letters", "abc", "US", "unparsable number 'abc'"),
    ("vanity", "+1-800-FLOWERS", "US", "unparsable number"),
    ("sip-uri", "sip:alice@example.com", "US", "unparsable number"),
    ("too-short", "12", "US", "invalid number '12'"),
    ("invalid-uk", "+4412345", "US", "invalid number '+4412345'"),
    ("nine-digit-nanp", "+1415555012", "US", "invalid number"),
    ("unassigned-area-code", "+12115550123", "US", "invalid number"),
]


@pytest.mark.parametrize(
    ("number", "region", "reason"),
    [case[1:] for case in UNKNOWN_NUMBERS],
    ids=[case[0] for case in UNKNOWN_NUMBERS],
)
def test_numbers_without_a_place_are_unknown(number: str | None, region: str, reason: str) -> None:
    found = resolve_number(number, default_region=region)
    assert not found.known
    assert (found.country, found.subdivision) == (None, None)
    assert found.code == "unknown"
    assert reason in found.reason


def test_national_number_depends_on_the_default_region() -> None:
    assert resolve_number("03012345678", default_region="DE").country == "DE"
    assert resolve_number("03012345678", default_region="GB").known is False


def test_default_region_must_be_a_country() -> None:
    with pytest.raises(ValueError, match="default region 'XX'"):
        resolve_number("+14155550123", default_region="XX")


def test_jurisdiction_invariants() -> None:
    with pytest.raises(ValueError, match="not in country"):
        Jurisdiction("CA", "US-CA", True, "wrong")
    with pytest.raises(ValueError, match="needs a country"):
        Jurisdiction(None, None, True, "nowhere")
    with pytest.raises(ValueError, match="no country"):
        Jurisdiction("US", None, False, "both")
    assert str(Jurisdiction.unknown("withheld number")) == "unknown (withheld number)"


# -- asserted jurisdictions --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "country", "subdivision"),
    [
        ("US-CA", "US", "US-CA"),
        (" ca-on ", "CA", "CA-ON"),
        ("AU-NSW", "AU", "AU-NSW"),
        ("de", "DE", None),
        ("GB", "GB", None),
        ("FR-75", "FR", "FR-75"),
    ],
)
def test_parse_asserted(value: str, country: str, subdivision: str | None) -> None:
    found = parse_asserted(value, source="API")
    assert found is not None
    assert (found.country, found.subdivision, found.known) == (country, subdivision, True)
    assert found.reason == "asserted by API"


def test_parse_asserted_unknown_and_empty() -> None:
    unknown = parse_asserted("Unknown", source="CRM")
    assert unknown is not None and not unknown.known
    assert unknown.reason == "asserted by CRM"
    assert parse_asserted("  ") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("XX", "not a country code"),
        ("USA", "not an ISO 3166-1 alpha-2"),
        ("UK", "GB"),
        ("US-ZZ", "'ZZ' is not a subdivision of US"),
        ("CA-QUE", "'QUE' is not a subdivision of CA"),
        ("AU-XYZ", "not a subdivision of AU"),
        ("US-", "not an ISO 3166-2"),
        ("ZZ-AB", "not a country code"),
        ("US-CA-SF", "not an ISO 3166-2"),
    ],
)
def test_parse_asserted_rejects(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_asserted(value)
    assert repr(value.strip()) in str(caught.value)


def test_header_names_both_parties() -> None:
    found = parse_jurisdiction_header("caller=US-CA;callee=DE")
    assert found["caller"].subdivision == "US-CA"
    assert found["callee"].country == "DE"
    assert found["callee"].reason == f"asserted by header {HEADER}"


def test_header_tolerates_case_space_and_a_trailing_separator() -> None:
    found = parse_jurisdiction_header(" Caller = us-ca ; CALLEE=unknown; ")
    assert found["caller"].code == "US-CA"
    assert not found["callee"].known


def test_header_with_one_party() -> None:
    assert list(parse_jurisdiction_header("callee=CA-ON")) == ["callee"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("caller", "'caller' is not party=jurisdiction"),
        ("agent=US", "unknown party 'agent'"),
        ("caller=US;caller=DE", "caller is named twice"),
        ("caller=", "caller= has no jurisdiction"),
        ("caller=XX", "caller: jurisdiction 'XX'"),
        ("", "no party=jurisdiction items"),
        (" ; ", "no party=jurisdiction items"),
    ],
)
def test_header_errors(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_jurisdiction_header(value)
    assert str(caught.value).startswith(HEADER)


def test_assertion_replaces_the_number_and_the_reason_keeps_both() -> None:
    asserted = parse_asserted("US-FL", source=f"header {HEADER}")
    found = resolve_party("+12125550101", default_region="US", asserted=asserted)
    assert found.code == "US-FL"
    assert f"asserted by header {HEADER}" in found.reason
    assert "US-NY (area code 212)" in found.reason


def test_without_assertion_the_number_decides() -> None:
    found = resolve_party("+12125550101", default_region="US")
    assert found == resolve_number("+12125550101", default_region="US")
