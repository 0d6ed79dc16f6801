"""Media tests run on both event loops the gateway supports: asyncio's and uvloop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from gateway.media import fastpath, kernel
from gateway.media.relay import MediaRelay
from tests.unit.media.udp_phone import Phone

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None

TEST_PORT_MIN = 24000
TEST_PORT_MAX = 24399


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


RELAY_PATHS = {
    "kernel": {"kernel_forwarding": "on", "kernel_interfaces": ("lo",)},
    "fast-path": {},
    "flow-sockets": {"fastpath": False},
    "first-socket-only": {"flow_sockets": False},
}
"""The relay's per-packet paths: latched flows served by the kernel forwarder (with the
native forwarder behind it), by the native forwarder (the library's default), latched
flows relayed in Python, every packet on the first socket."""


def missing_in_ci_fails(message: str) -> None:
    """What a test needs is missing: a failure in CI, a skip that says why elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_native_forwarder() -> None:
    """Fail in CI, skip with the remedy elsewhere, when the native forwarder is not built:
    a relay asked for it would quietly relay in Python instead."""
    if not fastpath.available():
        missing_in_ci_fails(
            f"{fastpath.UNAVAILABLE_REASON}: `pip install -e .` builds it where a C compiler "
            "and the Python headers are installed"
        )


def require_kernel_forwarder() -> None:
    """Fail in CI, skip with the remedy elsewhere, when the kernel forwarder cannot run
    here (not built, no privileges, a kernel before 6.6)."""
    require_native_forwarder()
    reason = kernel.unavailable_reason()
    if reason is not None:
        missing_in_ci_fails(
            f"{reason}: build it with clang and libbpf-dev installed (`make deps` installs "
            "them), and run the tests as root or with CAP_BPF and CAP_NET_ADMIN"
        )


def require_path(path: str) -> None:
    """What a relay path needs, checked before a relay on it is made."""
    if path == "kernel":
        require_kernel_forwarder()
    elif path == "fast-path":
        require_native_forwarder()


@pytest.fixture(params=list(RELAY_PATHS))
async def relay(request: pytest.FixtureRequest) -> AsyncIterator[MediaRelay]:
    """The relay on each of its per-packet paths."""
    require_path(request.param)
    media_relay = MediaRelay(
        "127.0.0.1", TEST_PORT_MIN, TEST_PORT_MAX, **RELAY_PATHS[request.param]
    )
    yield media_relay
    await media_relay.close()


@pytest.fixture(params=["kernel", "fast-path", "python"])
async def flow_relay(request: pytest.FixtureRequest) -> AsyncIterator[MediaRelay]:
    """Flow sockets (the default), served by the kernel forwarder, by the native forwarder,
    or relayed in Python."""
    require_path(request.param)
    media_relay = MediaRelay(
        "127.0.0.1",
        TEST_PORT_MIN,
        TEST_PORT_MAX,
        fastpath=request.param != "python",
        kernel_forwarding="on" if request.param == "kernel" else "off",
        kernel_interfaces=("lo",),
    )
    yield media_relay
    await media_relay.close()


@pytest.fixture
def phones() -> Iterator[Callable[..., Phone]]:
    """Factory of UDP phones on loopback, all closed after the test."""
    made: list[Phone] = []

    def make(host: str = "127.0.0.1") -> Phone:
        phone = Phone(host)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()
