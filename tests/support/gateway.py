"""Runs the real gateway (`callgate run`) as a subprocess for integration tests.

The gateway listens on 127.0.0.1; the example tenant's PBX is 127.0.0.2 and
its trunk 127.0.0.3 (distinct loopback addresses, so the sending peer tells
the side), each on a free port. Records are read back through the store's
own queries.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.store.engine import make_engine
from gateway.store.queries import latest_calls
from tests.support.databases import create_database, drop_database, require_postgres
from tests.support.sipp import _can_bind

GATEWAY_HOST = "127.0.0.1"
PBX_HOST = "127.0.0.2"
TRUNK_HOST = "127.0.0.3"


def _bindable(host: str, port: int) -> bool:
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    if ":" in host:
        return all(_can_bind_ipv6(host, port, kind) for kind in kinds)
    return all(_can_bind(host, port, kind) for kind in kinds)


def _can_bind_ipv6(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET6, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, *also: str, taken: Collection[int] = ()) -> int:
    """A port free for UDP and TCP on ``host`` (and every host in ``also``), below the
    kernel's ephemeral range, and not one of ``taken``.

    Ports from bind(0) come from the ephemeral range, where any client socket
    (sipp's, the database driver's) may take them before the gateway binds;
    18000-19999 is out of that range and of the media blocks below. ``taken``
    holds ports already promised to the same gateway but not bound yet, which a
    probe cannot see.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(18000, 20000)
        if port not in taken and all(_bindable(each, port) for each in (host, *also)):
            return port
    raise RuntimeError(f"no free port on {host}")


def media_range(size: int = 400) -> tuple[int, int]:
    """A block of media ports in 10000-17999, clear of sipp's and the kernel's ports."""
    base = random.Random().randrange(10000, 18000 - size) & ~1
    return base, base + size - 1


NO_CAPTURE = 'minimum_mode = "none"\n'
"""A tenant consent policy that never captures: no notices, no consent, no recordings."""


@dataclass(frozen=True)
class TenantPeers:
    """One more tenant for :func:`write_config`: its PBX and trunk (host, port)."""

    name: str
    pbx: tuple[str, int]
    trunk: tuple[str, int]
    pbx_transport: str = "udp"
    trunk_transport: str = "udp"
    consent: str = NO_CAPTURE
    default_region: str = "US"

    def toml(self) -> str:
        return f"""
[[tenants]]
name = "{self.name}"
default_region = "{self.default_region}"

[tenants.consent]
{self.consent}
[tenants.pbx]
host = "{self.pbx[0]}"
port = {self.pbx[1]}
transport = "{self.pbx_transport}"

[tenants.trunk]
host = "{self.trunk[0]}"
port = {self.trunk[1]}
transport = "{self.trunk_transport}"
"""


@dataclass
class GatewayProcess:
    """A running `callgate run` and what a test needs to talk to it."""

    config_path: Path
    db_url: str
    sip_port: int
    pbx_port: int
    trunk_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    api_port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, int]:
        return (GATEWAY_HOST, self.sip_port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def problem_lines(self) -> int:
        """Log lines at WARNING or above so far."""
        return sum(
            1
            for line in self.log_text().splitlines()
            if " WARNING " in line or " ERROR " in line or " CRITICAL " in line
        )

    def records(self, limit: int = 50) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            engine = make_engine(self.db_url)
            try:
                return await latest_calls(engine, limit)
            finally:
                await engine.dispose()

        return asyncio.run(fetch())

    def wait_for_records(
        self, count: int, *, since: set[str] | None = None, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` closed records exist that are not in ``since`` (ids)."""
        since = since or set()
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.records(limit=count + len(since) + 20) if r["id"] not in since]
            closed = [r for r in rows if r["ended_at"] is not None]
            if len(closed) >= count:
                return closed
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} closed call records, have {len(closed)} "
                    f"(open: {len(rows) - len(closed)})\n"
                    f"--- gateway log ---\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.1)

    def record_ids(self) -> set[str]:
        return {r["id"] for r in self.records(limit=1000)}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def write_config(
    path: Path,
    *,
    db_url: str,
    sip_port: int,
    pbx_port: int,
    trunk_port: int,
    pbx_transport: str = "udp",
    trunk_transport: str = "udp",
    no_answer_timeout_s: float = 60.0,
    media_timeout_s: float = 60.0,
    drain_timeout_s: float = 5.0,
    instance_id: str | None = None,
    extra_listen_hosts: Sequence[str] = (),
    extra_tenants: Sequence[TenantPeers] = (),
    media_ports: tuple[int, int] | None = None,
    log_level: str = "DEBUG",
    store_max_delay_s: float | None = 0.02,
    consent: str = NO_CAPTURE,
    api_port: int = 0,
    api_settings: str = "",
    analysis_workers: int = 0,
    extra_toml: str = "",
    sip_toml: str = "",
) -> None:
    """Write the gateway's TOML: SIP on ``GATEWAY_HOST`` (and ``extra_listen_hosts``,
    IPv6 literals allowed) over UDP and TCP on ``sip_port``; tenant "acme" with
    its PBX on ``PBX_HOST`` and trunk on ``TRUNK_HOST``, then ``extra_tenants``.

    ``consent`` is the body of acme's ``[tenants.consent]`` table. The default
    never captures, so no notice takes over the media of call-path tests;
    recordings go to ``recordings/`` beside the configuration."""
    port_min, port_max = media_ports or media_range()
    store_batching = "" if store_max_delay_s is None else f"max_delay_s = {store_max_delay_s}\n"
    listen = "".join(
        f'  {{ transport = "{transport}", host = "{host}", port = {sip_port} }},\n'
        for host in (GATEWAY_HOST, *extra_listen_hosts)
        for transport in ("udp", "tcp")
    )
    path.write_text(
        f"""
instance_id = "{instance_id or "test-" + uuid.uuid4().hex[:8]}"
log_level = "{log_level}"
drain_timeout_s = {drain_timeout_s}

[sip]
listen = [
{listen}]
no_answer_timeout_s = {no_answer_timeout_s}
t1_s = 0.5
{sip_toml}

[media]
host = "{GATEWAY_HOST}"
port_min = {port_min}
port_max = {port_max}
timeout_s = {media_timeout_s}

[store]
url = "{db_url}"
{store_batching}
[recording]
dir = "{path.parent / "recordings"}"

[api]
host = "{GATEWAY_HOST}"
port = {api_port}
{api_settings}

[analysis]
workers = {analysis_workers}
retry_s = 1
{extra_toml}

[[tenants]]
name = "acme"
default_region = "US"

[tenants.consent]
{consent}

[tenants.pbx]
host = "{PBX_HOST}"
port = {pbx_port}
transport = "{pbx_transport}"

[tenants.trunk]
host = "{TRUNK_HOST}"
port = {trunk_port}
transport = "{trunk_transport}"
{"".join(tenant.toml() for tenant in extra_tenants)}"""
    )


def callgate_command() -> list[str]:
    script = Path(sys.executable).with_name("callgate")
    if script.exists():
        return [str(script)]
    found = shutil.which("callgate")
    return [found] if found else [sys.executable, "-m", "gateway"]


def wait_until_ready(
    sip_port: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    api_port: int = 0,
    timeout_s: float = 30.0,
) -> None:
    """Probe with OPTIONS (what a load balancer does) until the gateway answers 200, then,
    with ``api_port``, until the API accepts connections: SIP answers before the API
    listens, and an API that cannot bind stops the gateway after that."""
    deadline = time.monotonic() + timeout_s
    _wait_for_options(sip_port, process, log_path, deadline)
    while api_port and not _answers_healthz(GATEWAY_HOST, api_port):
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway API not listening:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.02)
    if process.poll() is not None:
        raise RuntimeError(f"gateway exited early:\n{log_path.read_text()[-4000:]}")


def _answers_healthz(host: str, port: int) -> bool:
    """Whether an HTTP server on (host, port) answers ``/healthz`` with 200 (a program
    that merely holds the port does not)."""
    connection = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):  # nothing there, or not our HTTP server
        return False
    finally:
        connection.close()


def _wait_for_options(
    sip_port: int, process: subprocess.Popen[bytes], log_path: Path, deadline: float
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((GATEWAY_HOST, 0))
        probe.settimeout(0.2)
        local_port = probe.getsockname()[1]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{log_path.read_text()[-4000:]}")
            branch = "z9hG4bK" + uuid.uuid4().hex
            probe.sendto(
                (
                    f"OPTIONS sip:{GATEWAY_HOST}:{sip_port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {GATEWAY_HOST}:{local_port};branch={branch}\r\n"
                    f"From: <sip:probe@{GATEWAY_HOST}>;tag=p\r\n"
                    f"To: <sip:{GATEWAY_HOST}>\r\n"
                    f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
                (GATEWAY_HOST, sip_port),
            )
            try:
                data = probe.recv(65535)
            except OSError:
                continue
            if data.startswith(b"SIP/2.0 200"):
                return
    raise RuntimeError(f"gateway not ready:\n{log_path.read_text()[-4000:]}")


class PortTaken(RuntimeError):
    """The gateway stopped at start-up because a port it was given had been taken."""


START_ATTEMPTS = 3
"""How often :func:`start_gateway` draws fresh ports after losing a bind race."""


def start_gateway(
    tmp: Path,
    db_url: str,
    *,
    cpus: set[int] | None = None,
    open_files: tuple[int, int] | None = None,
    wrapper: Sequence[str] = (),
    env: dict[str, str] | None = None,
    **config: Any,
) -> GatewayProcess:
    """Write the configuration, start ``callgate run`` (pinned to ``cpus``, with the
    ``(soft, hard)`` limit of ``open_files``, when given; under ``wrapper``, a command
    such as valgrind's, and with ``env`` as its environment, when given) and wait until
    it answers OPTIONS.

    A probed port can still be taken by another program before the gateway binds
    it (another suite on the same host draws from the same range); the gateway
    then stops with "address already in use", and the start is tried again on
    fresh ports, up to :data:`START_ATTEMPTS` times. Ports the caller gives are
    kept as they are.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_gateway_once(
                tmp, db_url, cpus=cpus, open_files=open_files, wrapper=wrapper, env=env, **config
            )
        except PortTaken:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_gateway_once(
    tmp: Path,
    db_url: str,
    *,
    cpus: set[int] | None,
    open_files: tuple[int, int] | None = None,
    wrapper: Sequence[str] = (),
    env: dict[str, str] | None = None,
    **config: Any,
) -> GatewayProcess:
    chosen: list[int] = []

    def given_or_free(key: str, host: str, *also: str) -> int:
        port = config.pop(key, None) or free_port(host, *also, taken=chosen)
        chosen.append(port)
        return port

    sip_port = given_or_free("sip_port", GATEWAY_HOST, *config.get("extra_listen_hosts", ()))
    pbx_port = given_or_free("pbx_port", PBX_HOST)
    trunk_port = given_or_free("trunk_port", TRUNK_HOST)
    api_port = given_or_free("api_port", GATEWAY_HOST)
    config_path = tmp / "gateway.toml"
    write_config(
        config_path,
        db_url=db_url,
        sip_port=sip_port,
        pbx_port=pbx_port,
        trunk_port=trunk_port,
        api_port=api_port,
        **config,
    )
    log_path = tmp / "gateway.log"

    def prepare_child() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*wrapper, *callgate_command(), "run", "--config", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
            env=env,
            preexec_fn=prepare_child if cpus or open_files else None,
        )
    gateway = GatewayProcess(
        config_path=config_path,
        db_url=db_url,
        sip_port=sip_port,
        pbx_port=pbx_port,
        trunk_port=trunk_port,
        process=process,
        log_path=log_path,
        api_port=api_port,
    )
    try:
        # under a wrapper (valgrind) start-up takes several times as long
        wait_until_ready(sip_port, process, log_path, api_port, 120.0 if wrapper else 30.0)
    except BaseException as failure:
        gateway.stop()
        if "address already in use" in gateway.log_text().lower():
            raise PortTaken(str(failure)) from failure
        raise
    return gateway


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
"""Parameters for a module-scoped gateway fixture: once on SQLite, once on PostgreSQL."""


@contextmanager
def gateway_on_backend(backend: str, tmp: Path, **config: Any) -> Iterator[GatewayProcess]:
    """A running gateway whose store is a fresh SQLite file or PostgreSQL database.

    On exit the gateway is stopped (SIGTERM) and must exit 0; a PostgreSQL
    database is dropped.
    """
    admin_url = None
    database = None
    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp}/calls.sqlite3"
    else:
        admin_url = require_postgres()
        url = create_database(admin_url)
        database = url.database
        db_url = url.render_as_string(hide_password=False)
    process = start_gateway(tmp, db_url, **config)
    try:
        yield process
    finally:
        code = process.stop()
        if admin_url is not None and database is not None:
            drop_database(admin_url, database)
        assert code == 0, f"gateway exited {code}\n{process.log_text()[-3000:]}"
