"""A tenant's recording-consent policy: the object the call path asks for a call's rule.

Built once at start-up from the tenant's ``[tenants.consent]`` settings and
the consent rules file (:mod:`gateway.consent.rules`):

- ``rules`` is the file's rule set with the tenant's ``overrides`` in place
  of the rows they name (source ``"tenant policy"``); the shared rule set is
  left as it is;
- :meth:`ConsentPolicy.decide` gives a call's rule: the strictest of the
  caller's, the callee's and the tenant home's rules (the reference's
  "Resolving several jurisdictions"), then raised to the tenant's floor
  (``minimum_mode``, ``minimum_parties``), with an entry of role
  ``"tenant"`` in the explanation when the floor is what raised it;
- :meth:`ConsentPolicy.language_for` and :meth:`ConsentPolicy.notice_path`
  pick the recording a party hears;
- ``digits`` are the DTMF keys (RFC 4733 section 3.2 events) that consent,
  decline, withdraw, pause and resume; ``beep`` the optional tone repeated
  while the call is captured (47 C.F.R. 64.501, Conn. Gen. Stat. 52-570d:
  "an automatic tone repeated at regular intervals");
- ``version`` names the policy in each call record: ``p-`` and the first 16
  hex digits of SHA-256 over the tenant's consent settings (canonical JSON,
  defaults included, with the home resolved) and the rules file's bytes, so
  a change of either gives a new version and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from gateway.config import (
    RuleOverride,
    RulesFile,
    Settings,
    TenantConsentSettings,
    TenantSettings,
    check_place_key,
)
from gateway.consent.jurisdiction import Jurisdiction, parse_asserted
from gateway.consent.rule import Confidence, Mode, Parties, Rule
from gateway.consent.rules import AppliedRule, Decision, RuleSet
from gateway.consent.rules_file import UNKNOWN_KEY

__all__ = [
    "TENANT_ROLE",
    "TENANT_SOURCE",
    "BeepTone",
    "ConsentDigits",
    "ConsentPolicy",
    "NoticeSet",
    "NoticeTiming",
    "OnTimeout",
    "OverrideError",
    "build_policies",
    "build_policy",
    "policy_version",
    "tenant_rules",
]

TENANT_ROLE = "tenant"
"""The role of the explanation entry the tenant's floor adds to a decision."""

TENANT_SOURCE = "tenant policy"
"""The ``source`` of every rule a tenant's settings make."""


class NoticeTiming(StrEnum):
    """When the notice plays.

    ``early``: to the caller as early media (a 183 Session Progress with SDP,
    RFC 3960 section 3) before the callee rings; ``answer``: after the
    answer, to each party that must be told.
    """

    ANSWER = "answer"
    EARLY = "early"


class OnTimeout(StrEnum):
    """What an opt-in call does when no consent digit comes in time."""

    CONTINUE = "continue"
    HANGUP = "hangup"


@dataclass(frozen=True, slots=True)
class ConsentDigits:
    """The DTMF key for each purpose (one of 0-9, ``*``, ``#``, A-D; all distinct)."""

    consent: str
    decline: str
    withdraw: str
    pause: str
    resume: str


@dataclass(frozen=True, slots=True)
class BeepTone:
    """A tone of ``frequency_hz`` for ``duration_ms`` every ``interval_s`` (0: none)."""

    interval_s: float
    frequency_hz: float
    duration_ms: int

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0


@dataclass(frozen=True, slots=True)
class NoticeSet:
    """One language's recordings, as absolute paths."""

    notice: Path
    opt_out: Path
    opt_in: Path

    def for_mode(self, mode: Mode) -> Path:
        """The recording a mode announces; ``none`` announces nothing (ValueError)."""
        if mode is Mode.NOTICE:
            return self.notice
        if mode is Mode.OPT_OUT:
            return self.opt_out
        if mode is Mode.OPT_IN:
            return self.opt_in
        raise ValueError("mode none captures nothing and plays no notice")

    def paths(self) -> tuple[Path, ...]:
        return (self.notice, self.opt_out, self.opt_in)


class OverrideError(ValueError):
    """A tenant override that cannot apply; ``key`` is the override's key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


def _base_rule(rules: RuleSet, key: str) -> Rule:
    """The rule ``key`` has before the tenant's override: its own row, else what it inherits."""
    if key in rules.rules:
        return rules.rules[key]
    try:
        check_place_key(key, rules.groups)
    except ValueError as error:
        raise OverrideError(
            key,
            f"{error} (expected a place code, a group of the rules file or 'unknown')",
        ) from None
    place = parse_asserted(key, source="settings")
    assert place is not None  # check_place_key accepted it
    return rules.match(place).rule


def tenant_rules(rules: RuleSet, overrides: Mapping[str, RuleOverride]) -> RuleSet:
    """A new rule set: ``rules`` with each override in place of its key's rule.

    An override gives ``mode``, ``parties`` or both; what it leaves out comes
    from the rule the key had. The ``unknown`` rule must stay at least as
    strict as every rule that captures (the reference: an unknown place
    counts as strictest); :class:`OverrideError` names the override that
    breaks it, or any key that is not a place, group or ``unknown``.
    """
    replaced = dict(rules.rules)
    for key, override in overrides.items():
        base = _base_rule(rules, key)
        mode = Mode(override.mode) if override.mode is not None else base.mode
        parties = Parties(override.parties) if override.parties is not None else base.parties
        replaced[key] = Rule(
            key=key,
            name=base.name if base.key == key else "",
            mode=mode,
            parties=parties,
            source=TENANT_SOURCE,
            confidence=Confidence.CONFIRMED,
            notes=f"replaces {base.summary()}",
        )
    _check_unknown_strictest(replaced, overrides)
    return RuleSet(replaced, rules.groups, disclaimer=rules.disclaimer, path=rules.path)


def _check_unknown_strictest(rules: Mapping[str, Rule], overrides: Mapping[str, object]) -> None:
    unknown = rules[UNKNOWN_KEY]
    for rule in rules.values():
        if rule is unknown or rule.mode is Mode.NONE or unknown.at_least_as_strict_as(rule):
            continue
        blamed = UNKNOWN_KEY if UNKNOWN_KEY in overrides else rule.key
        raise OverrideError(
            blamed,
            f"the unknown rule ({unknown.mode.value}, {unknown.parties.value}) must "
            f"stay at least as strict as every rule that captures; {rule.key} is "
            f"{rule.mode.value}, {rule.parties.value} (a party whose place is unknown counts "
            "as strictest)",
        )


def policy_version(consent: TenantConsentSettings, home: str, rules_data: bytes) -> str:
    """``p-`` and 16 hex digits of SHA-256 over the settings' canonical JSON and the rules."""
    settings = {"consent": consent.model_dump(mode="json"), "home": home}
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256()
    digest.update(canonical.encode("ascii"))
    digest.update(b"\n")  # canonical JSON holds no raw newline: the two parts cannot run together
    digest.update(rules_data)
    return "p-" + digest.hexdigest()[:16]


DECISIONS_KEPT = 4096
"""Decisions a policy remembers, by the pair of places (cleared when full)."""


@dataclass(frozen=True)
class ConsentPolicy:
    """One tenant's consent policy, resolved and checked; immutable, shared by its calls."""

    tenant: str
    version: str
    rules: RuleSet
    rules_path: Path
    home: Jurisdiction
    notice_timing: NoticeTiming
    consent_timeout_s: float
    on_timeout: OnTimeout
    minimum_mode: Mode
    minimum_parties: Parties
    digits: ConsentDigits
    languages: Mapping[str, str]
    default_language: str
    notices: Mapping[str, NoticeSet]
    beep: BeepTone
    overrides: tuple[Rule, ...] = ()
    _group_of: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _floor: Rule = field(init=False, repr=False, compare=False)
    _decisions: dict[tuple[Jurisdiction, Jurisdiction], Decision] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        group_of = {
            member: name for name, members in self.rules.groups.items() for member in members
        }
        floor = Rule(
            key=TENANT_ROLE,
            name=f"minimum of tenant {self.tenant}",
            mode=self.minimum_mode,
            parties=self.minimum_parties,
            source=TENANT_SOURCE,
            confidence=Confidence.CONFIRMED,
            notes="consent.minimum_mode and consent.minimum_parties",
        )
        object.__setattr__(self, "_group_of", MappingProxyType(group_of))
        object.__setattr__(self, "_floor", floor)
        object.__setattr__(self, "_decisions", {})

    def decide(self, caller: Jurisdiction, callee: Jurisdiction) -> Decision:
        """The call's rule: the strictest of caller, callee and home, raised to the floor.

        The policy is immutable and so is a decision: the same two places get the
        same decision object, worked out once (up to :data:`DECISIONS_KEPT` pairs)."""
        key = (caller, callee)
        found = self._decisions.get(key)
        if found is None:
            found = self._decide(caller, callee)
            if len(self._decisions) >= DECISIONS_KEPT:
                self._decisions.clear()
            self._decisions[key] = found
        return found

    def _decide(self, caller: Jurisdiction, callee: Jurisdiction) -> Decision:
        decision = self.rules.strictest([("caller", caller), ("callee", callee)], self.home)
        floor = self._floor
        raises_mode = floor.mode.strictness > decision.mode.strictness
        raises_parties = floor.parties.strictness > decision.parties.strictness
        if not raises_mode and not raises_parties:
            return decision
        mode = floor.mode if raises_mode else decision.mode
        parties = floor.parties if raises_parties else decision.parties
        applied = [
            replace(
                entry, sets_mode=entry.rule.mode is mode, sets_parties=entry.rule.parties is parties
            )
            for entry in decision.applied
        ]
        raised = " and ".join(
            text
            for text, did in (
                (f"minimum_mode {floor.mode.value}", raises_mode),
                (f"minimum_parties {floor.parties.value}", raises_parties),
            )
            if did
        )
        who = "all parties" if decision.all_parties else "one party"
        why = (
            f"the tenant's {raised} is stricter than the parties' and home's rules "
            f"({decision.mode.value}, {who})"
        )
        applied.append(
            AppliedRule(
                role=TENANT_ROLE,
                jurisdiction=self.home,
                rule=floor,
                why=why,
                sets_mode=floor.mode is mode,
                sets_parties=floor.parties is parties,
            )
        )
        return Decision(mode, parties, tuple(applied))

    def language_for(self, jurisdiction: Jurisdiction) -> str:
        """The notice language of a party: by subdivision, country, group, else the default."""
        if not jurisdiction.known:
            return self.default_language
        places = [code for code in (jurisdiction.subdivision, jurisdiction.country) if code]
        for code in places:
            language = self.languages.get(code)
            if language is not None:
                return language
        for code in places:
            group = self._group_of.get(code)
            if group is not None and group in self.languages:
                return self.languages[group]
        return self.default_language

    def notice_path(self, language: str, mode: Mode) -> Path:
        """The recording for ``mode`` in ``language`` (one :meth:`language_for` returns)."""
        files = self.notices.get(language)
        if files is None:
            raise KeyError(f"tenant {self.tenant!r} has no notices in {language!r}")
        return files.for_mode(mode)

    def notice_paths(self) -> tuple[Path, ...]:
        """Every recording this policy may play, each once."""
        return tuple(
            dict.fromkeys(path for files in self.notices.values() for path in files.paths())
        )


def _home(tenant: TenantSettings) -> Jurisdiction:
    place = parse_asserted(tenant.home, source="settings")
    if place is None or not place.known:
        raise ValueError(f"tenant {tenant.name!r}: home {tenant.home!r} is not a place")
    key = "consent.home" if tenant.consent.home is not None else "default_region"
    return Jurisdiction(place.country, place.subdivision, True, f"tenant home, from {key}")


def build_policy(
    tenant: TenantSettings, rules_file: RulesFile, config_dir: Path | None = None
) -> ConsentPolicy:
    """The policy of one tenant; relative notice paths are read from ``config_dir``."""
    consent = tenant.consent
    rules = tenant_rules(rules_file.rules, consent.overrides)
    notices = {
        language: NoticeSet(**kinds) for language, kinds in consent.notice_files(config_dir).items()
    }
    digits = consent.digits
    beep = consent.beep
    return ConsentPolicy(
        tenant=tenant.name,
        version=policy_version(consent, tenant.home, rules_file.data),
        rules=rules,
        rules_path=rules_file.path,
        home=_home(tenant),
        notice_timing=NoticeTiming(consent.notice_timing),
        consent_timeout_s=consent.consent_timeout_s,
        on_timeout=OnTimeout(consent.on_timeout),
        minimum_mode=Mode(consent.minimum_mode),
        minimum_parties=Parties(consent.minimum_parties),
        digits=ConsentDigits(**digits.keys()),
        languages=MappingProxyType(dict(consent.languages)),
        default_language=consent.default_language,
        notices=MappingProxyType(notices),
        beep=BeepTone(beep.interval_s, beep.frequency_hz, beep.duration_ms),
        overrides=tuple(rules.rules[key] for key in consent.overrides),
    )


def build_policies(settings: Settings) -> dict[str, ConsentPolicy]:
    """Tenant name -> policy, from the settings and the rules file read with them."""
    rules_file = settings.consent_rules()
    return {
        tenant.name: build_policy(tenant, rules_file, settings.config_dir)
        for tenant in settings.tenants
    }
