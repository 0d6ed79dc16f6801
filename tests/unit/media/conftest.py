"""Media tests run on both event loops the gateway supports: asyncio's and uvloop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from gateway.media import fastpath
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
    "fast-path": {},
    "flow-sockets": {"fastpath": False},
    "first-socket-only": {"flow_sockets": False},
}
"""The relay's per-packet paths: latched flows served by the native forwarder (the
default), latched flows relayed in Python, every packet on the first socket."""


def require_native_forwarder() -> None:
    """Fail in CI, skip with the remedy elsewhere, when the native forwarder is not built:
    a relay asked for it would quietly relay in Python instead."""
    if fastpath.available():
        return
    message = (
        f"{fastpath.UNAVAILABLE_REASON}: `pip install -e .` builds it where a C compiler "
        "and the Python headers are installed"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=list(RELAY_PATHS))
async def relay(request: pytest.FixtureRequest) -> AsyncIterator[MediaRelay]:
    """The relay on each of its per-packet paths."""
    if request.param == "fast-path":
        require_native_forwarder()
    media_relay = MediaRelay(
        "127.0.0.1", TEST_PORT_MIN, TEST_PORT_MAX, **RELAY_PATHS[request.param]
    )
    yield media_relay
    await media_relay.close()


@pytest.fixture(params=["fast-path", "python"])
async def flow_relay(request: pytest.FixtureRequest) -> AsyncIterator[MediaRelay]:
    """Flow sockets (the default), served by the native forwarder or relayed in Python."""
    if request.param == "fast-path":
        require_native_forwarder()
    media_relay = MediaRelay(
        "127.0.0.1", TEST_PORT_MIN, TEST_PORT_MAX, fastpath=request.param == "fast-path"
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
