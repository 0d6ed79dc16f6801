"""The deployment files: Kamailio dispatcher, systemd unit, container and compose files.

Kamailio and systemd-analyze check their own files here; where a tool is
missing the test is skipped on a workstation and fails in CI
(scripts/install-test-deps.sh installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
KAMAILIO_CFG = DEPLOY / "kamailio" / "kamailio.cfg"
DISPATCHER_LIST = DEPLOY / "kamailio" / "dispatcher.list"
UNIT = DEPLOY / "callgate.service"
COMPOSE = DEPLOY / "compose.yaml"


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )
    if path is None:
        message = (
            f"{name} is not installed (Debian package {package}; scripts/install-test-deps.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_kamailio_accepts_the_dispatcher_config() -> None:
    kamailio = require_tool("kamailio", "kamailio")
    result = subprocess.run(
        [kamailio, "-c", "-f", str(KAMAILIO_CFG), "-A", f'DISPATCHER_LIST="{DISPATCHER_LIST}"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "config file ok" in output


def test_kamailio_check_fails_on_a_broken_config(tmp_path: Path) -> None:
    """The syntax check above can fail: an unknown function is refused."""
    kamailio = require_tool("kamailio", "kamailio")
    broken = tmp_path / "kamailio.cfg"
    broken.write_text(KAMAILIO_CFG.read_text().replace("ds_next_dst()", "ds_next_dest()"))
    result = subprocess.run(
        [kamailio, "-c", "-f", str(broken)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0


def test_dispatcher_probes_and_fails_over() -> None:
    config = KAMAILIO_CFG.read_text()
    for setting in (
        '"ds_ping_interval", 10',
        '"ds_probing_mode", 1',
        '"ds_ping_method", "OPTIONS"',
    ):
        assert f'modparam("dispatcher", {setting})' in config
    assert "record_route();" in config
    assert "ds_next_dst()" in config and 't_on_failure("GATEWAY_FAILED")' in config


def compose_gateway_ports() -> set[int]:
    ports = set()
    for line in COMPOSE.read_text().splitlines():
        if "CALLGATE_SIP__LISTEN:" in line:
            ports.update(int(p) for p in re.findall(r"port = (\d+)", line))
    return ports


def test_dispatcher_list_names_the_compose_gateways() -> None:
    entries = [
        line.split()
        for line in DISPATCHER_LIST.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert entries, "no gateways in dispatcher.list"
    ports = set()
    for fields in entries:
        setid, uri, flags, priority = fields[:4]
        assert (setid, flags, priority) == ("1", "0", "0")
        match = re.fullmatch(r"sip:(127\.0\.0\.1):(\d+);transport=udp", uri)
        assert match, uri
        ports.add(int(match[2]))
    assert ports == compose_gateway_ports()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    script = Path(sys.executable).with_name("callgate")
    unit = tmp_path / "callgate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/callgate", str(script)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_the_kernel_forwarding_drop_in_verifies_with_the_unit(tmp_path: Path) -> None:
    """deploy/kernel-forwarding.conf, installed as a drop-in of the unit, parses and grants
    what the kernel forwarder needs (test_kernel_forwarder.py shows those capabilities are
    enough)."""
    analyze = require_tool("systemd-analyze", "systemd")
    script = Path(sys.executable).with_name("callgate")
    unit = tmp_path / "callgate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/callgate", str(script)))
    drop_in = DEPLOY / "kernel-forwarding.conf"
    (tmp_path / "callgate.service.d").mkdir()
    (tmp_path / "callgate.service.d" / drop_in.name).write_text(drop_in.read_text())
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    settings = dict(
        line.split("=", 1)
        for line in drop_in.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert set(settings["AmbientCapabilities"].split()) == {"CAP_BPF", "CAP_NET_ADMIN"}
    assert settings["CapabilityBoundingSet"] == settings["AmbientCapabilities"]
    assert "bpf" in settings["SystemCallFilter"].split()
    assert "AF_NETLINK" in settings["RestrictAddressFamilies"].split()


def unit_setting(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert match, f"{name} missing from {UNIT.name}"
    return match[1].strip()


def test_stop_timeouts_leave_room_for_the_drain() -> None:
    drain = load_settings(env={}).drain_timeout_s
    assert unit_setting("KillSignal") == "SIGTERM"
    assert float(unit_setting("TimeoutStopSec")) > drain
    grace = re.findall(r"stop_grace_period: (\d+)s", COMPOSE.read_text())
    assert grace and all(float(value) > drain for value in grace)
    assert "run --config /etc/callgate/gateway.toml" in unit_setting("ExecStart")


def test_container_exposes_sip_and_the_default_media_range() -> None:
    media = load_settings(env={}).media
    exposed = re.search(r"^EXPOSE (.*)$", (DEPLOY / "Containerfile").read_text(), re.MULTILINE)
    assert exposed
    assert set(exposed[1].split()) == {
        "5060/udp",
        "5060/tcp",
        f"{media.port_min}-{media.port_max}/udp",
    }
