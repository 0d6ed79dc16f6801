"""The shipped rule set: which rule each place gets, and the strictest rule for a call."""

from __future__ import annotations

import json

import pytest

from gateway.consent.jurisdiction import Jurisdiction, parse_asserted, resolve_number
from gateway.consent.rule import Confidence, Mode, Parties, Rule
from gateway.consent.rules import RuleSet, load_rules, parse_rules


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def number(value: str | None, region: str = "US") -> Jurisdiction:
    return resolve_number(value, default_region=region)


def place(code: str) -> Jurisdiction:
    found = parse_asserted(code, source="test")
    assert found is not None
    return found


# number, expected rule key, mode, parties
NUMBER_RULES = [
    ("california-mobile", "+13105550142", "US-CA", "notice", "all"),
    ("new-york", "+12125550101", "US", "notice", "one"),
    ("florida", "+13055550134", "US-FL", "opt_in", "all"),
    ("illinois", "+13125550178", "US-IL", "notice", "all"),
    ("washington", "+12065550100", "US-WA", "notice", "all"),
    ("oregon-one-party", "+15035550111", "US-OR", "notice", "one"),
    ("texas", "+15125550199", "US", "notice", "one"),
    ("dc", "+12025550168", "US", "notice", "one"),
    ("vermont", "+18025550110", "US-VT", "notice", "one"),
    ("toronto", "+14165550123", "CA", "notice", "one"),
    ("vancouver", "+16045550123", "CA", "notice", "one"),
    ("quebec", "+14185550123", "CA", "notice", "one"),
    ("germany-mobile", "+4915123456789", "DE", "opt_in", "all"),
    ("germany-landline", "+493012345678", "DE", "opt_in", "all"),
    ("uk", "+442079460018", "GB", "notice", "all"),
    ("denmark", "+4532123456", "DK", "opt_in", "all"),
    ("france-eu-baseline", "+33123456789", "EU", "notice", "all"),
    ("australia-state-unknown", "+61298765432", "AU-NSW", "notice", "all"),
    ("india", "+919876543210", "IN", "opt_in", "all"),
    ("brazil", "+5511987654321", "BR", "notice", "all"),
    ("japan", "+81312345678", "JP", "notice", "all"),
    ("singapore", "+6561234567", "SG", "notice", "all"),
    ("switzerland-no-rule", "+41446681800", "unknown", "opt_in", "all"),
    ("toll-free-800", "+18005550199", "unknown", "opt_in", "all"),
    ("toll-free-888", "+18885550123", "unknown", "opt_in", "all"),
    ("toll-free-833", "+18335550123", "unknown", "opt_in", "all"),
    ("premium-900", "+19005550123", "unknown", "opt_in", "all"),
    ("withheld", None, "unknown", "opt_in", "all"),
    ("anonymous", "anonymous", "unknown", "opt_in", "all"),
    ("unparsable", "abc", "unknown", "opt_in", "all"),
    ("national-format", "(305) 555-0134", "US-FL", "opt_in", "all"),
]


@pytest.mark.parametrize(
    ("value", "key", "mode", "parties"),
    [case[1:] for case in NUMBER_RULES],
    ids=[case[0] for case in NUMBER_RULES],
)
def test_rule_for_number(
    rules: RuleSet, value: str | None, key: str, mode: str, parties: str
) -> None:
    rule = rules.rule_for(number(value))
    assert (rule.key, rule.mode.value, rule.parties.value) == (key, mode, parties)


@pytest.mark.parametrize(
    ("code", "key", "why"),
    [
        ("US-CA", "US-CA", "US-CA has its own rule"),
        ("US-TX", "US", "US-TX has no rule of its own; the US rule applies"),
        ("FR", "EU", "FR is in group EU"),
        ("FR-75", "EU", "FR-75 has no rule of its own; FR is in group EU"),
        ("DE", "DE", "DE has its own rule"),
        ("CH", "unknown", "no rule for CH: the unknown rule applies"),
        ("AU-VIC", "AU", "AU-VIC has no rule of its own; the AU rule applies"),
        ("AU-ACT", "AU-ACT", "AU-ACT has its own rule"),
        ("CA", "CA", "CA has its own rule"),
        ("unknown", "unknown", "place unknown: the unknown rule applies"),
    ],
)
def test_fallback_order(rules: RuleSet, code: str, key: str, why: str) -> None:
    found = rules.match(place(code))
    assert found.rule.key == key
    assert found.why == why


def test_us_party_without_a_state_gets_the_strictest_us_rule(rules: RuleSet) -> None:
    found = rules.match(place("US"))
    assert (found.rule.mode, found.rule.parties) == (Mode.OPT_IN, Parties.ALL)
    assert found.rule.key.startswith("US-")
    assert "US without a subdivision" in found.why


def test_mixed_interstate_new_york_caller_to_california_callee(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+12125550101")), ("callee", number("+14155550123"))],
        home=place("US-NY"),
    )
    assert (decision.mode, decision.parties) == (Mode.NOTICE, Parties.ALL)
    assert decision.all_parties
    by_role = {entry.role: entry for entry in decision.applied}
    assert by_role["callee"].rule.key == "US-CA"
    assert by_role["callee"].sets_parties
    assert not by_role["caller"].sets_parties
    assert by_role["caller"].rule.key == "US"


def test_california_caller_to_texas_callee_is_all_party(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+14155550123")), ("callee", number("+15125550199"))],
        home=place("US-TX"),
    )
    assert (decision.mode, decision.parties) == (Mode.NOTICE, Parties.ALL)
    assert [entry.rule.key for entry in decision.applied] == ["US-CA", "US", "US"]


def test_german_callee_makes_the_call_opt_in(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+12125550101")), ("callee", number("+493012345678"))],
        home=place("US-NY"),
    )
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    setters = [entry.role for entry in decision.applied if entry.sets_mode]
    assert setters == ["callee"]


def test_tenant_home_stricter_than_both_parties(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+12125550101")), ("callee", number("+15125550199"))],
        home=place("US-FL"),
    )
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    assert [entry.role for entry in decision.applied if entry.sets_mode] == ["home"]


def test_one_party_call_stays_one_party(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+12125550101")), ("callee", number("+15125550199"))],
        home=place("US-OR"),
    )
    assert (decision.mode, decision.parties) == (Mode.NOTICE, Parties.ONE)


def test_withheld_caller_makes_the_call_strictest(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("anonymous")), ("callee", number("+14165550123"))],
        home=place("CA-ON"),
    )
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    caller = decision.applied[0]
    assert caller.rule.key == "unknown"
    assert "withheld number ('anonymous')" in caller.explain()


def test_record_is_json_and_says_who_why_and_which_rule(rules: RuleSet) -> None:
    decision = rules.strictest(
        [("caller", number("+12125550101")), ("callee", number("+493012345678"))],
        home=place("US-NY"),
    )
    record = json.loads(json.dumps(decision.record()))
    assert [entry["role"] for entry in record] == ["caller", "callee", "home"]
    callee = record[1]
    assert callee["jurisdiction"] == "DE"
    assert callee["place"] == "country code +49"
    assert callee["rule"] == "DE"
    assert callee["mode"] == "opt_in"
    assert callee["source"].startswith("StGB")
    assert callee["sets_mode"] is True
    assert record[0]["why"] == "US-NY has no rule of its own; the US rule applies"
    assert len(decision.explanation()) == 3


# -- behaviour with tenant-written rules ---------------------------------------

UNKNOWN_RULE = """\
[rules.unknown]
mode = "opt_in"
parties = "all"
confidence = "U"
source = "policy"
"""


def test_none_is_strictest_and_wins_over_opt_in() -> None:
    custom = parse_rules(
        UNKNOWN_RULE
        + """
[rules.DE]
mode = "none"
parties = "one"
confidence = "S"
source = "tenant: never capture German calls"
"""
    )
    decision = custom.strictest(
        [("caller", number("anonymous")), ("callee", number("+493012345678"))],
        home=place("DE"),
    )
    assert decision.mode is Mode.NONE
    assert decision.parties is Parties.ALL


def test_mode_order() -> None:
    ranked = sorted(Mode, key=lambda mode: mode.strictness)
    assert ranked == [Mode.NOTICE, Mode.OPT_OUT, Mode.OPT_IN, Mode.NONE]


def test_country_only_party_combines_maxima_when_no_rule_dominates() -> None:
    custom = parse_rules(
        UNKNOWN_RULE
        + """
[rules.AU]
mode = "notice"
parties = "one"
confidence = "S"
source = "federal"

[rules.AU-VIC]
mode = "opt_out"
parties = "one"
confidence = "U"
source = "VIC source"

[rules.AU-NSW]
mode = "notice"
parties = "all"
confidence = "2"
source = "NSW source"
"""
    )
    rule = custom.rule_for(number("+61298765432"))
    assert (rule.key, rule.mode, rule.parties) == ("AU-*", Mode.OPT_OUT, Parties.ALL)
    assert rule.confidence is Confidence.UNSETTLED
    assert "VIC source" in rule.source and "NSW source" in rule.source
    assert custom.rule_for(place("AU-QLD")).key == "AU"


def test_group_of_subdivisions() -> None:
    custom = parse_rules(
        UNKNOWN_RULE
        + """
[groups]
ALL_PARTY = ["US-CA", "US-FL"]

[rules.ALL_PARTY]
mode = "opt_out"
parties = "all"
confidence = "2"
source = "tenant"

[rules.US]
mode = "notice"
parties = "one"
confidence = "S"
source = "federal"
"""
    )
    found = custom.match(number("+13055550134"))
    assert (found.rule.key, found.why) == ("ALL_PARTY", "US-FL is in group ALL_PARTY")
    assert custom.rule_for(number("+12125550101")).key == "US"
    assert custom.rule_for(place("US")).key == "ALL_PARTY"


def test_rule_set_needs_an_unknown_rule() -> None:
    rule = Rule("US", "", Mode.NOTICE, Parties.ONE, "federal", Confidence.CONFIRMED)
    with pytest.raises(ValueError, match="'unknown' rule"):
        RuleSet({"US": rule})
