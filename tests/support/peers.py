"""pytest fixtures for real SIP peers: sipp callers/callees and the baresip softphone.

Registered from ``tests/conftest.py`` (``pytest_plugins``). A missing binary fails
the test in CI and skips it elsewhere with the install hint.

- ``sipp_bin`` / ``baresip_bin``: paths of the binaries (session scope).
- ``sipp_factory(scenario, **options)``: starts a :class:`~tests.support.sipp.SippProcess`
  (options are :class:`~tests.support.sipp.SippScenario` fields); every peer is stopped
  at teardown and, when the test failed, its report is attached to the test's output.
- ``baresip_factory(listen_ip, **options)``: starts a :class:`~tests.support.baresip.Baresip`.
- ``loopback_ports``: free ports on loopback addresses, never the same one twice in a test.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.baresip import Baresip, find_baresip, start_baresip
from tests.support.sipp import (
    SippProcess,
    SippScenario,
    find_sipp,
    free_media_port,
    free_port,
)

SippFactory = Callable[..., SippProcess]
BaresipFactory = Callable[..., Baresip]


class LoopbackPorts:
    """Hands out free ports per loopback address, each at most once per test."""

    def __init__(self) -> None:
        self._given: set[tuple[str, int]] = set()

    def _fresh(self, host: str, pick: Callable[[], int], width: int = 1) -> int:
        for _ in range(100):
            port = pick()
            wanted = {(host, port + offset) for offset in range(width)}
            if not wanted & self._given:
                self._given |= wanted
                return port
        raise RuntimeError(f"no fresh port on {host}")

    def udp(self, host: str) -> int:
        return self._fresh(host, lambda: free_port(host, "udp"))

    def tcp(self, host: str) -> int:
        return self._fresh(host, lambda: free_port(host, "tcp"))

    def sip(self, host: str) -> int:
        """A port free for both UDP and TCP (a SIP listener serves both)."""
        return self._fresh(host, lambda: free_port(host, "both"))

    def media(self, host: str, span: int = 6) -> int:
        """An even port P with P .. P+span-1 free for UDP."""
        return self._fresh(host, lambda: free_media_port(host, span), width=span)

    def bound_udp(self, host: str) -> socket.socket:
        """A UDP socket already bound to a fresh port (no window for others to take it)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        self._given.add((host, sock.getsockname()[1]))
        return sock


@pytest.fixture(scope="session")
def sipp_bin() -> str:
    return find_sipp()


@pytest.fixture(scope="session")
def baresip_bin() -> str:
    return find_baresip()


@pytest.fixture
def loopback_ports() -> LoopbackPorts:
    return LoopbackPorts()


@pytest.fixture
def sipp_factory(
    sipp_bin: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[SippFactory]:
    started: list[SippProcess] = []

    def start(scenario: str | Path, **options: Any) -> SippProcess:
        spec = SippScenario(scenario=scenario, **options)
        peer = spec.start(tmp_path / "sipp", sipp_bin)
        started.append(peer)
        return peer

    yield start

    reports: list[str] = []
    for peer in reversed(started):
        outcome = peer.close()
        reports.append(outcome.describe())
    if _test_failed(request) and reports:
        request.node.add_report_section("teardown", "sipp peers", "\n\n".join(reversed(reports)))


@pytest.fixture
def baresip_factory(
    baresip_bin: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BaresipFactory]:
    started: list[Baresip] = []

    def start(listen_ip: str, **options: Any) -> Baresip:
        name = options.pop("name", f"baresip-{len(started) + 1}")
        phone = start_baresip(tmp_path / name, listen_ip, binary=baresip_bin, **options)
        started.append(phone)
        return phone

    yield start

    for phone in reversed(started):
        phone.stop()
    if _test_failed(request) and started:
        logs = "\n\n".join(f"{phone.workdir.name}:\n{phone.log_tail()}" for phone in started)
        request.node.add_report_section("teardown", "baresip", logs)


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return bool(getattr(request.node, "_peers_call_failed", False))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember whether the test body failed, so peer fixtures can attach their reports."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item._peers_call_failed = report.failed  # type: ignore[attr-defined]
