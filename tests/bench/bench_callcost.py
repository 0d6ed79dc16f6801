"""Benchmark of the gateway's work per call, counted in instructions: compiled against sources.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_callcost
    /work/main/.venv/bin/python -m tests.bench.bench_callcost --calls 40,120 --rate 4

Method
------
The call-rate benchmark (``bench_callrate``) reads the gateway's CPU time, which on
a shared host swings by a third within an hour; two builds a few percent apart
cannot be told apart that way. This one counts instructions instead, which do
not depend on the host's speed or on what else runs: the real gateway
(``callgate run``, the product's INFO logging, SQLite store, the kernel or native
forwarder as the host allows) runs under valgrind's callgrind with its
instrumentation off while it starts, and on from just before the first call.
sipp places ``N`` calls through it at a low rate (``--rate``, 4 calls/s by
default: callgrind runs the gateway some 50 times slower), each as in
``bench_callrate``: INVITE with SDP, 200, ACK, the caller's G.711 tone (rtp_stream) for the
call's hold time (``--call-ms``), BYE; the script waits until sipp is done and
the store holds a closed record for every call, then dumps the counts. Overload
control is off (``sip.overload_lag_s = 0``): slowed down that much, the gateway's
event loop lags as a loaded one would, and the control would refuse calls.

Each build runs twice, with two call counts (``--calls``, 40 and 120): the
instructions per call are the difference of the two totals over the difference
of the counts, so the idle loop's work while callgrind slows the calls down,
and the start of the first call, cancel out. Counted: every thread of the
gateway's process in user space (the interpreter, the compiled modules, libuv,
SQLite); not counted: the kernel's work in its system calls and in the
forwarders' softirq. A low rate gives the event loop one message per wake-up,
so the figure is what one call costs without the batching that a loaded
gateway gets: an upper bound of its user-space work, the same for both builds.

Builds: "compiled" is the installed tree with the call path compiled by
mypyc (``gateway.compiled``); "sources" is the same tree with
``CALLGATE_PURE_PYTHON=1``, every module of that path from its ``.py`` file.
The gateway's start-up line says which it ran, and the script checks it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.compiled import PURE_PYTHON_VARIABLE
from gateway.compiled import STATE as COMPILED_STATE
from tests.bench.bench_callrate import (
    CALL_PATH_LINE,
    TRUNK_MEDIA_HOST,
    callee_peer,
    caller_peer,
    wait_for_records,
)
from tests.bench.common import format_table, machine_lines, print_title
from tests.support.gateway import PBX_HOST, start_gateway
from tests.support.sipp import find_sipp, free_media_port

DEFAULT_CALLS = (40, 120)
DEFAULT_RATE = 4.0
DEFAULT_CALL_MS = 1000
RECORD_WAIT_S = 120.0


@dataclass(frozen=True)
class Count:
    """One run: a build, its call count, and the instructions callgrind counted."""

    build: str
    calls: int
    instructions: int


def callgrind_total(path: Path) -> int:
    """The ``totals:`` (or ``summary:``) line of a callgrind dump."""
    for line in path.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def build_environment(build: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_VARIABLE}
    # callgrind runs the gateway some 50 times slower: its event loop's lag says nothing
    # of the host's load, and overload control must not refuse the counted calls
    environ["CALLGATE_SIP__OVERLOAD_LAG_S"] = "0"
    if build == "sources":
        environ[PURE_PYTHON_VARIABLE] = "1"
    return environ


def run_once(build: str, calls: int, options: argparse.Namespace, workdir: Path) -> Count:
    """The gateway under callgrind, ``calls`` calls through it, its instructions counted."""
    run_dir = workdir / f"{build}-{calls}"
    run_dir.mkdir()
    out_file = run_dir / "callgrind.out"
    wrapper = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_file}",
    )
    db_url = f"sqlite+aiosqlite:///{run_dir / 'calls.sqlite3'}"
    gateway = start_gateway(
        run_dir,
        db_url,
        wrapper=wrapper,
        env=build_environment(build),
        log_level="INFO",
        store_max_delay_s=None,
        media_ports=(40000, 41999),
    )
    try:
        said = CALL_PATH_LINE.search(gateway.log_text())
        expected = "compiled (mypyc)" if build == "compiled" else "Python"
        if said is None or not said.group(1).startswith(expected):
            raise RuntimeError(f"{build}: the gateway said {said and said.group(1)!r}")
        callee = callee_peer(gateway.pbx_port, free_media_port(PBX_HOST), "uas")
        callee_process = callee.start(run_dir, options.sipp)
        try:
            callee_process.wait_ready()
            since = datetime.now(UTC)
            callgrind_control("--instr=on", gateway.pid)
            caller = caller_peer(
                gateway.address,
                free_media_port(TRUNK_MEDIA_HOST),
                calls=calls,
                rate=options.rate,
                call_limit=calls,
                call_ms=options.call_ms,
                name="uac",
            )
            result = caller.start(run_dir, options.sipp).wait_result(
                timeout=calls / options.rate * 3 + 120
            )
            if result.returncode != 0:
                raise RuntimeError(f"{build}, {calls} calls: sipp failed calls\n{result.errors}")
            wait_for_records(db_url, since, calls, RECORD_WAIT_S)
            callgrind_control("--dump", gateway.pid)
        finally:
            callee_process.close()
    finally:
        gateway.stop()
    dumps = sorted(run_dir.glob("callgrind.out.*"))
    if not dumps:
        raise RuntimeError(f"{build}, {calls} calls: callgrind wrote no dump")
    return Count(build, calls, callgrind_total(dumps[0]))


def per_call(counts: Sequence[Count]) -> float:
    low, high = sorted(counts, key=lambda count: count.calls)
    return (high.instructions - low.instructions) / (high.calls - low.calls)


def _calls(text: str) -> tuple[int, int]:
    values = tuple(int(value) for value in text.split(","))
    if len(values) != 2 or not 0 < values[0] < values[1]:
        raise argparse.ArgumentTypeError("two call counts, the smaller first: 40,120")
    return values[0], values[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_callcost", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--calls", type=_calls, default=DEFAULT_CALLS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="calls/s")
    parser.add_argument("--call-ms", type=int, default=DEFAULT_CALL_MS)
    parser.add_argument("--builds", default="compiled,sources")
    options = parser.parse_args(argv)
    options.sipp = find_sipp()
    builds = [build.strip() for build in options.builds.split(",") if build.strip()]
    if unknown := set(builds) - {"compiled", "sources"}:
        parser.error(f"unknown builds {sorted(unknown)}: compiled, sources")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("needs valgrind (Debian package valgrind)")
    if "compiled" in builds and not COMPILED_STATE.compiled:
        parser.error(f"the call path is not compiled here ({COMPILED_STATE.reason}): make")
    print_title("Gateway instructions per call (callgrind): compiled against sources")
    print(__doc__.split("Method\n------\n", 1)[1].strip())
    print()
    for line in machine_lines():
        print(line)
    print(
        f"calls: {options.calls[0]} and {options.calls[1]} per build at {options.rate:g}/s, "
        f"hold {options.call_ms} ms"
    )
    results: dict[str, list[Count]] = {}
    with tempfile.TemporaryDirectory(prefix="callgate-callcost-") as directory:
        for build in builds:
            for calls in options.calls:
                started = time.monotonic()
                count = run_once(build, calls, options, Path(directory))
                results.setdefault(build, []).append(count)
                print(
                    f"  {build}, {calls} calls: {count.instructions:,} instructions "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    figures = {build: per_call(counts) for build, counts in results.items()}
    reference = figures.get("sources")
    rows = [
        [
            build,
            f"{figure / 1e6:.2f} M",
            f"{figure / reference:.3f}" if reference else "-",
        ]
        for build, figure in figures.items()
    ]
    print()
    print(format_table(["build", "instructions per call", "against sources"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
