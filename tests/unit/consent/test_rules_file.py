"""The rules file: the shipped defaults, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.consent.rule import Confidence, Mode, Parties
from gateway.consent.rules import DEFAULT_RULES_PATH, load_rules, parse_rules

US_ALL_PARTY = {"CA", "CT", "DE", "FL", "IL", "MD", "MA", "MI", "MT", "NV", "NH", "PA", "WA"}
EU_MEMBERS = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
}  # fmt: skip


# -- the shipped defaults --------------------------------------------------------


def test_default_file_starts_by_saying_it_is_not_legal_advice() -> None:
    first = DEFAULT_RULES_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert "not legal advice" in first.lower()
    assert "not legal advice" in load_rules().disclaimer.lower()


def test_every_default_rule_names_its_source_and_none_is_never_capture() -> None:
    rules = load_rules().rules
    assert len(rules) > 25
    for rule in rules.values():
        assert rule.source.strip(), rule.key
        assert rule.mode is not Mode.NONE, rule.key


def test_default_us_all_party_states_are_the_reference_thirteen() -> None:
    rules = load_rules().rules
    all_party = {
        key.removeprefix("US-")
        for key, rule in rules.items()
        if key.startswith("US-") and rule.parties is Parties.ALL
    }
    assert all_party == US_ALL_PARTY
    assert rules["US"].parties is Parties.ONE


def test_unsettled_default_rules_take_the_stricter_reading() -> None:
    rules = load_rules().rules.values()
    unsettled = [rule for rule in rules if rule.confidence is Confidence.UNSETTLED]
    assert {"US-DE", "US-MD", "US-MI"} <= {rule.key for rule in unsettled}
    for rule in unsettled:
        assert (rule.mode, rule.parties) == (Mode.OPT_IN, Parties.ALL), rule.key


def test_default_unknown_rule_is_the_strictest() -> None:
    rules = load_rules()
    assert (rules.unknown.mode, rules.unknown.parties) == (Mode.OPT_IN, Parties.ALL)
    assert all(rules.unknown.at_least_as_strict_as(rule) for rule in rules.rules.values())


def test_default_eu_group_is_the_member_states() -> None:
    assert set(load_rules().groups["EU"]) == EU_MEMBERS


# -- errors with lines -------------------------------------------------------------

UNKNOWN = """\
[rules.unknown]
mode = "opt_in"
parties = "all"
confidence = "U"
source = "policy"
"""


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml")
    return caught.value


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def rule(key: str, body: str = "") -> str:
    base = {
        "mode": '"notice"',
        "parties": '"one"',
        "confidence": '"S"',
        "source": '"a statute"',
    }
    lines = [f"[rules.{key}]"]
    overridden = {line.split("=")[0].strip() for line in body.splitlines() if "=" in line}
    lines += [f"{name} = {value}" for name, value in base.items() if name not in overridden]
    lines += body.splitlines()
    return "\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "fragment", "reason"),
    [
        (
            UNKNOWN + rule("US-CA", 'mode = "sometimes"'),
            'mode = "sometimes"',
            "rules.US-CA.mode must be one of notice, opt_out, opt_in, none, not 'sometimes'",
        ),
        (
            UNKNOWN + rule("US-CA", 'parties = "both"'),
            'parties = "both"',
            "rules.US-CA.parties must be one of one, all",
        ),
        (
            UNKNOWN + rule("US-CA", 'confidence = "high"'),
            'confidence = "high"',
            "rules.US-CA.confidence must be one of S, 2, U",
        ),
        (
            UNKNOWN + rule("US-CA", 'sorce = "x"'),
            'sorce = "x"',
            "unknown key 'rules.US-CA.sorce' (did you mean 'source'?)",
        ),
        (
            UNKNOWN + rule("US-CA", 'source = "  "'),
            'source = "  "',
            "rules.US-CA.source must name where the rule comes from",
        ),
        (
            UNKNOWN + rule("US-CA", "notes = 3"),
            "notes = 3",
            "rules.US-CA.notes must be a string, not 3",
        ),
        (
            UNKNOWN + '\n[rules.DE]\nmode = "opt_in"\nparties = "all"\nconfidence = "S"\n',
            "[rules.DE]",
            "missing required key 'rules.DE.source'",
        ),
        (
            UNKNOWN + rule("UK"),
            "[rules.UK]",
            "the United Kingdom is GB",
        ),
        (
            UNKNOWN + rule("US-ZZ"),
            "[rules.US-ZZ]",
            "'ZZ' is not a subdivision of US",
        ),
        (
            UNKNOWN + rule("Germany"),
            "[rules.Germany]",
            "rules.Germany: not a group, 'unknown' or a place code",
        ),
        (
            rule("DE"),
            "[rules.DE]",
            "missing [rules.unknown]",
        ),
        (
            UNKNOWN.replace('mode = "opt_in"', 'mode = "notice"') + rule("DE", 'mode = "opt_in"'),
            "[rules.unknown]",
            "rules.unknown (notice, all) must be at least as strict as every other rule; "
            "rules.DE is opt_in, one",
        ),
        (
            UNKNOWN + '\n[groups]\nEU = [\n  "FR",\n  "XX",\n]\n' + rule("EU"),
            '"XX"',
            "groups.EU[1]: 'XX' is not a country code",
        ),
        (
            UNKNOWN + '\n[groups]\nA = ["FR"]\nB = ["DE", "FR"]\n' + rule("A") + rule("B"),
            'B = ["DE", "FR"]',
            "groups.B: FR is already in group A",
        ),
        (
            UNKNOWN + '\n[groups]\nEU = ["FR"]\n',
            'EU = ["FR"]',
            "group EU has no rule: add [rules.EU]",
        ),
        (
            UNKNOWN + '\n[groups]\nDE = ["FR"]\n' + rule("DE"),
            'DE = ["FR"]',
            "group name 'DE' is a country code",
        ),
        (
            UNKNOWN + "\n[groups]\nEU = []\n" + rule("EU"),
            "EU = []",
            "groups.EU must be a non-empty array",
        ),
        (
            'disclaimr = "x"\n' + UNKNOWN,
            "disclaimr",
            "unknown key 'disclaimr' (did you mean 'disclaimer'?)",
        ),
        (
            UNKNOWN + "\n[rules.DE\nmode = 1\n",
            "[rules.DE",
            "TOML syntax error",
        ),
    ],
    ids=[
        "bad-mode",
        "bad-parties",
        "bad-confidence",
        "typo-key",
        "empty-source",
        "notes-not-string",
        "missing-source",
        "uk-not-gb",
        "unknown-subdivision",
        "not-a-code",
        "no-unknown-rule",
        "unknown-not-strictest",
        "bad-group-member",
        "member-in-two-groups",
        "group-without-rule",
        "group-named-like-country",
        "empty-group",
        "top-level-typo",
        "toml-syntax",
    ],
)
def test_errors_name_the_line(text: str, fragment: str, reason: str) -> None:
    error = error_of(text)
    assert error.path == "rules.toml"
    assert error.line == line_of(text, fragment)
    assert reason in error.reason
    assert str(error).startswith(f"rules.toml:{error.line}: ")


def test_all_problems_are_reported_in_line_order() -> None:
    text = UNKNOWN + rule("US-CA", 'mode = "never"') + rule("DE", 'parties = "some"')
    error = error_of(text)
    problems = error.all()
    assert [problem.line for problem in problems] == [
        line_of(text, 'mode = "never"'),
        line_of(text, 'parties = "some"'),
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_rules(tmp_path / "absent.toml")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(UNKNOWN.encode() + b'\nnotes = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert caught.value.line == UNKNOWN.count("\n") + 2
    assert caught.value.reason == "the file is not UTF-8 text"


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tenant.toml"
    path.write_text('disclaimer = "mine"\n' + UNKNOWN + rule("US-CA", 'name = "Cal"'), "utf-8")
    loaded = load_rules(path)
    assert loaded.path == str(path)
    assert loaded.disclaimer == "mine"
    assert loaded.rules["US-CA"].name == "Cal"
    assert loaded.rules["US-CA"].mode is Mode.NOTICE
