"""``callgate api --workers 2``: two processes answer on one port (IPv6 and a port the
kernel chose too), a worker that dies is started again while the other goes on
answering, only the first runs retention, and SIGTERM stops them all.

Real processes and real HTTP on loopback (SQLite store; the PostgreSQL path of
a standalone API with workers runs in ``test_api.py``'s ``standalone_api``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api.workers import Workers, worker_cpus
from gateway.store.engine import make_engine
from gateway.store.ops import CallEnd, CallStart
from gateway.store.writer import RecordWriter
from tests.support.api import wait_for
from tests.support.gateway import GATEWAY_HOST, callgate_command, free_port, write_config
from tests.unit.store.records import end, new_id, start


def _workers(parent: int) -> set[int]:
    """The parent's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if b"spawn_main" in command:
                found.add(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _config(directory: Path, api_port: int = 0, api_settings: str = "") -> Path:
    """A gateway TOML on a SQLite store in ``directory`` (SIP ports unused: no SIP here)."""
    config = directory / "gateway.toml"
    write_config(
        config,
        db_url=f"sqlite+aiosqlite:///{directory / 'calls.sqlite3'}",
        sip_port=free_port(GATEWAY_HOST, taken=(api_port,)),
        pbx_port=5070,
        trunk_port=5080,
        api_port=api_port,
        api_settings=api_settings,
        log_level="INFO",
    )
    return config


def _api_run(config: Path, workers: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``callgate api --workers`` run to its end (it should stop on its own)."""
    return subprocess.run(
        [*callgate_command(), "api", "--config", str(config), "--workers", workers],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def _start_api(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``callgate api --workers 2`` started, its output to ``log_path``."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [*callgate_command(), "api", "--config", str(config), "--workers", "2"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=config.parent,
        )


@pytest.fixture
def api_with_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    api_port = free_port(GATEWAY_HOST)
    config = _config(tmp_path, api_port)
    log_path = tmp_path / "api.log"
    process = _start_api(config, log_path)
    base = f"http://{GATEWAY_HOST}:{api_port}"
    try:
        wait_for(
            lambda: (
                process.poll() is not None
                or (len(_workers(process.pid)) == 2 and _answers(base + "/readyz"))
            ),
            timeout=60,
            what="callgate api with two workers",
        )
        assert process.poll() is None, log_path.read_text()
        yield process, base, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_two_workers_serve_one_port_and_a_dead_one_comes_back(
    api_with_workers: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, base, log_path = api_with_workers
    first = _workers(process.pid)
    assert len(first) == 2, log_path.read_text()
    assert all(_answers(base + "/healthz") for _ in range(20))

    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    # kill() returns before the worker is gone: until it has exited, the kernel can
    # still queue a new connection on its listening socket, and reset it at the exit
    wait_for(lambda: not _alive(killed), what="the killed worker to exit")
    # the other worker answers meanwhile: every request below is a new connection
    assert all(_answers(base + "/healthz") for _ in range(20)), log_path.read_text()
    again = wait_for(
        lambda: found if len(found := _workers(process.pid)) == 2 else None,
        what="the dead worker started again",
    )
    assert killed not in again and first - {killed} <= again
    wait_for(lambda: _answers(base + "/readyz"), what="the API after the restart")
    assert "exited with -9; starting it again" in log_path.read_text()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()
    assert not any(_alive(pid) for pid in again), "a worker outlived its parent"
    assert not _answers(base + "/healthz")


def test_only_the_first_worker_runs_retention(tmp_path: Path) -> None:
    api_port = free_port(GATEWAY_HOST)
    config = _config(tmp_path, api_port, api_settings="retention_interval_s = 0.3")
    with config.open("a") as toml:
        toml.write("\n[tenants.retention]\nrecords_days = 1\n")  # acme's, the last tenant
    log_path = tmp_path / "api.log"
    process = _start_api(config, log_path)
    try:
        ready = wait_for(
            lambda: found if len(found := _ready_lines(log_path)) == 2 else None,
            timeout=60,
            what="both workers ready",
        )
        assert [line for line in ready if "retention every 0.3 s" in line] == [
            next(line for line in ready if "worker 0" in line)
        ], ready
        old = new_id()  # started on T0, months ago: due under records_days = 1
        asyncio.run(_write_calls(tmp_path / "calls.sqlite3", start(old), end(old)))
        wait_for(
            lambda: "retention: tenant acme: removed 1 call records" in log_path.read_text(),
            what="worker 0's retention pass to remove the old call",
        )
    finally:
        process.kill()
        process.wait(10)


def _ready_lines(log_path: Path) -> list[str]:
    return [line for line in log_path.read_text().splitlines() if "API ready" in line]


async def _write_calls(store: Path, *ops: CallStart | CallEnd) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{store}")
    try:
        writer = RecordWriter(engine)
        for op in ops:
            writer.submit(op)
        await writer.stop()
    finally:
        await engine.dispose()


def test_workers_stop_when_their_parent_is_killed(
    api_with_workers: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, base, _ = api_with_workers
    workers = _workers(process.pid)
    process.kill()
    process.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in workers), what="orphaned workers to stop")
    assert not _answers(base + "/healthz")


def test_each_worker_has_a_core_of_its_own_round_robin() -> None:
    assert worker_cpus(3, {0, 1}) == [0, 1, 0]
    assert worker_cpus(2, {2, 5, 7}) == [2, 5]
    assert worker_cpus(2, {0}) == [None, None]


def test_bad_worker_counts_stop_before_serving(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for count, reason in (("0", "positive"), ("65", "at most 64")):
        done = _api_run(config, count, timeout=30)
        assert done.returncode == 2, done
        assert reason in done.stderr, done.stderr


def test_a_port_another_process_listens_on_is_refused(tmp_path: Path) -> None:
    """With SO_REUSEPORT alone a second instance would join the port: it is refused as one
    process is."""
    with socket.socket() as taken:  # as another `callgate api --workers` listens
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind((GATEWAY_HOST, 0))
        taken.listen()
        done = _api_run(_config(tmp_path, taken.getsockname()[1]), "2", timeout=60)
    assert done.returncode == 1, done
    assert "Address already in use" in done.stderr + done.stdout


def test_a_worker_that_keeps_dying_at_once_is_given_up_on() -> None:
    """Each quick death doubles the wait before the next start; the fifth in a row stops
    the API (it cannot serve) instead of starting the worker forever."""
    workers = Workers.__new__(Workers)
    workers.processes = [None]
    workers.started_at = [0.0]
    workers.quick_deaths = [0]
    waits = []
    for _ in range(5):
        workers.started_at[0] = time.monotonic()
        waits.append(workers.died(0))
    assert waits == [1.0, 2.0, 4.0, 8.0, None]
    workers.quick_deaths[0] = 3
    workers.started_at[0] = time.monotonic() - 60  # ran a minute: not a quick death
    assert workers.died(0) == 1.0 and workers.quick_deaths[0] == 0


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` over IPv6 (``/proc/net/tcp6``, state 0A)."""
    lines = Path("/proc/net/tcp6").read_text().splitlines()[1:]
    return sum(
        1
        for line in lines
        if (fields := line.split())[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
    )


def test_workers_on_ipv6_join_the_port_the_kernel_chose(tmp_path: Path) -> None:
    """Port 0: the parent's reservation gets a free port and both workers listen on it."""
    config = _config(tmp_path, 0)
    text = config.read_text()
    assert f'[api]\nhost = "{GATEWAY_HOST}"' in text
    config.write_text(text.replace(f'[api]\nhost = "{GATEWAY_HOST}"', '[api]\nhost = "::1"'))
    log_path = tmp_path / "api.log"
    process = _start_api(config, log_path)
    try:
        announced = wait_for(
            lambda: re.search(r"API on http://::1:(\d+) with 2 workers", log_path.read_text()),
            timeout=60,
            what="callgate api announcing its port",
        )
        port = int(announced.group(1))
        assert port != 0
        base = f"http://[::1]:{port}"
        wait_for(lambda: _listeners(port) == 2, what="both workers listening")
        wait_for(lambda: _answers(base + "/readyz"), what="the API on ::1")
        assert all(_answers(base + "/healthz") for _ in range(10)), log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
