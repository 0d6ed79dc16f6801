"""Settings for recording and consent: [recording], [consent] and [tenants.consent]."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import (
    DEFAULT_CONFIG_PATH,
    SHIPPED_NOTICES_DIR,
    BeepSettings,
    ConfigError,
    ConsentSettings,
    DigitSettings,
    NoticeFiles,
    RecordingSettings,
    RuleOverride,
    Settings,
    TenantConsentSettings,
    load_settings,
)
from gateway.consent.rules import DEFAULT_RULES_PATH
from tests.unit.config.samples import VALID, line_with

WriteConfig = Callable[[str], Path]

RULES = """\
[groups]
EU = ["FR", "DE", "AT"]

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

[rules.EU]
mode = "notice"
parties = "all"
confidence = "S"
source = "GDPR"
"""


def load_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    return caught.value


def with_consent(block: str) -> str:
    """VALID with ``block`` written under the tenant's [tenants.consent] table."""
    return VALID + "\n[tenants.consent]\n" + block


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return path


# -- defaults ------------------------------------------------------------------


def test_defaults_when_nothing_is_written(write_config: WriteConfig) -> None:
    settings = load_settings(write_config(VALID), env={})
    assert settings.recording.dir == "var/recordings"
    assert settings.recording.path == Path("var/recordings")
    assert settings.recording.latency_s == 0.5
    assert settings.consent.rules_file is None
    assert settings.consent_rules().path == DEFAULT_RULES_PATH
    assert settings.consent_rules().data == DEFAULT_RULES_PATH.read_bytes()
    consent = settings.tenants[0].consent
    assert consent.home is None
    assert settings.tenants[0].home == "US"
    assert (consent.notice_timing, consent.consent_timeout_s, consent.on_timeout) == (
        "answer",
        15.0,
        "continue",
    )
    assert (consent.minimum_mode, consent.minimum_parties) == ("notice", "one")
    assert consent.default_language == "en"
    assert consent.overrides == {} and consent.languages == {} and consent.notices == {}
    assert consent.digits.keys() == {
        "consent": "1",
        "decline": "9",
        "withdraw": "7",
        "pause": "*",
        "resume": "#",
    }
    assert (consent.beep.interval_s, consent.beep.frequency_hz, consent.beep.duration_ms) == (
        0,
        1400,
        200,
    )
    assert not consent.beep.enabled


def test_settings_built_in_code_have_the_same_defaults() -> None:
    settings = Settings()
    assert settings.recording == RecordingSettings()
    assert settings.config_dir is None
    assert settings.consent_rules().path == DEFAULT_RULES_PATH
    assert TenantConsentSettings().notice_files(None)["en"] == {
        kind: SHIPPED_NOTICES_DIR / "en" / f"{kind}.wav" for kind in ("notice", "opt_out", "opt_in")
    }


def test_home_defaults_to_default_region_and_can_be_set(write_config: WriteConfig) -> None:
    text = VALID.replace('name = "acme"', 'name = "acme"\ndefault_region = "DE"')
    assert load_settings(write_config(text), env={}).tenants[0].home == "DE"
    text = with_consent('home = "US-NY"\n')
    assert load_settings(write_config(text), env={}).tenants[0].home == "US-NY"


def test_shipped_notices_exist_for_english_and_german() -> None:
    for language in ("en", "de"):
        for kind in ("notice", "opt_out", "opt_in"):
            assert (SHIPPED_NOTICES_DIR / language / f"{kind}.wav").is_file()


# -- the embedded default file ------------------------------------------------------


def test_default_config_sets_the_example_home_and_loads() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH, env={})
    example = settings.tenant_named("example")
    assert example.consent.home == "US-NY"
    assert example.consent.model_fields_set == {"home"}


def test_default_config_documents_every_consent_and_recording_key() -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    models: list[type[BaseModel]] = [
        RecordingSettings,
        ConsentSettings,
        TenantConsentSettings,
        RuleOverride,
        DigitSettings,
        NoticeFiles,
        BeepSettings,
    ]
    missing = [
        f"{model.__name__}.{key}"
        for model in models
        for key in model.model_fields
        if not re.search(rf"(^|[\s#{{,.\[]){key}(\s*=|\]|\.[a-z]+\])", text, re.MULTILINE)
    ]
    assert missing == []
    for table in ("[recording]", "[consent]", "[tenants.consent]"):
        assert table in text
    for table in ("overrides", "digits", "languages", "notices.en", "beep"):
        assert f"# [tenants.consent.{table}]" in text


def test_commented_consent_defaults_are_the_defaults(write_config: WriteConfig) -> None:
    """Uncommenting every ``# key = value`` of the example block changes nothing."""
    text = DEFAULT_CONFIG_PATH.read_text()
    start = text.index("[tenants.consent]")
    end = text.index("# A second tenant")
    block = text[start:end]
    uncommented = re.sub(
        r"^# ([a-z_]+ = [^\n]+)$",
        r"\1",
        re.sub(r"^# (\[tenants\.consent\.(digits|notices\.en|beep)\])$", r"\1", block, flags=re.M),
        flags=re.MULTILINE,
    )
    path = write_config(text[:start] + uncommented + text[end:])
    (path.parent / "notices" / "en").mkdir(parents=True)
    for kind in ("notice", "opt_out", "opt_in"):
        (path.parent / "notices" / "en" / f"{kind}.wav").symlink_to(
            SHIPPED_NOTICES_DIR / "en" / f"{kind}.wav"
        )
    written = load_settings(path, env={}).tenant_named("example").consent
    default = load_settings(DEFAULT_CONFIG_PATH, env={}).tenant_named("example").consent
    assert len(written.model_fields_set) > 5
    assert written.notices["en"].notice == "notices/en/notice.wav"
    assert written.model_dump(exclude={"notices"}) == default.model_dump(exclude={"notices"})


# -- [recording] and [consent] ------------------------------------------------------


def test_recording_keys_are_read(write_config: WriteConfig) -> None:
    text = VALID + '\n[recording]\ndir = "/srv/rec"\nlatency_s = 1\n'
    recording = load_settings(write_config(text), env={}).recording
    assert (recording.path, recording.latency_s) == (Path("/srv/rec"), 1.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('dir = ""', "recording.dir: must not be empty, not ''"),
        ("latency_s = -0.1", "recording.latency_s: must be at least 0, not -0.1"),
        ('latency_s = "1"', "recording.latency_s: must be a number, not '1'"),
        ("dri = 'x'", "unknown key 'recording.dri' (did you mean 'dir'?)"),
    ],
)
def test_bad_recording_key_names_its_line(
    write_config: WriteConfig, line: str, reason: str
) -> None:
    text = VALID + f"\n[recording]\n{line}\n"
    error = load_error(write_config(text))
    assert (error.line, error.reason) == (line_with(text, line), reason)


def test_environment_overrides_recording_and_rules_file(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    (tmp_path / "mine.toml").write_text(RULES)
    env = {"CALLGATE_RECORDING__LATENCY_S": "2", "CALLGATE_CONSENT__RULES_FILE": "mine.toml"}
    settings = load_settings(write_config(VALID), env=env)
    assert settings.recording.latency_s == 2.0
    assert settings.consent_rules().path == tmp_path / "mine.toml"


def test_rules_file_is_read_from_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "rules.toml").write_text(RULES)
    config = etc / "gateway.toml"
    config.write_text(VALID + '\n[consent]\nrules_file = "rules.toml"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path("../etc/gateway.toml"), env={})
    loaded = settings.consent_rules()
    assert loaded.path == etc / "rules.toml"
    assert loaded.data == RULES.encode()
    assert set(loaded.rules.rules) == {"unknown", "US", "EU"}
    assert settings.config_dir == etc


def test_missing_rules_file_names_the_key(write_config: WriteConfig, tmp_path: Path) -> None:
    text = VALID + '\n[consent]\nrules_file = "absent.toml"\n'
    error = load_error(write_config(text))
    assert error.line == line_with(text, "rules_file")
    assert error.reason.startswith("consent.rules_file: cannot read the consent rules file ")
    assert str(tmp_path / "absent.toml") in error.reason


def test_bad_rules_file_names_its_own_file_and_line(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    bad = RULES.replace('parties = "one"', 'parties = "some"')
    (tmp_path / "rules.toml").write_text(bad)
    error = load_error(write_config(VALID + '\n[consent]\nrules_file = "rules.toml"\n'))
    assert error.path == str(tmp_path / "rules.toml")
    assert error.line == line_with(bad, 'parties = "some"')
    assert "rules.US.parties must be one of one, all" in error.reason


def test_rules_file_that_is_not_utf8(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_bytes(b"# ok\n# caf\xe9\n")
    error = load_error(write_config(VALID + '\n[consent]\nrules_file = "rules.toml"\n'))
    assert (error.path, error.line) == (str(tmp_path / "rules.toml"), 2)


# -- [tenants.consent]: every check names its line ---------------------------------


@pytest.mark.parametrize(
    ("block", "fragment", "reason"),
    [
        (
            'notice_timing = "late"\n',
            "late",
            "tenants[0].consent.notice_timing: must be 'answer' or 'early', not 'late'",
        ),
        (
            "consent_timeout_s = 0\n",
            "consent_timeout_s",
            "tenants[0].consent.consent_timeout_s: must be greater than 0, not 0",
        ),
        (
            'on_timeout = "drop"\n',
            "drop",
            "tenants[0].consent.on_timeout: must be 'continue' or 'hangup', not 'drop'",
        ),
        (
            'minimum_mode = "strict"\n',
            "strict",
            "tenants[0].consent.minimum_mode: must be 'notice', 'opt_out', 'opt_in' or 'none', "
            "not 'strict'",
        ),
        (
            'minimum_parties = "both"\n',
            "both",
            "tenants[0].consent.minimum_parties: must be 'one' or 'all', not 'both'",
        ),
        (
            'home = "us-ny"\n',
            "us-ny",
            "tenants[0].consent.home: write 'us-ny' as 'US-NY', as the rules file does "
            "(a tenant's home is a country or subdivision)",
        ),
        ('home = "XX"\n', '"XX"', "'XX' is not a country code"),
        ('home = "unknown"\n', "unknown", "'unknown' is not an ISO 3166-1 alpha-2"),
        ('home = "UK"\n', "UK", "the United Kingdom is GB"),
        ('default_language = "English"\n', "English", "'English' is not a language code"),
        ('timing = "early"\n', "timing", "unknown key 'tenants[0].consent.timing'"),
        (
            '[tenants.consent.overrides]\nUS-XX = { mode = "opt_in" }\n',
            "US-XX",
            "tenants[0].consent.overrides.US-XX: 'US-XX': 'XX' is not a subdivision of US "
            "(expected a place code, a group of the rules file or 'unknown')",
        ),
        (
            '[tenants.consent.overrides]\nde = { mode = "opt_in" }\n',
            "de =",
            "write 'de' as 'DE'",
        ),
        (
            "[tenants.consent.overrides]\nUS-CA = {}\n",
            "US-CA",
            "tenants[0].consent.overrides.US-CA: an override needs mode, parties or both",
        ),
        (
            '[tenants.consent.overrides]\nUS-CA = { mode = "never" }\n',
            "never",
            "tenants[0].consent.overrides.US-CA.mode: must be 'notice', 'opt_out', 'opt_in' or "
            "'none', not 'never'",
        ),
        (
            '[tenants.consent.overrides]\nDE = { mdoe = "opt_in" }\n',
            "mdoe",
            "unknown key 'tenants[0].consent.overrides.DE.mdoe' (did you mean 'mode'?)",
        ),
        (
            '[tenants.consent.overrides]\nunknown = { mode = "notice", parties = "one" }\n',
            "unknown =",
            "tenants[0].consent.overrides.unknown: the unknown rule (notice, one) must stay at "
            "least as strict as every rule that captures; US-CA is notice, all",
        ),
        (
            '[tenants.consent.digits]\nconsent = "12"\n',
            'consent = "12"',
            "tenants[0].consent.digits.consent: must be one DTMF key (0-9, *, #, A-D), not '12'",
        ),
        (
            '[tenants.consent.digits]\nwithdraw = "x"\n',
            '"x"',
            "tenants[0].consent.digits.withdraw: must be one DTMF key (0-9, *, #, A-D), not 'x'",
        ),
        (
            '[tenants.consent.digits]\npause = "1"\n',
            "pause",
            "tenants[0].consent.digits.pause: pause = '1' is the same key as consent: "
            "each key must differ",
        ),
        (
            '[tenants.consent.digits]\nconsent = "9"\n',
            'consent = "9"',
            "tenants[0].consent.digits.consent: consent = '9' is the same key as decline: "
            "each key must differ",
        ),
        (
            '[tenants.consent.languages]\nXX = "de"\n',
            "XX",
            "tenants[0].consent.languages.XX: 'XX' is not a country code with a telephone "
            "numbering plan (a language is chosen by country, subdivision or a group of the "
            "rules file)",
        ),
        (
            '[tenants.consent.languages]\nAT = "German"\n',
            "German",
            "tenants[0].consent.languages.AT: 'German' is not a language code",
        ),
        (
            '[tenants.consent.languages]\nFR = "fr"\n',
            "FR",
            "tenants[0].consent.languages.FR: language 'fr' has no notices: add "
            "[tenants.consent.notices.fr] with notice, opt_out and opt_in",
        ),
        (
            'default_language = "fr"\n',
            "fr",
            "tenants[0].consent.default_language: language 'fr' has no notices",
        ),
        (
            '[tenants.consent.notices.fr]\nnotice = "fr.wav"\n',
            "notices.fr]",
            "tenants[0].consent.notices.fr: needs opt_out, opt_in (only en and de have shipped "
            "recordings)",
        ),
        (
            '[tenants.consent.notices.French]\nnotice = "fr.wav"\n',
            "French",
            "tenants[0].consent.notices.French: 'French' is not a language code",
        ),
        (
            '[tenants.consent.notices.en]\nopt_in = ""\n',
            "opt_in",
            "tenants[0].consent.notices.en.opt_in: must name a file",
        ),
        (
            "[tenants.consent.beep]\ninterval_s = -1\n",
            "interval_s",
            "tenants[0].consent.beep.interval_s: must be at least 0, not -1",
        ),
        (
            "[tenants.consent.beep]\nfrequency_hz = 5000\n",
            "5000",
            "tenants[0].consent.beep.frequency_hz: must be less than 4000, not 5000",
        ),
        (
            "[tenants.consent.beep]\nduration_ms = 0\n",
            "duration_ms",
            "tenants[0].consent.beep.duration_ms: must be at least 1, not 0",
        ),
        (
            "[tenants.consent.beep]\ninterval_s = 0.1\n",
            "interval_s",
            "tenants[0].consent.beep.interval_s: duration_ms (200) must be shorter than "
            "interval_s (0.1 s)",
        ),
        (
            "[tenants.consent.beep]\ninterval_s = 15\nduration_ms = 15000\n",
            "duration_ms",
            "tenants[0].consent.beep.duration_ms: duration_ms (15000) must be shorter than "
            "interval_s (15 s)",
        ),
    ],
)
def test_bad_consent_key_names_its_line(
    write_config: WriteConfig, block: str, fragment: str, reason: str
) -> None:
    text = with_consent(block)
    error = load_error(write_config(text))
    assert error.path.endswith("gateway.toml")
    assert error.line == line_with(text, fragment)
    assert reason in error.reason
    assert str(error).startswith(f"{error.path}:{error.line}: ")


def test_error_in_the_second_tenant_points_into_it(write_config: WriteConfig) -> None:
    second = """
[[tenants]]
name = "globex"
number_prefixes = ["+49"]
pbx = { host = "10.0.0.2" }
trunk = { host = "10.0.0.3" }

[tenants.consent]
home = "DE"

[tenants.consent.overrides]
EU = { parties = "one" }
FR = { mode = "opt_ot" }
"""
    text = VALID.replace('name = "acme"', 'name = "acme"\nnumber_prefixes = ["+1"]') + second
    error = load_error(write_config(text))
    assert error.line == line_with(text, "opt_ot")
    assert error.reason.startswith("tenants[1].consent.overrides.FR.mode: must be ")


def test_valid_overrides_languages_and_digits_load(write_config: WriteConfig) -> None:
    text = with_consent(
        'home = "DE"\nminimum_mode = "opt_out"\n'
        "[tenants.consent.overrides]\n"
        'EU = { mode = "opt_in" }\nUS-CA = { parties = "one" }\nunknown = { mode = "none" }\n'
        '[tenants.consent.languages]\nEU = "de"\nUS-CA = "en"\n'
        '[tenants.consent.digits]\nconsent = "a"\ndecline = "#"\nresume = "0"\n'
    )
    consent = load_settings(write_config(text), env={}).tenants[0].consent
    assert consent.overrides["EU"].mode == "opt_in" and consent.overrides["EU"].parties is None
    assert consent.languages == {"EU": "de", "US-CA": "en"}
    assert consent.digits.keys() == {
        "consent": "A",
        "decline": "#",
        "withdraw": "7",
        "pause": "*",
        "resume": "0",
    }


# -- notice files --------------------------------------------------------------------


def test_notice_paths_are_read_from_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    for kind in ("notice", "opt_out", "opt_in"):
        touch(etc / "sounds" / "fr" / f"{kind}.wav")
    touch(tmp_path / "abs.wav")
    config = etc / "gateway.toml"
    config.write_text(
        with_consent(
            '[tenants.consent.languages]\nFR = "fr"\n'
            "[tenants.consent.notices.fr]\n"
            'notice = "sounds/fr/notice.wav"\nopt_out = "sounds/fr/opt_out.wav"\n'
            'opt_in = "sounds/fr/opt_in.wav"\n'
            f'[tenants.consent.notices.en]\nopt_in = "{tmp_path / "abs.wav"}"\n'
        )
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("etc/gateway.toml"), env={})
    files = settings.tenants[0].consent.notice_files(settings.config_dir)
    assert files["fr"] == {kind: etc / "sounds" / "fr" / f"{kind}.wav" for kind in files["fr"]}
    assert files["en"] == {
        "notice": SHIPPED_NOTICES_DIR / "en" / "notice.wav",
        "opt_out": SHIPPED_NOTICES_DIR / "en" / "opt_out.wav",
        "opt_in": tmp_path / "abs.wav",
    }


def test_missing_notice_file_names_its_line(write_config: WriteConfig, tmp_path: Path) -> None:
    touch(tmp_path / "fr" / "notice.wav")
    touch(tmp_path / "fr" / "opt_in.wav")
    text = with_consent(
        'default_language = "fr"\n'
        "[tenants.consent.notices.fr]\n"
        'notice = "fr/notice.wav"\nopt_out = "fr/opt_out.wav"\nopt_in = "fr/opt_in.wav"\n'
    )
    error = load_error(write_config(text))
    assert error.line == line_with(text, "opt_out = ")
    assert error.reason == (
        f"tenants[0].consent.notices.fr.opt_out: no such file {str(tmp_path / 'fr/opt_out.wav')!r}"
    )
    touch(tmp_path / "fr" / "opt_out.wav")
    assert load_settings(write_config(text), env={}).tenants[0].consent.default_language == "fr"


def test_unused_configured_notice_must_exist_too(write_config: WriteConfig) -> None:
    text = with_consent('[tenants.consent.notices.de]\nnotice = "nowhere.wav"\n')
    error = load_error(write_config(text))
    assert error.line == line_with(text, "nowhere.wav")
    assert "no such file" in error.reason


def test_settings_built_in_code_do_not_touch_the_file_system() -> None:
    consent = TenantConsentSettings(notices={"de": NoticeFiles(notice="nowhere.wav")})
    assert consent.notice_files(Path("/base"))["en"]["notice"] == (
        SHIPPED_NOTICES_DIR / "en" / "notice.wav"
    )
    assert TenantConsentSettings(default_language="de").notice_files(Path("/x"))["de"][
        "notice"
    ] == (SHIPPED_NOTICES_DIR / "de" / "notice.wav")
