"""Reading a consent-rules TOML file, with errors that name the file and line.

The format (``config/consent-rules.toml`` is the shipped example)::

    disclaimer = "Not legal advice. ..."      # optional, shown with the rules

    [groups]                                   # optional: named lists of places
    EU = ["AT", "BE", "BG", ...]               # countries or ISO 3166-2 subdivisions

    [rules.unknown]                            # required: a party whose place is unknown
    mode = "opt_in"
    parties = "all"
    confidence = "U"
    source = "..."

    [rules.US-CA]                              # a subdivision, a country, or a group name
    name = "California"                        # optional
    mode = "notice"                            # notice | opt_out | opt_in | none
    parties = "all"                            # all | one
    confidence = "2"                           # S | 2 | U
    source = "Penal Code 632, 632.7, 637.2"    # required, never empty
    notes = "..."                              # optional

Checks beyond the types: every key is a known jurisdiction code, group or
``unknown``; a group has a rule and a place belongs to one group at most;
the ``unknown`` rule is at least as strict, in mode and in parties, as every
other rule that captures at all (the reference: a place that cannot be told
counts as strictest). Every problem is a :class:`gateway.config.ConfigError`
with the line of the offending key; all problems found are reported at once.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, TomlLines
from gateway.consent.rule import Confidence, Mode, Parties, Rule
from gateway.consent.subdivisions import (
    COUNTRIES,
    check_country,
    check_subdivision,
)

UNKNOWN_KEY = "unknown"

Location = tuple[str | int, ...]

_TOP_LEVEL = ("disclaimer", "groups", "rules")
_RULE_FIELDS = ("name", "mode", "parties", "confidence", "source", "notes")
_REQUIRED_FIELDS = ("mode", "parties", "confidence", "source")
_GROUP_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


@dataclass(frozen=True, slots=True)
class RulesDocument:
    """A validated rules file: its disclaimer, groups and rules by key."""

    path: str
    disclaimer: str
    groups: dict[str, tuple[str, ...]]
    rules: dict[str, Rule]


class _Problems:
    """Problems found so far, each at a location in the document."""

    def __init__(self) -> None:
        self.found: list[tuple[Location, str]] = []

    def add(self, loc: Location, reason: str) -> None:
        self.found.append((loc, reason))

    def raise_if_any(self, path: str, text: str) -> None:
        if not self.found:
            return
        locator = TomlLines(text)
        errors = [ConfigError(path, locator.line_of(loc), reason) for loc, reason in self.found]
        errors.sort(key=lambda error: error.line or 0)
        first = errors[0]
        first.more = errors[1:]
        raise first


def _dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc)


def _choice(value: Any, enum: type[Mode] | type[Parties] | type[Confidence]) -> Any:
    choices = [member.value for member in enum]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
    return enum(value)


def _check_code(code: str) -> None:
    """A country or subdivision code, else ValueError."""
    if code == "UK":
        raise ValueError("'UK' is not an ISO 3166-1 code (the United Kingdom is GB)")
    if "-" in code:
        check_subdivision(code)
    else:
        check_country(code)


def _read_groups(raw: Any, problems: _Problems) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        problems.add(("groups",), "groups must be a table of name = [places]")
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    member_of: dict[str, str] = {}
    for name, members in raw.items():
        loc: Location = ("groups", name)
        if not _GROUP_NAME.match(name) or name == UNKNOWN_KEY:
            problems.add(loc, f"group name {name!r} must be upper-case letters, digits and _")
            continue
        if name in COUNTRIES:
            problems.add(loc, f"group name {name!r} is a country code: choose another name")
            continue
        if not isinstance(members, list) or not members:
            problems.add(loc, f"groups.{name} must be a non-empty array of place codes")
            continue
        kept: list[str] = []
        for index, member in enumerate(members):
            at: Location = (*loc, index)
            if not isinstance(member, str):
                problems.add(at, f"groups.{name}[{index}] must be a string, not {member!r}")
                continue
            try:
                _check_code(member)
            except ValueError as error:
                problems.add(at, f"groups.{name}[{index}]: {error}")
                continue
            if member in member_of:
                problems.add(at, f"groups.{name}: {member} is already in group {member_of[member]}")
                continue
            member_of[member] = name
            kept.append(member)
        groups[name] = tuple(kept)
    return groups


def _read_rule(key: str, raw: Any, problems: _Problems) -> Rule | None:
    loc: Location = ("rules", key)
    if not isinstance(raw, dict):
        problems.add(loc, f"rules.{key} must be a table")
        return None
    ok = True
    for field in raw:
        if field not in _RULE_FIELDS:
            close = difflib.get_close_matches(field, _RULE_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.add((*loc, field), f"unknown key 'rules.{key}.{field}'{hint}")
            ok = False
    for field in _REQUIRED_FIELDS:
        if field not in raw:
            problems.add(loc, f"missing required key 'rules.{key}.{field}'")
            ok = False
    values: dict[str, Any] = {}
    for field, enum in (("mode", Mode), ("parties", Parties), ("confidence", Confidence)):
        if field in raw:
            try:
                values[field] = _choice(raw[field], enum)
            except ValueError as error:
                problems.add((*loc, field), f"rules.{key}.{field} {error}")
                ok = False
    for field in ("name", "source", "notes"):
        value = raw.get(field, "")
        if not isinstance(value, str):
            problems.add((*loc, field), f"rules.{key}.{field} must be a string, not {value!r}")
            ok = False
        elif field == "source" and field in raw and not value.strip():
            problems.add((*loc, field), f"rules.{key}.source must name where the rule comes from")
            ok = False
        values[field] = value.strip() if isinstance(value, str) else ""
    if not ok:
        return None
    return Rule(key=key, **values)


def _check_rule_key(key: str, groups: dict[str, tuple[str, ...]]) -> str | None:
    """Why ``key`` cannot name a rule, or None when it can."""
    if key == UNKNOWN_KEY or key in groups:
        return None
    try:
        _check_code(key)
    except ValueError as error:
        return f"rules.{key}: not a group, 'unknown' or a place code: {error}"
    return None


def _check_unknown_strictest(rules: dict[str, Rule], problems: _Problems) -> None:
    unknown = rules.get(UNKNOWN_KEY)
    if unknown is None:
        return
    for rule in rules.values():
        if rule.mode is Mode.NONE or rule is unknown:
            continue
        if not unknown.at_least_as_strict_as(rule):
            problems.add(
                ("rules", UNKNOWN_KEY),
                f"rules.unknown ({unknown.mode.value}, {unknown.parties.value}) must be at least "
                f"as strict as every other rule; rules.{rule.key} is "
                f"{rule.mode.value}, {rule.parties.value}",
            )
            return


def validate(data: dict[str, Any], path: str, text: str) -> RulesDocument:
    """Check parsed TOML ``data``; raise :class:`ConfigError` listing every problem."""
    problems = _Problems()
    for key in data:
        if key not in _TOP_LEVEL:
            close = difflib.get_close_matches(key, _TOP_LEVEL, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.add((key,), f"unknown key {key!r}{hint}")
    disclaimer = data.get("disclaimer", "")
    if not isinstance(disclaimer, str):
        problems.add(("disclaimer",), "disclaimer must be a string")
        disclaimer = ""
    groups = _read_groups(data.get("groups", {}), problems)
    raw_rules = data.get("rules")
    rules: dict[str, Rule] = {}
    if not isinstance(raw_rules, dict):
        problems.add(("rules",), "missing [rules] tables: at least [rules.unknown]")
        raw_rules = {}
    for key, raw in raw_rules.items():
        bad_key = _check_rule_key(key, groups)
        if bad_key is not None:
            problems.add(("rules", key), bad_key)
            continue
        rule = _read_rule(key, raw, problems)
        if rule is not None:
            rules[key] = rule
    if raw_rules and UNKNOWN_KEY not in raw_rules:
        problems.add(
            ("rules",), "missing [rules.unknown]: the rule for a party whose place is unknown"
        )
    for name in groups:
        if name not in raw_rules:
            problems.add(("groups", name), f"group {name} has no rule: add [rules.{name}]")
    _check_unknown_strictest(rules, problems)
    problems.raise_if_any(path, text)
    return RulesDocument(path, disclaimer.strip(), groups, rules)


def _syntax_error(error: tomllib.TOMLDecodeError, path: str, text: str) -> ConfigError:
    message = str(error)
    match = _TOML_POSITION.search(message)
    if match is not None:
        reason = f"{message[: match.start()]} (column {match[2]})"
        return ConfigError(path, int(match[1]), f"TOML syntax error: {reason}")
    return ConfigError(path, text.count("\n") + 1, f"TOML syntax error: {message}")


def parse_rules_text(text: str, path: str = "<rules>") -> RulesDocument:
    """Parse and validate rules written in TOML; ``path`` names them in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(error, path, text) from None
    return validate(data, path, text)


def read_rules_file(path: Path | str) -> RulesDocument:
    """Read, parse and validate a rules file; every problem is a :class:`ConfigError`."""
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(shown, None, f"cannot read the file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(shown, line, "the file is not UTF-8 text") from None
    return parse_rules_text(text, shown)
