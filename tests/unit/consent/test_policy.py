"""A tenant's consent policy: overrides, the floor, languages, notices and its version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import SHIPPED_NOTICES_DIR, Settings, TenantSettings, load_settings
from gateway.consent.jurisdiction import Jurisdiction, parse_asserted
from gateway.consent.policy import (
    TENANT_ROLE,
    TENANT_SOURCE,
    ConsentPolicy,
    NoticeTiming,
    OnTimeout,
    OverrideError,
    build_policies,
    build_policy,
    tenant_rules,
)
from gateway.consent.rule import Mode, Parties
from gateway.consent.rules import DEFAULT_RULES_PATH, load_rules

TENANT = """\
[[tenants]]
name = "acme"
default_region = "{region}"
pbx = {{ host = "127.0.0.2" }}
trunk = {{ host = "127.0.0.3" }}
"""

RULES = """\
[groups]
EU = ["FR", "DE", "AT", "IT"]

[rules.unknown]
mode = "opt_in"
parties = "all"
confidence = "U"
source = "strictest"

[rules.US]
mode = "notice"
parties = "one"
confidence = "S"
source = "18 U.S.C. 2511(2)(d)"

[rules.US-CA]
mode = "notice"
parties = "all"
confidence = "S"
source = "Cal. Penal Code 632"

[rules.EU]
mode = "notice"
parties = "all"
confidence = "S"
source = "GDPR"

[rules.DE]
mode = "opt_in"
parties = "all"
confidence = "2"
source = "StGB 201"
"""

KINDS = ("notice", "opt_out", "opt_in")


def place(code: str) -> Jurisdiction:
    found = parse_asserted(code, source="test")
    assert found is not None
    return found


def write_notices(directory: Path, language: str) -> str:
    """Notice files for ``language`` under ``directory`` and the TOML table naming them."""
    lines = [f"[tenants.consent.notices.{language}]"]
    for kind in KINDS:
        path = directory / language / f"{kind}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + kind.encode())
        lines.append(f'{kind} = "{language}/{kind}.wav"')
    return "\n".join(lines) + "\n"


def load(
    directory: Path,
    consent: str = "",
    *,
    rules: str | None = RULES,
    region: str = "US",
    extra: str = "",
) -> Settings:
    """Settings with one tenant whose [tenants.consent] holds ``consent``."""
    directory.mkdir(parents=True, exist_ok=True)
    top = ""
    if rules is not None:
        (directory / "rules.toml").write_text(rules)
        top = '[consent]\nrules_file = "rules.toml"\n\n'
    text = top + TENANT.format(region=region) + "\n[tenants.consent]\n" + consent + extra
    path = directory / "gateway.toml"
    path.write_text(text)
    return load_settings(path, env={})


def policy_of(directory: Path, consent: str = "", **kwargs: str | None) -> ConsentPolicy:
    return build_policies(load(directory, consent, **kwargs))["acme"]  # type: ignore[arg-type]


# -- defaults --------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rules=None)
    assert policy.tenant == "acme"
    assert policy.rules_path == DEFAULT_RULES_PATH
    assert (policy.home.code, policy.home.known) == ("US", True)
    assert policy.home.reason == "tenant home, from default_region"
    assert policy.notice_timing is NoticeTiming.ANSWER and policy.notice_timing == "answer"
    assert policy.on_timeout is OnTimeout.CONTINUE
    assert policy.consent_timeout_s == 15.0
    assert (policy.minimum_mode, policy.minimum_parties) == (Mode.NOTICE, Parties.ONE)
    assert dataclasses.astuple(policy.digits) == ("1", "9", "7", "*", "#")
    assert dataclasses.astuple(policy.beep) == (0.0, 1400.0, 200)
    assert not policy.beep.enabled
    assert policy.default_language == "en"
    assert dict(policy.languages) == {}
    assert list(policy.notices) == ["en"]
    assert policy.notice_paths() == tuple(SHIPPED_NOTICES_DIR / "en" / f"{k}.wav" for k in KINDS)
    assert policy.overrides == ()
    assert policy.version.startswith("p-") and len(policy.version) == 18
    int(policy.version[2:], 16)


def test_settings_are_carried_over(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        'home = "US-NY"\nnotice_timing = "early"\nconsent_timeout_s = 7.5\n'
        'on_timeout = "hangup"\nminimum_mode = "opt_out"\nminimum_parties = "all"\n'
        '[tenants.consent.digits]\nconsent = "5"\ndecline = "#"\nresume = "9"\n'
        "[tenants.consent.beep]\ninterval_s = 15\nfrequency_hz = 1260\nduration_ms = 150\n",
    )
    assert (policy.home.code, policy.home.reason) == ("US-NY", "tenant home, from consent.home")
    assert policy.notice_timing is NoticeTiming.EARLY
    assert policy.on_timeout is OnTimeout.HANGUP
    assert policy.consent_timeout_s == 7.5
    assert (policy.minimum_mode, policy.minimum_parties) == (Mode.OPT_OUT, Parties.ALL)
    assert dataclasses.astuple(policy.digits) == ("5", "#", "7", "*", "9")
    assert dataclasses.astuple(policy.beep) == (15.0, 1260.0, 150) and policy.beep.enabled


def test_policy_is_immutable(tmp_path: Path) -> None:
    policy = policy_of(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.version = "p-0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.languages["FR"] = "fr"  # type: ignore[index]


def test_build_policies_has_one_per_tenant(tmp_path: Path) -> None:
    second = (
        '\n[[tenants]]\nname = "globex"\ndefault_region = "DE"\nnumber_prefixes = ["+49"]\n'
        'pbx = { host = "10.0.0.2" }\ntrunk = { host = "10.0.0.3" }\n'
    )
    settings = load(tmp_path, 'home = "US-NY"\n', extra=second)
    policies = build_policies(settings)
    assert sorted(policies) == ["acme", "globex"]
    assert policies["globex"].home.code == "DE"
    assert policies["acme"].version != policies["globex"].version
    assert build_policies(Settings()) == {}


# -- decide: the rules, the overrides, the floor ------------------------------------------


def test_decide_without_overrides_is_the_rule_sets_strictest(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "US-NY"\n')
    shared = load_rules(tmp_path / "rules.toml")
    for caller, callee in [("US-NY", "US-TX"), ("US-CA", "US-NY"), ("FR", "US-NY"), ("DE", "US")]:
        decision = policy.decide(place(caller), place(callee))
        expected = shared.strictest(
            [("caller", place(caller)), ("callee", place(callee))], policy.home
        )
        assert (decision.mode, decision.parties) == (expected.mode, expected.parties)
        assert [a.role for a in decision.applied] == ["caller", "callee", "home"]
    one_party = policy.decide(place("US-NY"), place("US-TX"))
    assert (one_party.mode, one_party.parties) == (Mode.NOTICE, Parties.ONE)
    unknown = policy.decide(Jurisdiction.unknown("withheld"), place("US-NY"))
    assert (unknown.mode, unknown.parties) == (Mode.OPT_IN, Parties.ALL)


def test_a_pair_of_places_is_decided_once_and_the_same_way(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "US-NY"\nminimum_mode = "opt_out"\n')
    pairs = [("US-NY", "US-TX"), ("FR", "US-NY"), ("US-NY", "FR"), ("DE", "US")]
    first = [policy.decide(place(a), place(b)) for a, b in pairs]
    again = [policy.decide(place(a), place(b)) for a, b in pairs]
    assert all(x is y for x, y in zip(first, again, strict=True))  # remembered
    fresh = dataclasses.replace(policy)  # a new policy object remembers nothing yet
    assert [fresh.decide(place(a), place(b)) for a, b in pairs] == first
    assert first[1] != first[2]  # caller and callee are not interchangeable in the record


def test_home_takes_part_in_the_decision(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "DE"\n')
    decision = policy.decide(place("US-NY"), place("US-TX"))
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    home = decision.applied[-1]
    assert (home.role, home.rule.key, home.sets_mode) == ("home", "DE", True)


def test_override_replaces_a_row_for_this_tenant_only(tmp_path: Path) -> None:
    settings = load(
        tmp_path, 'home = "US-NY"\n[tenants.consent.overrides]\nUS-CA = { mode = "opt_in" }\n'
    )
    policy = build_policies(settings)["acme"]
    decision = policy.decide(place("US-CA"), place("US-NY"))
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    caller = decision.applied[0]
    assert caller.rule.source == TENANT_SOURCE
    assert caller.rule.notes.startswith("replaces US-CA: notice, all parties [S]")
    assert caller.record()["source"] == "tenant policy"
    assert [rule.key for rule in policy.overrides] == ["US-CA"]
    shared = settings.consent_rules().rules
    assert shared.rules["US-CA"].mode is Mode.NOTICE
    assert policy.rules is not shared


def test_override_of_a_group_reaches_its_members(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        'home = "US-NY"\n[tenants.consent.overrides]\nEU = { mode = "opt_out" }\n',
    )
    decision = policy.decide(place("FR"), place("US-NY"))
    assert (decision.mode, decision.parties) == (Mode.OPT_OUT, Parties.ALL)
    assert decision.applied[0].rule.key == "EU"
    germany = policy.decide(place("DE"), place("US-NY"))
    assert germany.mode is Mode.OPT_IN  # DE's own row still applies


def test_partial_override_keeps_the_rest_of_the_inherited_rule(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        'home = "US-NY"\n[tenants.consent.overrides]\n'
        'FR = { mode = "opt_out" }\nUS-TX = { parties = "all" }\n',
    )
    france = policy.rules.rule_for(place("FR"))
    assert (france.key, france.mode, france.parties) == ("FR", Mode.OPT_OUT, Parties.ALL)
    texas = policy.rules.rule_for(place("US-TX"))
    assert (texas.key, texas.mode, texas.parties) == ("US-TX", Mode.NOTICE, Parties.ALL)
    italy = policy.rules.rule_for(place("IT"))
    assert (italy.key, italy.mode) == ("EU", Mode.NOTICE)


def test_override_none_never_captures(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path, 'home = "US-NY"\n[tenants.consent.overrides]\nUS-CA = { mode = "none" }\n'
    )
    assert policy.decide(place("US-NY"), place("US-CA")).mode is Mode.NONE


def test_tenant_rules_rejects_what_cannot_apply(tmp_path: Path) -> None:
    from gateway.config import RuleOverride

    rules = load_rules(DEFAULT_RULES_PATH)
    with pytest.raises(OverrideError) as caught:
        tenant_rules(rules, {"XX": RuleOverride(mode="opt_in")})
    assert caught.value.key == "XX"
    with pytest.raises(OverrideError) as caught:
        tenant_rules(rules, {"unknown": RuleOverride(parties="one")})
    assert caught.value.key == "unknown"
    assert "must stay at least as strict" in str(caught.value)
    before = dict(rules.rules)
    changed = tenant_rules(rules, {"GB": RuleOverride(mode="opt_in")})
    assert changed.rules["GB"].mode is Mode.OPT_IN
    assert rules.rules == before


def test_floor_raises_the_mode_and_says_why(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "US-NY"\nminimum_mode = "opt_out"\n')
    decision = policy.decide(place("US-NY"), place("US-TX"))
    assert (decision.mode, decision.parties) == (Mode.OPT_OUT, Parties.ONE)
    *parties, tenant = decision.applied
    assert [entry.role for entry in parties] == ["caller", "callee", "home"]
    assert not any(entry.sets_mode for entry in parties)
    assert all(entry.sets_parties for entry in parties)
    assert tenant.role == TENANT_ROLE
    assert (tenant.sets_mode, tenant.sets_parties) == (True, True)
    assert tenant.jurisdiction == policy.home
    record = tenant.record()
    assert (record["role"], record["mode"], record["source"]) == (
        "tenant",
        "opt_out",
        TENANT_SOURCE,
    )
    assert "minimum_mode opt_out" in tenant.why and "(notice, one party)" in tenant.why


def test_floor_raises_the_parties_alone(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "US-NY"\nminimum_parties = "all"\n')
    decision = policy.decide(place("US-NY"), place("US-TX"))
    assert (decision.mode, decision.parties) == (Mode.NOTICE, Parties.ALL)
    tenant = decision.applied[-1]
    assert tenant.role == TENANT_ROLE
    assert (tenant.sets_mode, tenant.sets_parties) == (True, True)
    assert not any(entry.sets_parties for entry in decision.applied[:-1])
    assert "minimum_parties all" in tenant.why and "minimum_mode" not in tenant.why


def test_floor_that_does_not_raise_adds_nothing(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'home = "US-NY"\nminimum_mode = "opt_out"\n')
    decision = policy.decide(place("DE"), place("US-NY"))
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    assert TENANT_ROLE not in [entry.role for entry in decision.applied]
    plain = policy_of(tmp_path / "plain", 'home = "US-NY"\n')
    assert plain.decide(place("DE"), place("US-NY")) == decision


def test_floor_mixed_with_a_stricter_mode(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        'home = "US-NY"\nminimum_parties = "all"\n[tenants.consent.overrides]\n'
        'US-TX = { mode = "opt_in", parties = "one" }\n',
    )
    decision = policy.decide(place("US-TX"), place("US-NY"))
    assert (decision.mode, decision.parties) == (Mode.OPT_IN, Parties.ALL)
    caller, callee, home, tenant = decision.applied
    assert (caller.sets_mode, caller.sets_parties) == (True, False)
    assert (callee.sets_mode, callee.sets_parties) == (False, False)
    assert (home.sets_mode, home.sets_parties) == (False, False)
    assert (tenant.sets_mode, tenant.sets_parties) == (False, True)


def test_floor_none_never_captures(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, 'minimum_mode = "none"\n')
    assert policy.decide(place("US-NY"), place("US-TX")).mode is Mode.NONE


# -- version -------------------------------------------------------------------------------


def test_version_is_stable_for_the_same_policy(tmp_path: Path) -> None:
    consent = 'home = "US-NY"\n[tenants.consent.overrides]\nUS-CA = { mode = "opt_in" }\n'
    first = policy_of(tmp_path / "a", consent).version
    assert policy_of(tmp_path / "b", consent).version == first
    spelled_out = (
        '# the same, with defaults written out\nnotice_timing = "answer"\n'
        "consent_timeout_s = 15\n" + consent + 'EU = { mode = "notice", parties = "all" }\n'
    )
    assert policy_of(tmp_path / "c", spelled_out).version != first  # EU override is new
    defaults = '# comment\nnotice_timing = "answer"\nconsent_timeout_s = 15.0\n' + consent
    assert policy_of(tmp_path / "d", defaults).version == first


def test_version_does_not_depend_on_key_order(tmp_path: Path) -> None:
    one = policy_of(
        tmp_path / "a",
        '[tenants.consent.overrides]\nUS-CA = { mode = "opt_in" }\nFR = { parties = "one" }\n',
    )
    two = policy_of(
        tmp_path / "b",
        '[tenants.consent.overrides]\nFR = { parties = "one" }\nUS-CA = { mode = "opt_in" }\n',
    )
    assert one.version == two.version


@pytest.mark.parametrize(
    "change",
    [
        'notice_timing = "early"\n',
        "consent_timeout_s = 16\n",
        'on_timeout = "hangup"\n',
        'minimum_mode = "opt_out"\n',
        'minimum_parties = "all"\n',
        'home = "US-CA"\n',
        '[tenants.consent.overrides]\nUS-TX = { mode = "opt_out" }\n',
        '[tenants.consent.digits]\nconsent = "2"\n',
        '[tenants.consent.languages]\nFR = "de"\n',
        "[tenants.consent.beep]\ninterval_s = 15\n",
        '[tenants.consent.notices.en]\nnotice = "en/notice.wav"\n',
    ],
)
def test_version_changes_with_any_setting(tmp_path: Path, change: str) -> None:
    base = policy_of(tmp_path / "base", 'home = "US-NY"\n').version
    consent = change if change.startswith("home") else 'home = "US-NY"\n' + change
    if "notices.en" in change:
        write_notices(tmp_path / "changed", "en")
    assert policy_of(tmp_path / "changed", consent).version != base


def test_version_follows_the_default_home(tmp_path: Path) -> None:
    us = policy_of(tmp_path / "us", region="US").version
    de = policy_of(tmp_path / "de", region="DE").version
    assert us != de
    assert policy_of(tmp_path / "explicit", 'home = "DE"\n', region="DE").version != us


def test_version_changes_with_the_rules_file(tmp_path: Path) -> None:
    base = policy_of(tmp_path / "a").version
    assert policy_of(tmp_path / "b").version == base
    assert policy_of(tmp_path / "c", rules=RULES + "# a comment\n").version != base
    changed = RULES.replace('source = "GDPR"', 'source = "GDPR art. 6"')
    assert policy_of(tmp_path / "d", rules=changed).version != base


# -- languages and notices ------------------------------------------------------------------


def test_language_for_subdivision_then_country_then_group(tmp_path: Path) -> None:
    consent = (
        'home = "US-NY"\n[tenants.consent.languages]\n'
        'CA = "en"\nCA-QC = "fr"\nEU = "de"\nFR = "fr"\nUS-PR = "es"\n'
        + write_notices(tmp_path, "fr")
        + write_notices(tmp_path, "es")
    )
    policy = policy_of(tmp_path, consent)
    assert policy.language_for(place("CA-QC")) == "fr"
    assert policy.language_for(place("CA-ON")) == "en"
    assert policy.language_for(place("CA")) == "en"
    assert policy.language_for(place("FR")) == "fr"
    assert policy.language_for(place("AT")) == "de"
    assert policy.language_for(place("DE")) == "de"
    assert policy.language_for(place("US-PR")) == "es"
    assert policy.language_for(place("US-NY")) == "en"
    assert policy.language_for(place("JP")) == "en"
    assert policy.language_for(Jurisdiction.unknown("withheld")) == "en"
    assert sorted(policy.notices) == ["de", "en", "es", "fr"]


def test_default_language_is_the_fallback(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path, 'default_language = "de"\n[tenants.consent.languages]\nGB = "en"\n'
    )
    assert policy.language_for(place("JP")) == "de"
    assert policy.language_for(place("GB")) == "en"
    assert policy.language_for(Jurisdiction.unknown("withheld")) == "de"


def test_notice_path_by_mode(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[tenants.consent.languages]\nDE = "de"\n')
    for mode, kind in [(Mode.NOTICE, "notice"), (Mode.OPT_OUT, "opt_out"), (Mode.OPT_IN, "opt_in")]:
        assert policy.notice_path("de", mode) == SHIPPED_NOTICES_DIR / "de" / f"{kind}.wav"
        assert policy.notice_path("en", mode) == SHIPPED_NOTICES_DIR / "en" / f"{kind}.wav"
    with pytest.raises(ValueError, match="plays no notice"):
        policy.notice_path("en", Mode.NONE)
    with pytest.raises(KeyError, match="fr"):
        policy.notice_path("fr", Mode.NOTICE)
    assert len(policy.notice_paths()) == 6 == len(set(policy.notice_paths()))


def test_notice_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    consent = 'default_language = "fr"\n' + write_notices(etc, "fr")
    settings = load(etc, consent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    policy = build_policies(settings)["acme"]
    assert policy.notice_path("fr", Mode.OPT_OUT) == etc / "fr" / "opt_out.wav"
    assert policy.notice_path("fr", Mode.OPT_OUT).read_bytes() == b"RIFFopt_out"
    assert policy.notice_paths() == tuple(etc / "fr" / f"{kind}.wav" for kind in KINDS)


def test_missing_notice_file_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    consent = 'default_language = "fr"\n' + write_notices(tmp_path, "fr")
    (tmp_path / "fr" / "opt_in.wav").unlink()
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, consent)
    text = (tmp_path / "gateway.toml").read_text()
    expected_line = text.splitlines().index('opt_in = "fr/opt_in.wav"') + 1
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "gateway.toml"), expected_line)
    assert "no such file" in caught.value.reason


def test_build_policy_from_settings_made_in_code() -> None:
    from gateway.config import PeerSettings, RuleOverride, TenantConsentSettings

    tenant = TenantSettings(
        name="acme",
        pbx=PeerSettings(host="127.0.0.2"),
        trunk=PeerSettings(host="127.0.0.3"),
        default_region="GB",
        consent=TenantConsentSettings(overrides={"GB": RuleOverride(mode="opt_out")}),
    )
    policy = build_policy(tenant, Settings(tenants=[tenant]).consent_rules())
    assert policy.home.code == "GB"
    decision = policy.decide(place("GB"), place("GB"))
    assert (decision.mode, decision.parties) == (Mode.OPT_OUT, Parties.ALL)
