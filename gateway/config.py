"""Typed settings: the TOML file, environment overrides, and errors that name the line.

The file is read with the standard library's ``tomllib`` and validated with
pydantic models that forbid unknown keys, so a typo is an error instead of a
silently ignored default. Every error is a :class:`ConfigError` that names
the file, the line of the offending key and the reason in plain words.

Environment overrides (a section and its key are separated by a double
underscore; names are case-insensitive; numbers are converted, arrays and
tables are written as TOML values)::

    CALLGATE_CONFIG=/etc/callgate/gateway.toml   the file to read
    CALLGATE_INSTANCE_ID=gw-2                    top-level keys
    CALLGATE_LOG_LEVEL=DEBUG
    CALLGATE_STORE__URL=postgresql+asyncpg://callgate@db/callgate
    CALLGATE_MEDIA__PORT_MIN=30000               section keys
    CALLGATE_SIP__ADVERTISED_HOST=203.0.113.10
    CALLGATE_SIP__LISTEN='[{ transport = "udp", host = "0.0.0.0", port = 5060 }]'
    CALLGATE_RECORDING__DIR=/srv/callgate/recordings
    CALLGATE_CONSENT__RULES_FILE=/etc/callgate/consent-rules.toml

Paths in the file (the consent rules file, notice recordings) are read
relative to the directory of the settings file; the recording directory
and a SQLite database, which the gateway writes, relative to the current
directory. Settings built in code, without a file, read relative paths
from the current directory and do not check that notice files exist.

Other ``CALLGATE_*`` variables (test settings, say) are not read, unless
they look like a section key written with one underscore, which is an error.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import ipaddress
import logging
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from gateway.sip.ip import ip_literal

if TYPE_CHECKING:
    from gateway.consent.rules import RuleSet

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH: Path = Path(__file__).resolve().parents[1] / "config" / "gateway.toml"
ENV_PREFIX = "CALLGATE_"
ENV_CONFIG = "CALLGATE_CONFIG"

SHIPPED_NOTICES_DIR: Path = DEFAULT_CONFIG_PATH.parent / "notices"
"""The shipped notice recordings: ``<language>/<kind>.wav``."""
SHIPPED_NOTICE_LANGUAGES: tuple[str, ...] = ("en", "de")
NOTICE_KINDS: tuple[str, ...] = ("notice", "opt_out", "opt_in")
"""One recording per mode that is announced: ``notice``, ``opt_out``, ``opt_in``."""
DTMF_KEYS = "0123456789*#ABCD"
"""The sixteen DTMF events 0-15 of RFC 4733 section 3.2."""

Transport = Literal["udp", "tcp"]
Location = tuple[str | int, ...]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _version() -> str:
    try:
        return metadata.version("callgate")
    except metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()


class ConfigError(Exception):
    """A configuration that cannot be used: which file, which line, why.

    ``more`` holds further problems found in the same pass, so an operator
    can fix them all at once; ``str()`` shows the first.
    """

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.more: list[ConfigError] = []

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"

    def all(self) -> list[ConfigError]:
        """This problem followed by the others found with it."""
        return [self, *self.more]


class _LocatedError(ValueError):
    """A validator's complaint about a key below the validated value.

    ``loc`` is relative to the value the validator checked, so a check on a
    whole table can still point at the line of the key that is wrong.
    """

    def __init__(self, message: str, *loc: str | int) -> None:
        super().__init__(message)
        self.loc: Location = tuple(loc)


# --------------------------------------------------------------------------
# Host and address checks
# --------------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _ip_or_none(value: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _config_dir(info: ValidationInfo) -> Path | None:
    """The directory of the settings file being validated; None for settings built in code."""
    context = info.context
    if isinstance(context, dict) and isinstance(context.get("config_dir"), Path):
        return context["config_dir"]
    return None


def _check_host(value: str) -> str:
    """An IP literal (IPv6 with or without brackets) or a DNS name (RFC 1123 section 2.1)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = _ip_or_none(host)
    if address is not None:
        return str(address)
    name = host.rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is neither an IP address nor a host name")
    return name.lower()


def _check_ip(value: str) -> str:
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = _ip_or_none(host)
    if address is None:
        raise ValueError(f"{value!r} is not an IP address")
    return str(address)


def _is_unspecified(host: str) -> bool:
    address = _ip_or_none(host)
    return address is not None and address.is_unspecified


def _plain_ip(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _plain_ip_of(text: str) -> IpAddress | None:
    """:func:`_plain_ip` of the address ``text`` (brackets allowed), None when it is none.

    Kept for the peers' and senders' addresses: every new call's sender is matched
    against each tenant's peers, and parsing an address costs more than the match."""
    address = _ip_or_none(text.strip("[]"))
    return None if address is None else _plain_ip(address)


@dataclass(frozen=True, slots=True)
class SourceRule:
    """One address a peer sends from: a network and, optionally, one port."""

    network: IpNetwork
    port: int | None

    def matches(self, address: IpAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)

    def overlaps(self, other: SourceRule) -> bool:
        ports_meet = self.port is None or other.port is None or self.port == other.port
        return ports_meet and self.network.overlaps(other.network)  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def _source_rule(text: str) -> SourceRule:
    """:func:`parse_source` of a configured (already checked) entry, parsed once."""
    return parse_source(text)


def parse_source(text: str) -> SourceRule:
    """Parse ``IP``, ``CIDR``, ``IP:port``, ``[v6]``, ``[v6]:port`` or ``CIDR:port``."""
    value = text.strip()
    port: int | None = None
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"source {text!r}: expected [IPv6] or [IPv6]:port")
        host, port_text = inside, rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"source {text!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(
            f"source {text!r} is not an IP address or network "
            "(expected IP, CIDR, IP:port or [IPv6]:port)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.ip_network(mapped)
    return SourceRule(network, port)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Port = Annotated[int, Field(ge=1, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class PeerSettings(_Section):
    """A PBX or a SIP trunk: where to send its calls, and how to tell it sent one."""

    host: str
    port: Port = 5060
    transport: Transport = "udp"
    sources: list[str] = Field(default_factory=list)

    _rules: tuple[tuple[str, ...], tuple[SourceRule, ...]] = PrivateAttr(default=((), ()))
    _resolved: tuple[str, frozenset[IpAddress]] | None = PrivateAttr(default=None)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for index, source in enumerate(value):
            try:
                parse_source(source)
            except ValueError as error:
                raise _LocatedError(str(error), index) from None
        return value

    @property
    def address(self) -> tuple[str, int]:
        """Where requests to this peer go (``host`` may still be a name)."""
        return (self.host, self.port)

    def source_rules(self) -> tuple[SourceRule, ...]:
        """The sender addresses that identify this peer (``host``, any port, when unset)."""
        rules = self._parsed_sources()
        if rules:
            return rules
        return tuple(SourceRule(ipaddress.ip_network(a), None) for a in self.resolve())

    def matches(self, ip: str, port: int) -> bool:
        """Whether a message from ``ip:port`` comes from this peer.

        With ``sources`` set, any of them must match; without, the sender must
        be ``host`` on any port. A sender that is not an IP address matches
        nothing.
        """
        address = _plain_ip_of(ip)
        if address is None:
            return False
        rules = self._parsed_sources()
        if rules:
            return any(rule.matches(address, port) for rule in rules)
        return address in self.resolve()

    def resolve(self) -> frozenset[IpAddress]:
        """The addresses of ``host``: the literal itself, or a name looked up once.

        A name is resolved on first use; call this at start-up so no lookup
        happens while a call waits. A name that does not resolve matches no
        sender (and is logged).
        """
        literal = _plain_ip_of(self.host) if "[" not in self.host else None
        if literal is not None:
            return frozenset({literal})
        if self._resolved is None or self._resolved[0] != self.host:
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            except OSError as error:
                log.warning("peer %s does not resolve: %s", self.host, error)
                infos = []
            found = frozenset(_plain_ip(ipaddress.ip_address(i[4][0])) for i in infos)
            self._resolved = (self.host, found)
        return self._resolved[1]

    def _parsed_sources(self) -> tuple[SourceRule, ...]:
        key = tuple(self.sources)
        if self._rules[0] != key:
            self._rules = (key, tuple(parse_source(source) for source in key))
        return self._rules[1]


# --------------------------------------------------------------------------
# Recording consent per tenant
# --------------------------------------------------------------------------

ModeName = Literal["notice", "opt_out", "opt_in", "none"]
PartiesName = Literal["one", "all"]

_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")


def _check_language(value: str) -> str:
    """A language tag as in RFC 5646 section 2.1: ``en``, ``de``, ``pt-BR``."""
    if not _LANGUAGE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a language code (lower-case ISO 639 letters such as "
            '"en" or "de", optionally a region as in "pt-BR")'
        )
    return value


def check_place_key(key: str, groups: Collection[str] = ()) -> None:
    """ValueError unless ``key`` is a country or subdivision code, or one of ``groups``.

    Codes are ISO 3166-1 alpha-2 (``DE``) or ISO 3166-2 (``US-CA``), written
    as the rules file writes them.
    """
    if key in groups:
        return
    from gateway.consent.subdivisions import check_country, check_subdivision

    def check(code: str) -> None:
        if code == "UK":
            raise ValueError("'UK' is not an ISO 3166-1 code (the United Kingdom is GB)")
        if "-" in code:
            check_subdivision(code)
        else:
            check_country(code)

    try:
        check(key)
    except ValueError as error:
        try:
            check(key.upper())
        except ValueError:
            raise error from None
        raise ValueError(f"write {key!r} as {key.upper()!r}, as the rules file does") from None


def resolve_path(value: str, base: Path | None) -> Path:
    """``value`` as an absolute path: a relative one is read from ``base`` (else the cwd)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    return path.absolute()


class RuleOverride(_Section):
    """A tenant's replacement for the rule of one jurisdiction or group."""

    mode: ModeName | None = None
    parties: PartiesName | None = None

    @model_validator(mode="after")
    def _some(self) -> RuleOverride:
        if self.mode is None and self.parties is None:
            raise ValueError("an override needs mode, parties or both")
        return self


class DigitSettings(_Section):
    """The DTMF keys (RFC 4733 events) a party presses to consent, decline and so on."""

    consent: str = "1"
    decline: str = "9"
    withdraw: str = "7"
    pause: str = "*"
    resume: str = "#"

    @field_validator("consent", "decline", "withdraw", "pause", "resume")
    @classmethod
    def _key(cls, value: str) -> str:
        key = value.upper()
        if len(key) != 1 or key not in DTMF_KEYS:
            raise ValueError(f"must be one DTMF key (0-9, *, #, A-D), not {value!r}")
        return key

    @model_validator(mode="after")
    def _distinct(self) -> DigitSettings:
        used: dict[str, str] = {}
        for name in type(self).model_fields:
            key = getattr(self, name)
            if key in used:
                other = used[key]
                if name not in self.model_fields_set and other in self.model_fields_set:
                    name, other = other, name
                raise _LocatedError(
                    f"{name} = {key!r} is the same key as {other}: each key must differ", name
                )
            used[key] = name
        return self

    def keys(self) -> dict[str, str]:
        """Purpose -> key, e.g. ``{"consent": "1", "decline": "9", ...}``."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class NoticeFiles(_Section):
    """One language's notice recordings, one per announced mode."""

    notice: str | None = None
    opt_out: str | None = None
    opt_in: str | None = None

    @field_validator("notice", "opt_out", "opt_in")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a file")
        return value


class BeepSettings(_Section):
    """A tone repeated while the call is captured (47 CFR 64.501, Conn. Gen. Stat. 52-570d)."""

    interval_s: float = Field(default=0.0, ge=0)
    frequency_hz: float = Field(default=1400.0, gt=0, lt=4000)
    duration_ms: int = Field(default=200, ge=1)

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    @model_validator(mode="after")
    def _fits(self) -> BeepSettings:
        if self.enabled and self.duration_ms >= self.interval_s * 1000:
            blamed = "duration_ms" if "duration_ms" in self.model_fields_set else "interval_s"
            raise _LocatedError(
                f"duration_ms ({self.duration_ms}) must be shorter than interval_s "
                f"({_number(self.interval_s)} s)",
                blamed,
            )
        return self


class TenantConsentSettings(_Section):
    """How one tenant tells and asks the parties of its calls about recording.

    The rule of a call comes from the consent rules file (see
    :mod:`gateway.consent.rules`), with ``overrides`` replacing rows for this
    tenant and ``minimum_mode``/``minimum_parties`` as a floor; the rest says
    when and in which language the notice plays and which DTMF keys count.
    """

    home: str | None = None
    notice_timing: Literal["answer", "early"] = "answer"
    consent_timeout_s: PositiveSeconds = 15.0
    on_timeout: Literal["continue", "hangup"] = "continue"
    minimum_mode: ModeName = "notice"
    minimum_parties: PartiesName = "one"
    default_language: str = "en"
    overrides: dict[str, RuleOverride] = Field(default_factory=dict)
    digits: DigitSettings = Field(default_factory=DigitSettings)
    languages: dict[str, str] = Field(default_factory=dict)
    notices: dict[str, NoticeFiles] = Field(default_factory=dict)
    beep: BeepSettings = Field(default_factory=BeepSettings)

    @field_validator("home")
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            check_place_key(value)
        except ValueError as error:
            raise ValueError(f"{error} (a tenant's home is a country or subdivision)") from None
        return value

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        return _check_language(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: dict[str, str]) -> dict[str, str]:
        for key, language in value.items():
            try:
                _check_language(language)
            except ValueError as error:
                raise _LocatedError(str(error), key) from None
        return value

    @field_validator("notices")
    @classmethod
    def _notice_languages(cls, value: dict[str, NoticeFiles]) -> dict[str, NoticeFiles]:
        for language in value:
            try:
                _check_language(language)
            except ValueError as error:
                raise _LocatedError(str(error), language) from None
        return value

    @model_validator(mode="after")
    def _every_language_has_notices(self) -> TenantConsentSettings:
        for language, files in self.notices.items():
            if language in SHIPPED_NOTICE_LANGUAGES:
                continue
            missing = [kind for kind in NOTICE_KINDS if getattr(files, kind) is None]
            if missing:
                raise _LocatedError(
                    f"needs {', '.join(missing)} (only "
                    f"{' and '.join(SHIPPED_NOTICE_LANGUAGES)} have shipped recordings)",
                    "notices",
                    language,
                )
        needed = [("default_language",), *(("languages", key) for key in self.languages)]
        for loc in needed:
            language = self.default_language if len(loc) == 1 else self.languages[loc[1]]
            if language not in self.notices and language not in SHIPPED_NOTICE_LANGUAGES:
                raise _LocatedError(
                    f"language {language!r} has no notices: add [tenants.consent.notices."
                    f"{language}] with notice, opt_out and opt_in",
                    *loc,
                )
        return self

    def spoken_languages(self) -> list[str]:
        """``default_language`` and every language ``languages`` names, once each."""
        return list(dict.fromkeys([self.default_language, *self.languages.values()]))

    def notice_files(self, base: Path | None) -> dict[str, dict[str, Path]]:
        """Language -> kind -> absolute path, for every spoken language.

        A configured path is read relative to ``base`` (the settings file's
        directory); a kind not configured is the shipped recording.
        """
        found: dict[str, dict[str, Path]] = {}
        for language in self.spoken_languages():
            files = self.notices.get(language, NoticeFiles())
            found[language] = {}
            for kind in NOTICE_KINDS:
                configured = getattr(files, kind)
                found[language][kind] = (
                    resolve_path(configured, base)
                    if configured is not None
                    else SHIPPED_NOTICES_DIR / language / f"{kind}.wav"
                )
        return found

    def check_notice_files(self, base: Path | None) -> None:
        """Every notice file there is to play exists; else the key (or table) that names it."""
        for language, files in self.notices.items():
            for kind in NOTICE_KINDS:
                configured = getattr(files, kind)
                if configured is None:
                    continue
                path = resolve_path(configured, base)
                if not path.is_file():
                    raise _LocatedError(
                        f"no such file {str(path)!r}",
                        "notices",
                        language,
                        kind,
                    )
        for language, kinds in self.notice_files(base).items():
            for kind, path in kinds.items():
                if not path.is_file():
                    raise _LocatedError(
                        f"the shipped {language} {kind} recording {str(path)!r} is missing: "
                        f"reinstall, or set [tenants.consent.notices.{language}] {kind}",
                        "notices",
                    )


class RetentionSettings(_Section):
    """How many days a tenant keeps each kind of data; 0 keeps it without limit.

    Records outlive what hangs off them: a call's recordings and transcripts
    go first, the record (metadata and consent trail) last.
    """

    recordings_days: int = Field(default=0, ge=0)
    transcripts_days: int = Field(default=0, ge=0)
    records_days: int = Field(default=0, ge=0)
    audit_days: int = Field(default=0, ge=0)
    """Days the audit log's entries of the tenant's reads are kept (changes, erasures and
    purges are kept whatever this says)."""


REDACTABLE_ENTITIES: tuple[str, ...] = (
    "CARD",
    "CVV",
    "EXPIRY",
    "PIN",
    "SSN",
    "BANK_ACCOUNT",
    "ROUTING",
    "IBAN",
    "PHONE",
    "EMAIL",
    "DOB",
    "DIGITS",
)
"""Entity types the redactor knows (``shared/reference/redaction.md``), as the tags that
replace them read (``[CARD]``); ``DIGITS`` is the catch-all for digits in a payment context."""


class TenantAnalysisSettings(_Section):
    """What happens to a tenant's consented recordings after the call.

    Voice activity and talk-time cues, a transcript per party, and redaction
    of sensitive spans from the transcript (text and word list) and from the
    stored audio (muted, or a tone) before anything is kept.
    """

    enabled: bool = True
    transcriber: Literal["pocketsphinx", "http", "none"] = "pocketsphinx"
    http_url: str | None = None
    http_token_env: str | None = None
    language: str = "en"
    entities: list[str] = Field(default_factory=lambda: list(REDACTABLE_ENTITIES))
    replacement: Literal["tag", "last4"] = "tag"
    audio: Literal["mute", "tone"] = "mute"
    margin_ms: int = Field(default=250, ge=0, le=2000)
    live_interval_s: float = Field(default=0.0, ge=0)
    """Transcribe while the call runs, every this many seconds (0: only after the call)."""

    @field_validator("entities")
    @classmethod
    def _entities(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in REDACTABLE_ENTITIES]
        if unknown:
            raise ValueError(f"unknown entities {unknown}; known: {', '.join(REDACTABLE_ENTITIES)}")
        return value

    @model_validator(mode="after")
    def _http(self) -> TenantAnalysisSettings:
        if self.transcriber == "http" and not self.http_url:
            raise ValueError('transcriber = "http" needs http_url')
        return self


class SealingSettings(_Section):
    """Keys that encrypt a tenant's recordings at rest (AES-256-GCM).

    ``keys`` maps key ids to 32-byte keys in base64; ``keys_env`` names an
    environment variable holding more as ``id:base64,id:base64`` (keep keys
    out of the file). New recordings use ``current`` (default: the last key
    listed); older files name their key in their header, so rotation is
    adding a key and making it current. No keys: recordings are stored
    unencrypted, and start-up says so.
    """

    keys: dict[str, str] = Field(default_factory=dict)
    keys_env: str | None = None
    current: str | None = None

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, text in value.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_id):
                raise ValueError(f"key id {key_id!r}: 1 to 64 letters, digits, '.', '_' or '-'")
            try:
                raw = base64.b64decode(text, validate=True)
            except (ValueError, binascii.Error):
                raise ValueError(f"key {key_id!r} is not base64") from None
            if len(raw) != 32:
                raise ValueError(f"key {key_id!r} is {len(raw)} bytes; AES-256 needs 32")
        return value

    @model_validator(mode="after")
    def _current(self) -> SealingSettings:
        if self.current is not None and self.keys_env is None and self.current not in self.keys:
            raise ValueError(f"current key {self.current!r} is not among keys")
        return self


class TenantSettings(_Section):
    """One company: its PBX, its trunk, and what tells its calls apart from others'."""

    name: str
    pbx: PeerSettings
    trunk: PeerSettings
    domains: list[str] = Field(default_factory=list)
    number_prefixes: list[str] = Field(default_factory=list)
    default_region: str = "US"
    consent: TenantConsentSettings = Field(default_factory=TenantConsentSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    analysis: TenantAnalysisSettings = Field(default_factory=TenantAnalysisSettings)
    sealing: SealingSettings = Field(default_factory=SealingSettings)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", value):
            raise ValueError(
                f"tenant name {value!r} must be a slug: lower-case letters, digits, '-' "
                "and '_', starting with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        checked = []
        for index, domain in enumerate(value):
            try:
                checked.append(_check_host(domain))
            except ValueError as error:
                raise _LocatedError(str(error), index) from None
        return checked

    @field_validator("number_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for index, prefix in enumerate(value):
            if not re.fullmatch(r"\+?[0-9]+", prefix):
                raise _LocatedError(
                    f"number prefix {prefix!r} must be digits, optionally after '+'", index
                )
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 region known to libphonenumber")
        return region

    @model_validator(mode="after")
    def _distinct_peers(self) -> TenantSettings:
        if _peers_overlap(self.pbx, self.trunk):
            raise _LocatedError(
                "the PBX and the trunk share a sender address, so a call from it cannot be "
                'told inbound or outbound: give them distinct sources (e.g. "IP:port")',
                "trunk",
            )
        return self

    @model_validator(mode="after")
    def _notice_files_exist(self, info: ValidationInfo) -> TenantSettings:
        base = _config_dir(info)
        if base is not None:
            try:
                self.consent.check_notice_files(base)
            except _LocatedError as error:
                raise _LocatedError(str(error), "consent", *error.loc) from None
        return self

    @property
    def peers(self) -> tuple[PeerSettings, PeerSettings]:
        return (self.pbx, self.trunk)

    @property
    def home(self) -> str:
        """The tenant's own jurisdiction: ``consent.home``, else its ``default_region``."""
        return self.consent.home or self.default_region


class SipListen(_Section):
    """One socket the SIP stack binds (port 0: any free port)."""

    transport: Transport
    host: str
    port: int = Field(ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)


def _default_listen() -> list[SipListen]:
    return [
        SipListen(transport="udp", host="127.0.0.1", port=5060),
        SipListen(transport="tcp", host="127.0.0.1", port=5060),
    ]


class SipSettings(_Section):
    """SIP sockets, identity and the RFC 3261 timers."""

    listen: list[SipListen] = Field(default_factory=_default_listen, min_length=1)
    advertised_host: str | None = None
    t1_s: PositiveSeconds = 0.5
    t2_s: PositiveSeconds = 4.0
    t4_s: PositiveSeconds = 5.0
    no_answer_timeout_s: PositiveSeconds = 60.0
    user_agent: str = f"callgate/{VERSION}"
    max_message_bytes: int = Field(default=65535, ge=1024)
    trusted_proxies: list[str] = Field(default_factory=list)
    overload_lag_s: float = Field(default=0.25, ge=0)
    overload_sustain_s: float = Field(default=0.2, ge=0)
    overload_retry_after_s: int = Field(default=2, ge=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            try:
                parse_source(item)
            except ValueError as exc:
                raise _LocatedError(str(exc), index) from None
        return value

    def is_trusted_proxy(self, ip: str, port: int) -> bool:
        """Whether ``ip:port`` is a proxy (e.g. the Kamailio dispatcher) in front of us."""
        if not self.trusted_proxies:
            return False
        try:
            address = ip_literal(ip)
        except ValueError:
            return False
        return any(_source_rule(item).matches(address, port) for item in self.trusted_proxies)

    @field_validator("advertised_host")
    @classmethod
    def _advertised(cls, value: str | None) -> str | None:
        return None if value is None else _check_host(value)

    @field_validator("listen")
    @classmethod
    def _unique_listen(cls, value: list[SipListen]) -> list[SipListen]:
        seen: set[tuple[str, str, int]] = set()
        for index, item in enumerate(value):
            key = (item.transport, item.host, item.port)
            if key in seen and item.port != 0:
                raise _LocatedError(
                    f"{item.transport} {item.host}:{item.port} is listed twice", index
                )
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _checks(self) -> SipSettings:
        if self.t2_s < self.t1_s:
            raise _LocatedError(f"t2_s ({self.t2_s}) must not be below t1_s ({self.t1_s})", "t2_s")
        if self.advertised_host is None:
            for index, item in enumerate(self.listen):
                if _is_unspecified(item.host):
                    raise _LocatedError(
                        f"listening on {item.host} needs advertised_host "
                        "(the address peers reach this gateway at)",
                        "listen",
                        index,
                        "host",
                    )
        return self


class MediaSettings(_Section):
    """The RTP relay: bind address, the address SDP names, the port range."""

    host: str = "127.0.0.1"
    advertised_address: str | None = None
    port_min: int = 20000
    port_max: int = 29999
    timeout_s: PositiveSeconds = 60.0
    hold_timeout_s: float = Field(default=3600.0, ge=0)
    flow_sockets: bool = True
    fastpath: bool = True
    kernel_forwarding: Literal["auto", "on", "off"] = "auto"
    kernel_interfaces: list[str] = Field(default_factory=list)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_ip(value)

    @field_validator("advertised_address")
    @classmethod
    def _advertised(cls, value: str | None) -> str | None:
        return None if value is None else _check_ip(value)

    @model_validator(mode="after")
    def _checks(self) -> MediaSettings:
        for key in ("port_min", "port_max"):
            value = getattr(self, key)
            if not 1024 <= value <= 65535:
                raise _LocatedError(f"{key} ({value}) must be from 1024 to 65535", key)
        if self.port_min % 2:
            raise _LocatedError(
                f"port_min ({self.port_min}) must be even: RTP takes even ports, "
                "RTCP the odd one above (RFC 3550 section 11)",
                "port_min",
            )
        if self.port_min >= self.port_max:
            raise _LocatedError(
                f"port_max ({self.port_max}) must be above port_min ({self.port_min})", "port_max"
            )
        if self.advertised_address is None and _is_unspecified(self.host):
            raise _LocatedError(
                f"binding media to {self.host} needs advertised_address "
                "(the address written into SDP)",
                "host",
            )
        return self

    @property
    def sdp_address(self) -> str:
        """The address written in SDP ``c=`` lines."""
        return self.advertised_address or self.host


class StoreSettings(_Section):
    """Where call records go and how the writer batches them."""

    url: str = "sqlite+aiosqlite:///var/callgate.sqlite3"
    batch_size: int = Field(default=200, ge=1)
    max_delay_s: float = Field(default=0.05, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            raise ValueError(
                f"{value!r} is not a database URL (expected e.g. "
                "sqlite+aiosqlite:///var/callgate.sqlite3 or postgresql+asyncpg://user@host/db)"
            )
        return value


class RecordingSettings(_Section):
    """Where captured calls are written, and how long late RTP packets are waited for."""

    dir: str = Field(default="var/recordings", min_length=1)
    latency_s: float = Field(default=0.5, ge=0)

    @property
    def path(self) -> Path:
        """The directory, relative to the current directory unless absolute."""
        return Path(self.dir)


@dataclass(frozen=True, slots=True)
class RulesFile:
    """A consent rules file as read at load: where, its bytes, and the rules in it."""

    path: Path
    data: bytes
    rules: RuleSet


class ConsentSettings(_Section):
    """The recording-consent rules file every tenant's policy starts from.

    ``rules_file`` unset is the shipped ``config/consent-rules.toml``; a
    relative path is read from the settings file's directory.
    """

    rules_file: str | None = Field(default=None, min_length=1)

    def rules_path(self, base: Path | None) -> Path:
        if self.rules_file is None:
            from gateway.consent.rules import DEFAULT_RULES_PATH

            return DEFAULT_RULES_PATH
        return resolve_path(self.rules_file, base)

    def read_rules(self, base: Path | None) -> RulesFile:
        """Read and check the rules file; a bad one is a :class:`ConfigError` at its own line."""
        from gateway.consent.rules import parse_rules

        path = self.rules_path(base)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise _LocatedError(
                f"cannot read the consent rules file {str(path)!r}: {error.strerror or error}",
                "rules_file",
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise ConfigError(str(path), line, "the file is not UTF-8 text") from None
        return RulesFile(path, data, parse_rules(text, str(path)))


class ApiSettings(_Section):
    """The HTTP API: where it listens and the limits it enforces.

    ``subject_hash_key`` keys the hash that replaces an erased number in call
    records (so the person cannot be found again while counts stay right); when
    unset, a random key is made once and kept in the store, shared by every
    instance on it. ``read_timeout_s`` is the budget of one listing or stats
    read: past it the read is stopped and the request gets a 503. ``workers``:
    processes serving the API for ``callgate api`` (one core each); ``callgate
    run`` serves it on the gateway's own event loop, whatever this says.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=65536, ge=1024)
    page_max: int = Field(default=1000, ge=1)
    key_cache_s: float = Field(default=2.0, ge=0)
    subject_hash_key: str | None = Field(default=None, min_length=16)
    retention_interval_s: PositiveSeconds = 3600.0
    policy_poll_s: PositiveSeconds = 5.0
    read_timeout_s: PositiveSeconds = 5.0
    workers: int = Field(default=1, ge=1, le=64)  # cli.MAX_API_WORKERS


class AnalysisSettings(_Section):
    """The post-call analysis workers: how many, and how failures are retried.

    Jobs live in the store (``analysis_jobs``): a restart loses none and
    repeats none. A job that fails is tried again after ``retry_s`` (doubling
    each time) up to ``max_attempts``, then recorded as failed with the reason.
    A job whose instance stopped answering for ``lease_s`` is taken over.
    """

    workers: int = Field(default=1, ge=0, le=64)
    max_attempts: int = Field(default=3, ge=1)
    retry_s: PositiveSeconds = 30.0
    lease_s: PositiveSeconds = 600.0
    poll_s: PositiveSeconds = 1.0


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(_Section):
    """Everything one gateway instance needs."""

    instance_id: str = Field(default_factory=socket.gethostname, min_length=1)
    log_level: LogLevel = "INFO"
    log_format: Literal["plain", "logfmt"] = "plain"
    drain_timeout_s: float = Field(default=30.0, ge=0)
    sip: SipSettings = Field(default_factory=SipSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    consent: ConsentSettings = Field(default_factory=ConsentSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    tenants: list[TenantSettings] = Field(default_factory=list)

    _config_dir: Path | None = PrivateAttr(default=None)
    _rules_file: RulesFile | None = PrivateAttr(default=None)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: list[TenantSettings]) -> list[TenantSettings]:
        first_index: dict[str, int] = {}
        for index, tenant in enumerate(value):
            if tenant.name in first_index:
                raise _LocatedError(
                    f"tenant name {tenant.name!r} is used twice "
                    f"(tenants[{first_index[tenant.name]}] and tenants[{index}])",
                    index,
                    "name",
                )
            first_index[tenant.name] = index
        for later in range(len(value)):
            for earlier in range(later):
                _check_shared_peer(value[earlier], value[later], later)
        return value

    @model_validator(mode="after")
    def _consent_rules(self, info: ValidationInfo) -> Settings:
        """Read the rules file and check each tenant's overrides and languages against it."""
        from gateway.consent.policy import OverrideError, tenant_rules

        self._config_dir = _config_dir(info)
        try:
            self._rules_file = self.consent.read_rules(self._config_dir)
        except _LocatedError as error:
            raise _LocatedError(str(error), "consent", *error.loc) from None
        rules = self._rules_file.rules
        for index, tenant in enumerate(self.tenants):
            at: Location = ("tenants", index, "consent")
            for key in tenant.consent.languages:
                try:
                    check_place_key(key, rules.groups)
                except ValueError as error:
                    raise _LocatedError(
                        f"{error} (a language is chosen by country, subdivision "
                        "or a group of the rules file)",
                        *at,
                        "languages",
                        key,
                    ) from None
            try:
                tenant_rules(rules, tenant.consent.overrides)
            except OverrideError as error:
                raise _LocatedError(str(error), *at, "overrides", error.key) from None
        return self

    @property
    def config_dir(self) -> Path | None:
        """The directory of the settings file; None for settings built in code."""
        return self._config_dir

    def consent_rules(self) -> RulesFile:
        """The consent rules file as read when these settings were validated."""
        if self._rules_file is None:
            self._rules_file = self.consent.read_rules(self._config_dir)
        return self._rules_file

    def tenant_named(self, name: str) -> TenantSettings:
        """The tenant called ``name``; KeyError when there is none."""
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(f"no tenant named {name!r}")


def _peer_identity(peer: PeerSettings) -> tuple[SourceRule, ...] | str:
    """The sender addresses of a peer; a host name stands for itself (no DNS at load time)."""
    if peer.sources or _ip_or_none(peer.host) is not None:
        return peer.source_rules()
    return peer.host


def _peers_overlap(one: PeerSettings, other: PeerSettings) -> bool:
    mine, theirs = _peer_identity(one), _peer_identity(other)
    if isinstance(mine, str) or isinstance(theirs, str):
        return mine == theirs
    return any(a.overlaps(b) for a in mine for b in theirs)


def _check_shared_peer(earlier: TenantSettings, later: TenantSettings, index: int) -> None:
    """Tenants that share a sender must each say which calls are theirs.

    Otherwise a call from the shared peer cannot be given to either of them.
    """
    shared = [
        f"{earlier.name}.{a_side} and {later.name}.{b_side}"
        for a_side, a in (("pbx", earlier.pbx), ("trunk", earlier.trunk))
        for b_side, b in (("pbx", later.pbx), ("trunk", later.trunk))
        if _peers_overlap(a, b)
    ]
    if not shared:
        return
    for tenant in (earlier, later):
        if not tenant.domains and not tenant.number_prefixes:
            raise _LocatedError(
                f"tenants {earlier.name!r} and {later.name!r} share a sender ({shared[0]}), "
                f"so tenant {tenant.name!r} needs domains or number_prefixes to tell its calls "
                "apart",
                index,
            )


# --------------------------------------------------------------------------
# Where each key is in the TOML text
# --------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")
_TOML_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")


class TomlLines:
    """Maps key paths of a TOML document to the line each is written on.

    Paths are pydantic-style locations: table keys as strings, positions in
    arrays (including arrays of tables) as integers. Handles ``[table]`` and
    ``[[array]]`` headers, dotted keys, quoted keys, inline tables and
    multi-line arrays. It runs only on text ``tomllib`` already accepted.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[Location, int] = {}
        self._array_counts: dict[Location, int] = {}
        self._scan()

    def line_of(self, loc: Location) -> int | None:
        """The line of ``loc`` or, when it is not written (a missing key), of its table."""
        for end in range(len(loc), 0, -1):
            found = self.lines.get(tuple(loc[:end]))
            if found is not None:
                return found
        return None

    # -- low-level reading -------------------------------------------------

    def _peek(self, count: int = 1) -> str:
        return self.text[self.pos : self.pos + count]

    def _advance(self, count: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (when ``newlines``) line ends."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self._advance()
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self._advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    def _note(self, path: Location, line: int) -> None:
        self.lines.setdefault(path, line)

    # -- keys --------------------------------------------------------------

    def _key_part(self) -> str:
        quote = self._peek()
        if quote in ('"', "'"):
            end = self.pos + 1
            while self.text[end] != quote:
                end += 2 if quote == '"' and self.text[end] == "\\" else 1
            raw = self.text[self.pos + 1 : end]
            self._advance(end + 1 - self.pos)
            return _TOML_ESCAPE.sub(_unescape, raw) if quote == '"' else raw
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"unexpected {quote!r} at line {self.line}")
        self._advance(match.end() - self.pos)
        return match.group()

    def _dotted_key(self) -> list[str]:
        parts = [self._key_part()]
        self._skip_blank(newlines=False)
        while self._peek() == ".":
            self._advance()
            self._skip_blank(newlines=False)
            parts.append(self._key_part())
            self._skip_blank(newlines=False)
        return parts

    # -- document ----------------------------------------------------------

    def _scan(self) -> None:
        table: Location = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            if self._peek() == "[":
                table = self._header()
            else:
                self._key_value(table)

    def _header(self) -> Location:
        line = self.line
        is_array = self._peek(2) == "[["
        self._advance(2 if is_array else 1)
        self._skip_blank(newlines=False)
        keys = self._dotted_key()
        self._advance(2 if is_array else 1)
        path: Location = ()
        for number, key in enumerate(keys):
            path = (*path, key)
            last = number == len(keys) - 1
            if last and is_array:
                index = self._array_counts.get(path, -1) + 1
                self._array_counts[path] = index
                self._note(path, line)
                path = (*path, index)
            elif path in self._array_counts:
                path = (*path, self._array_counts[path])
            self._note(path, line)
        return path

    def _key_value(self, table: Location) -> None:
        line = self.line
        path = table
        for key in self._dotted_key():
            path = (*path, key)
            self._note(path, line)
        self._skip_blank(newlines=False)
        self._advance()  # '='
        self._skip_blank(newlines=False)
        self._value(path)

    def _value(self, path: Location) -> None:
        char = self._peek()
        if char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        elif self._peek(3) in ('"""', "'''"):
            self._multiline_string(self._peek(3))
        elif char in ('"', "'"):
            self._key_part()
        else:
            match = _SCALAR.match(self.text, self.pos)
            self._advance(match.end() - self.pos if match else 0)

    def _multiline_string(self, delimiter: str) -> None:
        end = self.pos + 3
        while True:
            if delimiter == '"""' and self.text[end] == "\\":
                end += 2
                continue
            if self.text.startswith(delimiter, end):
                break
            end += 1
        end += 3
        while end < len(self.text) and self.text[end] == delimiter[0]:
            end += 1  # up to two quotes may end the content itself
        self._advance(end - self.pos)

    def _array(self, path: Location) -> None:
        self._advance()
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self._peek() == "]":
                self._advance()
                return
            self._note((*path, index), self.line)
            self._value((*path, index))
            index += 1
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._advance()

    def _inline_table(self, path: Location) -> None:
        self._advance()
        while True:
            self._skip_blank(newlines=True)
            if self._peek() == "}":
                self._advance()
                return
            self._key_value(path)
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._advance()


_SIMPLE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "uU":
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, code)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` as ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _annotation_at(loc: Location) -> Any:
    """The declared type at a location in :class:`Settings`, or None when there is none."""
    annotation: Any = Settings
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            if typing.get_origin(annotation) is not list:
                return None
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return None
    return _unwrap(annotation)


def _from_environment(name: str, raw: str, annotation: Any) -> Any:
    """An environment string as the type its key declares.

    Numbers and booleans (``true``/``false``, as TOML writes them, in any case) are
    converted (other text is left for validation to reject); arrays and tables are
    read as TOML values, e.g. ``[{ transport = "udp", host = "0.0.0.0", port = 5060 }]``.
    """
    if annotation is bool:
        spelled = raw.strip().lower()
        return spelled == "true" if spelled in ("true", "false") else raw
    try:
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
    except ValueError:
        return raw
    structured = typing.get_origin(annotation) is list or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )
    if not structured:
        return raw
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError as error:
        reason = _TOML_POSITION.sub("", str(error))
        raise ConfigError(name, None, f"not a TOML value: {reason}") from None


def environment_overrides(env: Mapping[str, str]) -> dict[Location, tuple[str, str]]:
    """``CALLGATE_<SECTION>__<KEY>`` variables: location -> (variable name, value).

    Only variables that start with a top-level key or a section name are
    read, so unrelated ``CALLGATE_*`` variables do not break start-up; one
    that looks like a section key with a single underscore is an error.
    """
    top_level = Settings.model_fields
    found: dict[Location, tuple[str, str]] = {}
    for name, value in sorted(env.items()):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == ENV_CONFIG:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in top_level:
            section = next((s for s in top_level if parts[0].startswith(s + "_")), None)
            if section is not None and len(parts) == 1:
                key = parts[0][len(section) + 1 :].upper()
                raise ConfigError(
                    name,
                    None,
                    "sections and keys are separated by two underscores "
                    f"(did you mean {ENV_PREFIX}{section.upper()}__{key}?)",
                )
            continue
        if all(parts):
            found[tuple(parts)] = (name, value)
    return found


def _apply_overrides(
    data: dict[str, Any], overrides: dict[Location, tuple[str, str]], path: str
) -> None:
    for loc, (name, raw) in overrides.items():
        table = data
        for key in loc[:-1]:
            child = table.setdefault(str(key), {})
            if not isinstance(child, dict):
                raise ConfigError(name, None, f"{_dotted(loc[:-1])} is not a table in {path}")
            table = child
        table[str(loc[-1])] = _from_environment(name, raw, _annotation_at(loc))


def _dotted(loc: Location) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain_reason(error: ErrorDetails, loc: Location) -> str:
    """A pydantic error as a sentence an operator can act on."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    key = _dotted(loc) or "the file"
    if kind == "extra_forbidden":
        parent = _annotation_at(loc[:-1])
        hint = ""
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"missing required key {key!r}"
    if kind == "value_error":
        return f"{key}: {ctx.get('error', error['msg'])}"
    messages = {
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "string_type": "must be a string (in quotes)",
        "bool_type": "must be true or false",
        "list_type": "must be an array [...]",
        "model_type": "must be a table",
        "model_attributes_type": "must be a table",
        "dict_type": "must be a table",
        "literal_error": f"must be {ctx.get('expected')}",
        "greater_than": f"must be greater than {_number(ctx.get('gt'))}",
        "greater_than_equal": f"must be at least {_number(ctx.get('ge'))}",
        "less_than": f"must be less than {_number(ctx.get('lt'))}",
        "less_than_equal": f"must be at most {_number(ctx.get('le'))}",
        "too_short": "must not be empty",
        "string_too_short": "must not be empty",
    }
    message = messages.get(kind, error["msg"])
    value = error.get("input")
    if isinstance(value, dict | list):
        return f"{key}: {message}"
    return f"{key}: {message}, not {_shown(value)}"


def _validation_errors(
    error: ValidationError,
    path: str,
    text: str,
    overrides: dict[Location, tuple[str, str]],
) -> ConfigError:
    locator = TomlLines(text)
    problems: list[tuple[int, ConfigError]] = []
    for detail in error.errors(include_url=False):
        extra = getattr((detail.get("ctx") or {}).get("error"), "loc", ())
        loc: Location = (*detail["loc"], *extra)
        reason = _plain_reason(detail, loc)
        env = next((o for o in overrides if loc[: len(o)] == o), None)
        if env is not None:
            problems.append((0, ConfigError(overrides[env][0], None, reason)))
            continue
        checked: Location = tuple(detail["loc"])
        related = [overrides[o] for o in overrides if o[: len(checked)] == checked]
        if related:
            reason += (
                " (with " + ", ".join(f"{n}={v}" for n, v in related) + " from the environment)"
            )
        line = locator.line_of(loc)
        problems.append((line or 0, ConfigError(path, line, reason)))
    problems.sort(key=lambda item: item[0])
    first = problems[0][1]
    first.more = [problem for _, problem in problems[1:]]
    return first


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _syntax_error(error: tomllib.TOMLDecodeError, path: str, text: str) -> ConfigError:
    message = str(error)
    match = _TOML_POSITION.search(message)
    if match is not None:
        reason = f"{message[: match.start()]} (column {match[2]})"
        return ConfigError(path, int(match[1]), f"TOML syntax error: {reason}")
    if message.endswith("(at end of document)"):
        line = text.count("\n") + 1
        return ConfigError(path, line, f"TOML syntax error: {message[:-21].strip()} at the end")
    return ConfigError(path, None, f"TOML syntax error: {message}")


def config_path(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """The file to read: ``path``, else ``$CALLGATE_CONFIG``, else the embedded default."""
    if path is not None:
        return Path(path)
    from_env = env.get(ENV_CONFIG)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read, override from ``env``, and validate; every problem is a :class:`ConfigError`."""
    file = config_path(path, env)
    shown = str(file)
    try:
        raw = file.read_bytes()
    except OSError as error:
        reason = f"cannot read the file: {error.strerror or error}"
        if file == DEFAULT_CONFIG_PATH:
            reason += f" (pass --config FILE or set {ENV_CONFIG})"
        raise ConfigError(shown, None, reason) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(shown, line, "the file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(error, shown, text) from None
    overrides = environment_overrides(env)
    _apply_overrides(data, overrides, shown)
    context = {"config_dir": file.absolute().parent.resolve()}
    try:
        return Settings.model_validate(data, strict=True, context=context)
    except ValidationError as error:
        raise _validation_errors(error, shown, text, overrides) from None
