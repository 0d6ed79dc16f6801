"""The callgate command line: check-config, calls, exit codes and messages."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main, write_table
from gateway.config import DEFAULT_CONFIG_PATH
from gateway.store.engine import make_engine, migrate
from gateway.store.writer import CallEnd, CallStart, RecordWriter
from tests.unit.config.samples import VALID, line_with

WriteConfig = Callable[[str], Path]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLGATE_"):
            monkeypatch.delenv(name)


def test_check_config_summarises_a_valid_file(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(VALID)
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"ok: {path}: 1 tenant, SIP udp 127.0.0.1:5060, tcp 127.0.0.1:5060, "
        "media 127.0.0.1 ports 20000-20999, store sqlite+aiosqlite:///var/test.sqlite3",
        "  tenant acme: pbx udp 127.0.0.2:5060, trunk udp 127.0.0.3:5060",
    ]
    assert err == ""


def test_check_config_defaults_to_the_embedded_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {DEFAULT_CONFIG_PATH}: 1 tenant, SIP udp ")


def test_check_config_hides_the_database_password(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace(
        'url = "sqlite+aiosqlite:///var/test.sqlite3"',
        'url = "postgresql+asyncpg://callgate:s3cret@db.example/callgate"',
    )
    assert main(["check-config", "--config", str(write_config(text))]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "store postgresql+asyncpg://callgate:***@db.example/callgate" in out


def test_check_config_reports_file_line_and_reason(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace("port_min = 20000", "port_min = 20001")
    path = write_config(text)
    assert main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = line_with(text, "port_min = 20001")
    assert err.startswith(f"callgate: {path}:{line}: media.port_min: port_min (20001) must be even")


def test_check_config_prints_every_problem(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace('log_level = "INFO"', "log_level = 3").replace("port_max = 20999", "")
    text = text.replace('host = "127.0.0.3"', 'host = "127.0.0.3"\nweight = 1')
    assert main(["check-config", "--config", str(write_config(text))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].endswith(
        "log_level: must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', not 3"
    )
    assert err[1].endswith("unknown key 'tenants[0].trunk.weight'")


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.startswith(f"callgate: {tmp_path / 'nope.toml'}: cannot read")


def test_run_with_a_bad_config_exits_2_before_starting(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("[sip\n")
    assert main(["run", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"callgate: {path}:1: TOML syntax error")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["calls", "--limit", "0"]) == 2
    assert "usage: callgate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("callgate ")


# -- calls -----------------------------------------------------------------------


T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


async def _write_calls(url: str) -> None:
    engine = make_engine(url)
    await migrate(engine)
    writer = RecordWriter(engine, batch_size=10, max_delay=0)
    await writer.start()
    for number, (tenant, direction, seconds, mode, outcome) in enumerate(
        [
            ("acme", "outbound", 65, "notice", "granted"),
            ("acme", "inbound", 3725, None, None),
            ("globex", "outbound", 5, "opt_in", "declined"),
        ]
    ):
        record_id = f"rec-{number}"
        started = T0 + timedelta(minutes=number)
        writer.submit(
            CallStart(
                record_id=record_id,
                tenant=tenant,
                call_id=f"{record_id}@pbx.example",
                direction=direction,
                source_number="+14155550100",
                source_uri="sip:+14155550100@pbx.example",
                destination_number=None,
                destination_uri="sip:bob@trunk.example",
                source_addr="127.0.0.2:5060",
                started_at=started,
                gateway_instance="gw-test",
                consent_mode=mode,
                consent_parties=None if mode is None else "all",
            )
        )
        writer.submit(
            CallEnd(
                record_id=record_id,
                ended_at=started + timedelta(seconds=seconds),
                answered_at=started,
                disposition="answered",
                final_status=200,
                hangup_by="callee",
                consent_outcome=outcome,
            )
        )
    await writer.stop()
    await engine.dispose()


@pytest.fixture
def store_config(write_config: WriteConfig, tmp_path: Path) -> Path:
    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"
    return write_config(VALID.replace("sqlite+aiosqlite:///var/test.sqlite3", url))


def test_calls_on_an_empty_store(store_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calls", "--config", str(store_config)]) == 0
    assert capsys.readouterr().out == "no call records\n"


async def test_calls_table_newest_first(store_config: Path, tmp_path: Path) -> None:
    await _write_calls(f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "calls", "--config", str(store_config), "--limit", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "started", "tenant", "direction", "from", "to",
        "duration", "disposition", "status", "hangup_by", "consent",
    ]  # fmt: skip
    assert lines[1].split() == [
        "2026-03-01", "12:02:00", "globex", "outbound", "+14155550100",
        "sip:bob@trunk.example", "0:05", "answered", "200", "callee", "declined",
    ]  # fmt: skip
    assert lines[2].split()[2:4] == ["acme", "inbound"]
    assert lines[2].split()[6] == "1:02:05"
    assert lines[2].split()[-1] == "-"
    assert lines[0].index("consent") == lines[1].index("declined") == lines[2].rindex("-")
    assert len(lines) == 3
    assert lines[0].index("tenant") == lines[1].index("globex") == lines[2].index("acme")


async def test_calls_json_lines_for_one_tenant(store_config: Path, tmp_path: Path) -> None:
    await _write_calls(f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "calls", "--config", str(store_config), "--json",
         "--tenant", "acme"],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["rec-1", "rec-0"]
    assert {row["tenant"] for row in rows} == {"acme"}
    assert rows[1]["duration_s"] == 65
    assert rows[1]["gateway_instance"] == "gw-test"
    assert (rows[1]["consent_mode"], rows[1]["consent_outcome"]) == ("notice", "granted")
    assert rows[1]["consent_parties"] == "all"
    assert (rows[0]["consent_mode"], rows[0]["consent_outcome"]) == (None, None)


def test_calls_reports_an_unreachable_store(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace(
        "sqlite+aiosqlite:///var/test.sqlite3", "postgresql+asyncpg://nobody@127.0.0.1:9/none"
    )
    assert main(["calls", "--config", str(write_config(text))]) == 1
    assert capsys.readouterr().err.startswith("callgate: cannot read call records: ")


def test_table_of_a_call_still_in_progress() -> None:
    row = {
        "started_at": "2026-03-01T13:00:00+01:00",
        "tenant": "acme",
        "direction": "inbound",
        "source_number": None,
        "source_uri": "sip:anonymous@anonymous.invalid",
        "destination_number": "+14155550100",
        "destination_uri": "sip:+14155550100@pbx.example",
        "ended_at": None,
        "duration_s": None,
        "disposition": None,
        "final_status": None,
        "hangup_by": None,
    }
    out = io.StringIO()
    write_table([row], out)
    assert out.getvalue().splitlines()[1].split() == [
        "2026-03-01", "12:00:00", "acme", "inbound", "sip:anonymous@anonymous.invalid",
        "+14155550100", "up", "in", "progress", "-", "-", "-",
    ]  # fmt: skip


# -- the installed console script --------------------------------------------------


def console_script() -> Path:
    script = Path(sys.executable).with_name("callgate")
    assert script.exists(), f"{script} is missing: install the project (pip install -e .)"
    return script


def test_console_script_check_config_ok() -> None:
    result = subprocess.run(
        [str(console_script()), "check-config"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {DEFAULT_CONFIG_PATH}: 1 tenant")


def test_console_script_check_config_error(write_config: WriteConfig) -> None:
    text = VALID.replace('[tenants.pbx]\nhost = "127.0.0.2"', "[tenants.pbx]\nhost = 127")
    path = write_config(text)
    result = subprocess.run(
        [str(console_script()), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    line = line_with(text, "host = 127")
    assert result.stderr == (
        f"callgate: {path}:{line}: tenants[0].pbx.host: must be a string (in quotes), not 127\n"
    )


def test_console_script_takes_the_file_from_the_environment(write_config: WriteConfig) -> None:
    path = write_config(VALID.replace("port_max = 20999", "port_max = 20000"))
    result = subprocess.run(
        [str(console_script()), "check-config"],
        capture_output=True,
        text=True,
        env={**os.environ, "CALLGATE_CONFIG": str(path)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"callgate: {path}:")
    assert "port_max (20000) must be above port_min (20000)" in result.stderr


def test_run_exits_1_when_the_sip_port_is_taken(write_config: WriteConfig, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        text = VALID.replace("port = 5060 }", f"port = {port} }}").replace(
            "sqlite+aiosqlite:///var/test.sqlite3", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
        )
        result = subprocess.run(
            [str(console_script()), "run", "--config", str(write_config(text))],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert "ERROR gateway.cli: gateway failed: " in result.stderr
    assert str(port) in result.stderr
