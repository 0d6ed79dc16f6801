"""Loading settings files: the embedded default, and errors that point at the right line."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    MediaSettings,
    PeerSettings,
    Settings,
    SipListen,
    SipSettings,
    StoreSettings,
    TenantSettings,
    load_settings,
)
from tests.unit.config.samples import VALID, line_with

WriteConfig = Callable[[str], Path]


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    return caught.value


# -- the embedded default ----------------------------------------------------


def test_default_config_loads_and_runs_on_loopback() -> None:
    settings = load_settings(env={})
    assert DEFAULT_CONFIG_PATH.is_file()
    assert [(i.transport, i.host, i.port) for i in settings.sip.listen] == [
        ("udp", "127.0.0.1", 5060),
        ("tcp", "127.0.0.1", 5060),
    ]
    assert (settings.media.host, settings.media.port_min, settings.media.port_max) == (
        "127.0.0.1",
        20000,
        20999,
    )
    assert settings.store.url == "sqlite+aiosqlite:///var/callgate.sqlite3"
    example = settings.tenant_named("example")
    assert example.pbx.address == ("127.0.0.2", 5060)
    assert example.trunk.address == ("127.0.0.3", 5060)
    assert example.pbx.matches("127.0.0.2", 40000)
    assert not example.pbx.matches("127.0.0.3", 5060)


def test_default_config_documents_every_key() -> None:
    """Every settings key appears in the default file (set or in a comment)."""
    text = DEFAULT_CONFIG_PATH.read_text()
    models: list[type[BaseModel]] = [
        Settings,
        SipSettings,
        SipListen,
        MediaSettings,
        StoreSettings,
        TenantSettings,
        PeerSettings,
    ]
    missing = [
        f"{model.__name__}.{key}"
        for model in models
        for key in model.model_fields
        if not re.search(rf"(^|[\s#{{,.\[]){key}(\s*=|\])", text, re.MULTILINE)
    ]
    assert missing == []


def test_commented_second_tenant_is_valid_when_enabled(write_config: WriteConfig) -> None:
    """The commented second tenant loads once both tenants say which calls are theirs."""
    text = DEFAULT_CONFIG_PATH.read_text()
    start = text.index("# [[tenants]]")
    block = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    first = text[:start].replace("number_prefixes = []", 'number_prefixes = ["+1415"]', 1)
    settings = load_settings(write_config(first + "\n" + block), env={})
    assert [tenant.name for tenant in settings.tenants] == ["example", "globex"]
    assert settings.tenant_named("globex").trunk.matches("198.51.100.7", 5060)


def test_settings_constructed_in_code_have_the_documented_defaults() -> None:
    settings = Settings()
    assert settings.sip.t1_s == 0.5 and settings.sip.no_answer_timeout_s == 60
    assert settings.media.port_min == 20000 and settings.media.port_max == 29999
    assert settings.store.batch_size == 200
    assert settings.sip.user_agent.startswith("callgate/")
    assert settings.instance_id
    assert settings.tenants == []


def test_tenant_named_raises_key_error_for_unknown_name(write_config: WriteConfig) -> None:
    settings = load_settings(write_config(VALID), env={})
    assert settings.tenant_named("acme").name == "acme"
    with pytest.raises(KeyError, match="nope"):
        settings.tenant_named("nope")


# -- reading the file ----------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    error = load_error(tmp_path / "absent.toml")
    assert error.path == str(tmp_path / "absent.toml")
    assert error.line is None
    assert "cannot read the file" in error.reason
    assert str(error) == f"{tmp_path / 'absent.toml'}: {error.reason}"


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'instance_id = "a"\n# caf\xe9\n')
    error = load_error(path)
    assert (error.line, error.reason) == (2, "the file is not UTF-8 text")


def test_toml_syntax_error_gives_line_and_column(write_config: WriteConfig) -> None:
    text = VALID.replace('url = "sqlite', 'url = sqlite"')
    error = load_error(write_config(text))
    assert error.line == line_with(text, "url = sqlite")
    assert error.reason.startswith("TOML syntax error: ")
    assert "column 7" in error.reason
    assert str(error).startswith(f"{error.path}:{error.line}: TOML syntax error")


def test_duplicate_key_is_a_syntax_error_on_its_line(write_config: WriteConfig) -> None:
    text = VALID.replace("port_max = 20999\n", "port_max = 20999\nport_max = 21999\n")
    error = load_error(write_config(text))
    assert error.line == line_with(text, "port_max = 21999")


# -- validation errors point at the offending key --------------------------------


def test_unknown_key_in_nested_table(write_config: WriteConfig) -> None:
    text = VALID.replace('host = "127.0.0.3"', 'host = "127.0.0.3"\nprot = 5060')
    error = load_error(write_config(text))
    assert error.line == line_with(text, "prot = 5060")
    assert error.reason == "unknown key 'tenants[0].trunk.prot' (did you mean 'port'?)"


def test_unknown_top_level_key(write_config: WriteConfig) -> None:
    text = "log_levle = 'DEBUG'\n" + VALID
    error = load_error(write_config(text))
    assert (error.line, error.reason) == (1, "unknown key 'log_levle' (did you mean 'log_level'?)")


def test_unknown_section(write_config: WriteConfig) -> None:
    text = VALID + "\n[medai]\nhost = '127.0.0.1'\n"
    error = load_error(write_config(text))
    assert error.line == line_with(text, "[medai]")
    assert "unknown key 'medai'" in error.reason


def test_wrong_type_in_second_tenant_points_at_the_second_entry(write_config: WriteConfig) -> None:
    second = """
[[tenants]]
name = "globex"
number_prefixes = ["+49"]

[tenants.pbx]
host = "10.0.0.2"
port = "5060"

[tenants.trunk]
host = "10.0.0.3"
"""
    text = VALID.replace('name = "acme"', 'name = "acme"\nnumber_prefixes = ["+1"]') + second
    error = load_error(write_config(text))
    assert error.line == line_with(text, 'port = "5060"')
    assert error.reason == "tenants[1].pbx.port: must be a whole number, not '5060'"


def test_missing_required_key_points_at_its_table(write_config: WriteConfig) -> None:
    text = VALID.replace('[tenants.pbx]\nhost = "127.0.0.2"\n', "")
    error = load_error(write_config(text))
    assert error.line == line_with(text, "[[tenants]]")
    assert error.reason == "missing required key 'tenants[0].pbx'"


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ("port_min = 20001", "port_min", "must be even"),
        ("port_max = 19000", "port_max", "must be above port_min"),
        ("port_min = 80", "port_min", "from 1024 to 65535"),
        ("port_max = 70000", "port_max", "from 1024 to 65535"),
    ],
)
def test_bad_media_port_range(write_config: WriteConfig, change: str, key: str, words: str) -> None:
    text = re.sub(rf"^{key} = \d+$", change, VALID, flags=re.MULTILINE)
    error = load_error(write_config(text))
    assert error.line == line_with(text, change)
    assert error.reason.startswith(f"media.{key}: ")
    assert words in error.reason


def test_duplicate_tenant_names_point_at_the_second(write_config: WriteConfig) -> None:
    second = """
[[tenants]]
name = "acme"
pbx = { host = "10.0.0.2" }
trunk = { host = "10.0.0.3" }
"""
    text = VALID + second
    error = load_error(write_config(text))
    assert error.line == line_with(text, 'name = "acme"', occurrence=2)
    assert "tenant name 'acme' is used twice" in error.reason


def test_literal_error_inside_multiline_array_of_inline_tables(write_config: WriteConfig) -> None:
    text = VALID.replace('{ transport = "tcp"', '{ transport = "sctp"')
    error = load_error(write_config(text))
    assert error.line == line_with(text, '"sctp"')
    assert error.reason == "sip.listen[1].transport: must be 'udp' or 'tcp', not 'sctp'"


def test_dotted_keys(write_config: WriteConfig) -> None:
    text = """\
sip.t1_s = 0.5
sip.t2_s = -1
media.port_min = 20000
"""
    error = load_error(write_config(text))
    assert error.line == 2
    assert error.reason == "sip.t2_s: must be greater than 0, not -1"


def test_error_in_inline_peer_table(write_config: WriteConfig) -> None:
    text = """\
[[tenants]]
name = "acme"
pbx = { host = "127.0.0.2", port = 5060 }
trunk = { host = "127.0.0.3", port = 5060, transport = "tls" }
"""
    error = load_error(write_config(text))
    assert error.line == 4
    assert error.reason == "tenants[0].trunk.transport: must be 'udp' or 'tcp', not 'tls'"


def test_nested_table_under_array_of_tables_after_other_tables(write_config: WriteConfig) -> None:
    text = """\
[[tenants]]
name = "a"
number_prefixes = ["+1"]
[tenants.pbx]
host = "10.0.0.1"
[tenants.trunk]
host = "10.0.0.2"

[store]
url = "sqlite:///x.db"

[[tenants]]
name = "b"
number_prefixes = ["+2"]
[tenants.pbx]
host = "10.0.0.1"
[tenants.trunk]
host = "10.0.0.3"
port = 0
"""
    error = load_error(write_config(text))
    assert error.line == 19
    assert error.reason == "tenants[1].trunk.port: must be at least 1, not 0"


def test_lines_after_multiline_strings_and_quoted_keys(write_config: WriteConfig) -> None:
    text = VALID.replace(
        "[sip]\n",
        '[sip]\nuser_agent = """callgate\nbuilt "here"\n"""\n"max_message_bytes" = 10\n',
    )
    error = load_error(write_config(text))
    assert error.line == line_with(text, '"max_message_bytes" = 10')
    assert error.reason == "sip.max_message_bytes: must be at least 1024, not 10"


def test_bad_source_points_at_the_array_element(write_config: WriteConfig) -> None:
    text = VALID.replace(
        'host = "127.0.0.3"\n',
        'host = "127.0.0.3"\nsources = [\n  "127.0.0.3",\n  "10.0.0.0/8:99999",\n]\n',
    )
    error = load_error(write_config(text))
    assert error.line == line_with(text, "10.0.0.0/8:99999")
    assert "port must be a number from 1 to 65535" in error.reason


def test_tenants_sharing_a_peer_must_say_which_calls_are_theirs(
    write_config: WriteConfig,
) -> None:
    second = """
[[tenants]]
name = "globex"
number_prefixes = ["+49"]
pbx = { host = "10.0.0.9" }
trunk = { host = "127.0.0.3" }
"""
    text = VALID + second
    error = load_error(write_config(text))
    assert error.line == line_with(text, "[[tenants]]", occurrence=2)
    assert "share a sender (acme.trunk and globex.trunk)" in error.reason
    assert "tenant 'acme' needs domains or number_prefixes" in error.reason

    fixed = text.replace('name = "acme"', 'name = "acme"\ndomains = ["acme.example"]')
    assert len(load_settings(write_config(fixed), env={}).tenants) == 2


def test_several_problems_are_all_reported_in_file_order(write_config: WriteConfig) -> None:
    text = VALID.replace("port_max = 20999", "port_max = 'x'").replace(
        'log_level = "INFO"', 'log_level = "LOUD"'
    )
    error = load_error(write_config(text))
    lines = [problem.line for problem in error.all()]
    assert lines == [line_with(text, "LOUD"), line_with(text, "port_max = 'x'")]
    assert "must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'" in error.reason


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('name = "acme"', 'name = "Acme Corp"', "must be a slug"),
        ('host = "127.0.0.2"', 'host = "pbx..example"', "neither an IP address nor a host name"),
        ('url = "sqlite+aiosqlite:///var/test.sqlite3"', 'url = "var/x.db"', "not a database URL"),
        ('name = "acme"', 'name = "acme"\ndefault_region = "XX"', "not an ISO 3166 region"),
        ('name = "acme"', 'name = "acme"\nnumber_prefixes = ["+1-415"]', "must be digits"),
        ('host = "127.0.0.1"\nport_min', 'host = "0.0.0.0"\nport_min', "needs advertised_address"),
        ("[sip]", '[sip]\nadvertised_host = "-bad-"', "neither an IP address nor a host name"),
    ],
)
def test_value_checks_name_their_key(
    write_config: WriteConfig, old: str, new: str, words: str
) -> None:
    """The error is on the line ``new`` adds or changes (its last line without ``old``'s text)."""
    text = VALID.replace(old, new, 1)
    changed = next(line for line in reversed(new.splitlines()) if line not in old)
    error = load_error(write_config(text))
    assert words in error.reason
    assert error.line == line_with(text, changed)


def test_strings_are_not_taken_for_numbers(write_config: WriteConfig) -> None:
    text = VALID.replace("port_min = 20000", 'port_min = "20000"')
    error = load_error(write_config(text))
    assert error.reason == "media.port_min: must be a whole number, not '20000'"


def test_ipv6_hosts_are_normalised(write_config: WriteConfig) -> None:
    text = VALID.replace('host = "127.0.0.2"', 'host = "[::1]"')
    settings = load_settings(write_config(text), env={})
    assert settings.tenants[0].pbx.host == "::1"
    assert settings.tenants[0].pbx.matches("::1", 5060)


def test_pbx_and_trunk_of_one_tenant_must_be_told_apart(write_config: WriteConfig) -> None:
    text = VALID.replace('host = "127.0.0.3"', 'host = "127.0.0.2"')
    error = load_error(write_config(text))
    assert error.line == line_with(text, "[tenants.trunk]")
    assert "the PBX and the trunk share a sender address" in error.reason

    ports = text.replace(
        '[tenants.pbx]\nhost = "127.0.0.2"',
        '[tenants.pbx]\nhost = "127.0.0.2"\nsources = ["127.0.0.2:5070"]',
    ).replace(
        '[tenants.trunk]\nhost = "127.0.0.2"',
        '[tenants.trunk]\nhost = "127.0.0.2"\nsources = ["127.0.0.2:5080"]',
    )
    tenant = load_settings(write_config(ports), env={}).tenants[0]
    assert tenant.pbx.matches("127.0.0.2", 5070) and not tenant.trunk.matches("127.0.0.2", 5070)
