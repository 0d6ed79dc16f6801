"""Environment overrides: CALLGATE_<SECTION>__<KEY> and CALLGATE_<KEY>."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG_PATH, ConfigError, config_path, load_settings
from tests.unit.config.samples import VALID, line_with

WriteConfig = Callable[[str], Path]


def test_scalar_overrides_replace_file_values(write_config: WriteConfig) -> None:
    env = {
        "CALLGATE_STORE__URL": "postgresql+asyncpg://callgate@db.example/callgate",
        "CALLGATE_MEDIA__PORT_MIN": "30000",
        "CALLGATE_MEDIA__PORT_MAX": "30999",
        "CALLGATE_MEDIA__TIMEOUT_S": "12.5",
        "CALLGATE_INSTANCE_ID": "gw-7",
        "CALLGATE_LOG_LEVEL": "debug",
        "CALLGATE_SIP__ADVERTISED_HOST": "203.0.113.10",
    }
    settings = load_settings(write_config(VALID), env=env)
    assert settings.store.url == "postgresql+asyncpg://callgate@db.example/callgate"
    assert (settings.media.port_min, settings.media.port_max) == (30000, 30999)
    assert settings.media.timeout_s == 12.5
    assert settings.instance_id == "gw-7"
    assert settings.log_level == "DEBUG"
    assert settings.sip.advertised_host == "203.0.113.10"


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("TRUE", True), (" true ", True)])
def test_boolean_overrides_are_read_as_toml_writes_them(
    write_config: WriteConfig, raw: str, value: bool
) -> None:
    settings = load_settings(write_config(VALID), env={"CALLGATE_MEDIA__FLOW_SOCKETS": raw})
    assert settings.media.flow_sockets is value


def test_a_boolean_override_that_is_not_one_names_the_variable(
    write_config: WriteConfig,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(VALID), env={"CALLGATE_MEDIA__FLOW_SOCKETS": "yes"})
    assert str(caught.value) == (
        "CALLGATE_MEDIA__FLOW_SOCKETS: media.flow_sockets: must be true or false, not 'yes'"
    )


def test_override_of_a_section_absent_from_the_file(write_config: WriteConfig) -> None:
    settings = load_settings(write_config('instance_id = "x"\n'), env={"CALLGATE_SIP__T1_S": "0.2"})
    assert settings.sip.t1_s == 0.2


def test_list_override_is_read_as_a_toml_value(write_config: WriteConfig) -> None:
    env = {
        "CALLGATE_SIP__LISTEN": '[{ transport = "tcp", host = "0.0.0.0", port = 5071 }]',
        "CALLGATE_SIP__ADVERTISED_HOST": "192.0.2.1",
    }
    settings = load_settings(write_config(VALID), env=env)
    assert [(i.transport, i.host, i.port) for i in settings.sip.listen] == [
        ("tcp", "0.0.0.0", 5071)
    ]


def test_list_override_that_is_not_toml(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(VALID), env={"CALLGATE_SIP__LISTEN": "udp:0.0.0.0:5060"})
    assert caught.value.path == "CALLGATE_SIP__LISTEN"
    assert caught.value.reason.startswith("not a TOML value")


def test_bad_override_names_the_variable(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(VALID), env={"CALLGATE_MEDIA__PORT_MIN": "lots"})
    assert (
        str(caught.value)
        == "CALLGATE_MEDIA__PORT_MIN: media.port_min: must be a whole number, not 'lots'"
    )


def test_override_that_breaks_a_table_rule_points_at_the_file_and_the_variable(
    write_config: WriteConfig,
) -> None:
    path = write_config(VALID)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"CALLGATE_MEDIA__PORT_MIN": "40000"})
    error = caught.value
    assert (error.path, error.line) == (str(path), line_with(VALID, "port_max"))
    assert "must be above port_min (40000)" in error.reason
    assert "CALLGATE_MEDIA__PORT_MIN=40000 from the environment" in error.reason


def test_unknown_override_key_is_an_error(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(VALID), env={"CALLGATE_STORE__URI": "sqlite:///x"})
    assert caught.value.path == "CALLGATE_STORE__URI"
    assert caught.value.reason == "unknown key 'store.uri' (did you mean 'url'?)"


def test_single_underscore_between_section_and_key_is_caught(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"did you mean CALLGATE_STORE__URL\?"):
        load_settings(write_config(VALID), env={"CALLGATE_STORE_URL": "sqlite:///x"})


def test_unrelated_callgate_variables_are_ignored(write_config: WriteConfig) -> None:
    env = {"CALLGATE_TEST_POSTGRES_DSN": "postgresql://x", "CALLGATE_CONFIG": "/nonexistent"}
    settings = load_settings(write_config(VALID), env=env)
    assert settings.instance_id == "gw-test"


def test_config_file_from_environment(write_config: WriteConfig) -> None:
    path = write_config(VALID)
    assert config_path(None, {"CALLGATE_CONFIG": str(path)}) == path
    assert load_settings(env={"CALLGATE_CONFIG": str(path)}).instance_id == "gw-test"
    assert config_path(None, {}) == DEFAULT_CONFIG_PATH
    assert config_path("other.toml", {"CALLGATE_CONFIG": str(path)}) == Path("other.toml")
