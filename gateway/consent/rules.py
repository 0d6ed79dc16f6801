"""A rule set and the rule it gives for a call: the strictest of its parties' and the tenant's.

Which rule a jurisdiction gets (first that exists):

1. its subdivision's own rule (``US-CA``);
2. a group that lists the subdivision;
3. its country's rule (``DE``; for ``US-TX``, which has none: ``US``);
4. a group that lists the country (``EU`` for ``FR``);
5. ``unknown``, the strictest rule.

A party known only by country (``US`` asserted without a state, a +1 area
code that spans two provinces) where the set has rules for that country's
subdivisions gets the strictest of the country's rule and those: its place
inside the country is unknown, and an unknown place counts as strictest.
An unknown party gets ``unknown``.

A call's rule is the strictest of every party's and the tenant's home
jurisdiction (and, where the caller adds it, the jurisdiction the gateway
records in): the strictest mode, and all parties if any of them needs all.
The :class:`Decision` keeps which rule applied to whom and why; that list is
what the call record stores. See :mod:`gateway.consent.rule` for the modes
and their order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.consent.jurisdiction import Jurisdiction
from gateway.consent.rule import Confidence, Mode, Parties, Rule
from gateway.consent.rules_file import UNKNOWN_KEY, parse_rules_text, read_rules_file

__all__ = [
    "DEFAULT_RULES_PATH",
    "AppliedRule",
    "Confidence",
    "Decision",
    "Mode",
    "Parties",
    "Rule",
    "RuleMatch",
    "RuleSet",
    "load_rules",
    "parse_rules",
]

DEFAULT_RULES_PATH: Path = Path(__file__).resolve().parents[2] / "config" / "consent-rules.toml"

_CONFIDENCE_WEAKNESS = {Confidence.CONFIRMED: 0, Confidence.SECONDARY: 1, Confidence.UNSETTLED: 2}


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """The rule a jurisdiction gets and how it was chosen."""

    rule: Rule
    why: str


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """One party's (or the tenant home's) jurisdiction, its rule, and its share in the decision."""

    role: str
    jurisdiction: Jurisdiction
    rule: Rule
    why: str
    sets_mode: bool
    sets_parties: bool

    def record(self) -> dict[str, str | bool]:
        """A JSON-ready entry for the call record."""
        return {
            "role": self.role,
            "jurisdiction": self.jurisdiction.code,
            "known": self.jurisdiction.known,
            "place": self.jurisdiction.reason,
            "rule": self.rule.key,
            "mode": self.rule.mode.value,
            "parties": self.rule.parties.value,
            "confidence": self.rule.confidence.value,
            "source": self.rule.source,
            "why": self.why,
            "sets_mode": self.sets_mode,
            "sets_parties": self.sets_parties,
        }

    def explain(self) -> str:
        """One line: who, where, which rule and why."""
        return f"{self.role}: {self.jurisdiction}; {self.why}; {self.rule.summary()}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The call's rule: the strictest mode and parties, and each contribution."""

    mode: Mode
    parties: Parties
    applied: tuple[AppliedRule, ...]

    @property
    def all_parties(self) -> bool:
        return self.parties is Parties.ALL

    def record(self) -> list[dict[str, str | bool]]:
        """The explanation list the call record stores, one entry per party and the home."""
        return [entry.record() for entry in self.applied]

    def explanation(self) -> list[str]:
        return [entry.explain() for entry in self.applied]


class RuleSet:
    """Rules by key (jurisdiction code, group name, ``unknown``) and the groups they use."""

    def __init__(
        self,
        rules: Mapping[str, Rule],
        groups: Mapping[str, Sequence[str]] | None = None,
        *,
        disclaimer: str = "",
        path: str | None = None,
    ) -> None:
        if UNKNOWN_KEY not in rules:
            raise ValueError("a rule set needs an 'unknown' rule")
        self.rules: dict[str, Rule] = dict(rules)
        self.groups: dict[str, tuple[str, ...]] = {
            name: tuple(members) for name, members in (groups or {}).items()
        }
        self.disclaimer = disclaimer
        self.path = path
        self._group_of: dict[str, str] = {
            member: name for name, members in self.groups.items() for member in members
        }

    @property
    def unknown(self) -> Rule:
        return self.rules[UNKNOWN_KEY]

    def rule_for(self, jurisdiction: Jurisdiction) -> Rule:
        """The rule that applies to one jurisdiction."""
        return self.match(jurisdiction).rule

    def match(self, jurisdiction: Jurisdiction) -> RuleMatch:
        """The rule that applies to one jurisdiction, and why that one."""
        if not jurisdiction.known or jurisdiction.country is None:
            return RuleMatch(self.unknown, "place unknown: the unknown rule applies")
        subdivision = jurisdiction.subdivision
        if subdivision is not None:
            found = self._own_or_group(subdivision)
            if found is not None:
                return found
            country = self._country_match(jurisdiction.country)
            then = country.why
            if country.rule.key == jurisdiction.country:
                then = f"the {jurisdiction.country} rule applies"
            return RuleMatch(country.rule, f"{subdivision} has no rule of its own; {then}")
        return self._country_only(jurisdiction.country)

    def strictest(
        self, parties: Sequence[tuple[str, Jurisdiction]], home: Jurisdiction
    ) -> Decision:
        """The call's rule from its parties ``(role, jurisdiction)`` and the tenant's home."""
        entries = [*parties, ("home", home)]
        matches = [(role, where, self.match(where)) for role, where in entries]
        mode = max((m.rule.mode for _, _, m in matches), key=lambda mode: mode.strictness)
        needed = max((m.rule.parties for _, _, m in matches), key=lambda p: p.strictness)
        applied = tuple(
            AppliedRule(
                role=role,
                jurisdiction=where,
                rule=m.rule,
                why=m.why,
                sets_mode=m.rule.mode is mode,
                sets_parties=m.rule.parties is needed,
            )
            for role, where, m in matches
        )
        return Decision(mode, needed, applied)

    # -- lookup steps ------------------------------------------------------

    def _own_or_group(self, code: str) -> RuleMatch | None:
        if code in self.rules:
            return RuleMatch(self.rules[code], f"{code} has its own rule")
        group = self._group_of.get(code)
        if group is not None:
            return RuleMatch(self.rules[group], f"{code} is in group {group}")
        return None

    def _country_match(self, country: str) -> RuleMatch:
        found = self._own_or_group(country)
        if found is not None:
            return found
        return RuleMatch(self.unknown, f"no rule for {country}: the unknown rule applies")

    def _subdivision_rules(self, country: str) -> list[Rule]:
        prefix = f"{country}-"
        keys = [key for key in self.rules if key.startswith(prefix)]
        keys += [
            name
            for name, members in self.groups.items()
            if any(member.startswith(prefix) for member in members)
        ]
        return [self.rules[key] for key in dict.fromkeys(keys)]

    def _country_only(self, country: str) -> RuleMatch:
        """A party known by country alone: the strictest of the country's rules."""
        base = self._country_match(country)
        inside = self._subdivision_rules(country)
        if not inside:
            return base
        candidates = [base.rule, *inside]
        strictest = _strictest_of(country, candidates)
        keys = ", ".join(rule.key for rule in candidates)
        why = f"{country} without a subdivision: the strictest of {keys} ({strictest.key}) applies"
        return RuleMatch(strictest, why)


def _strictest_of(country: str, candidates: list[Rule]) -> Rule:
    """The candidate that is at least as strict as all others, or one made of their maxima."""
    for rule in candidates:
        if all(rule.at_least_as_strict_as(other) for other in candidates):
            return rule
    mode = max((rule.mode for rule in candidates), key=lambda mode: mode.strictness)
    parties = max((rule.parties for rule in candidates), key=lambda p: p.strictness)
    deciding = [rule for rule in candidates if rule.mode is mode or rule.parties is parties]
    confidence = max((rule.confidence for rule in deciding), key=lambda c: _CONFIDENCE_WEAKNESS[c])
    return Rule(
        key=f"{country}-*",
        name=f"{country}, subdivision not known",
        mode=mode,
        parties=parties,
        source="; ".join(dict.fromkeys(rule.source for rule in deciding)),
        confidence=confidence,
        notes="strictest of " + ", ".join(rule.key for rule in deciding),
    )


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    """A rule set from TOML text; problems are :class:`gateway.config.ConfigError`."""
    document = parse_rules_text(text, path)
    return RuleSet(
        document.rules, document.groups, disclaimer=document.disclaimer, path=document.path
    )


def load_rules(path: Path | str = DEFAULT_RULES_PATH) -> RuleSet:
    """A rule set from a TOML file (the shipped defaults unless told otherwise)."""
    document = read_rules_file(path)
    return RuleSet(
        document.rules, document.groups, disclaimer=document.disclaimer, path=document.path
    )
