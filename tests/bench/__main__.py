"""Run every benchmark in sequence: ``python -m tests.bench [--quick] [--only NAME,...]``.

Every ``bench_*.py`` module in this directory is a benchmark; the known ones
run in the order below (cheapest first, the whole-gateway call rate last)
and any other in name order before the call rate. Each runs as its own
process (``python -m tests.bench.<name>``), so one's event loop, CPU pinning
or memory does not carry into the next, and prints its own method and
figures under a heading. ``--quick`` passes each benchmark the options that
make it short, where it has them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import format_table, machine_lines, print_title

BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY_ROOT = BENCH_DIR.parents[1]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module and the options that make its run short."""

    name: str
    quick_args: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"tests.bench.{self.name}"

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, "-m", self.module, *(self.quick_args if quick else ())]


KNOWN: tuple[Benchmark, ...] = (
    Benchmark("bench_sip_parse", ("--messages", "1000", "--repeat", "3")),
    Benchmark("bench_store", ("--calls", "2000")),
    Benchmark("bench_dsp", ("--seconds", "4", "--naive-seconds", "4", "--repeat", "2")),
    Benchmark("bench_vad", ("--minutes", "2", "--repeat", "1")),
    Benchmark("bench_redact", ("--quick",)),
    Benchmark("bench_relay", ("--calls", "250,1000", "--duration", "3", "--direct-duration", "2")),
    Benchmark("bench_capture", ("--quick",)),
    Benchmark("bench_api", ("--quick",)),
    Benchmark("bench_callcost", ("--calls", "20,60")),
    Benchmark("bench_callrate", ("--quick",)),
)
LAST = "bench_callrate"


def discover(directory: Path = BENCH_DIR) -> list[Benchmark]:
    """The benchmarks present: known ones in their order, others before the last one."""
    present = {path.stem for path in directory.glob("bench_*.py")}
    known = [benchmark for benchmark in KNOWN if benchmark.name in present]
    others = [Benchmark(name) for name in sorted(present - {b.name for b in KNOWN})]
    last = [benchmark for benchmark in known if benchmark.name == LAST]
    return [*(b for b in known if b.name != LAST), *others, *last]


@dataclass(frozen=True)
class Outcome:
    name: str
    returncode: int
    seconds: float


def run_benchmark(benchmark: Benchmark, quick: bool) -> Outcome:
    command = benchmark.command(quick)
    print_title(f"{benchmark.name}: {' '.join([Path(command[0]).name, *command[1:]])}")
    began = time.monotonic()
    try:
        returncode = subprocess.run(command, cwd=REPOSITORY_ROOT, check=False).returncode
    except KeyboardInterrupt:
        returncode = 130
    seconds = time.monotonic() - began
    print(f"[{benchmark.name}: exit {returncode} after {seconds:.0f} s]")
    print(flush=True)
    return Outcome(benchmark.name, returncode, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    benchmarks = discover()
    names = [benchmark.name for benchmark in benchmarks]
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs of every benchmark")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run, of: {', '.join(names)}")
    args = parser.parse_args(argv)
    selected = benchmarks
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        selected = [benchmark for benchmark in benchmarks if benchmark.name in wanted]
    for line in machine_lines():
        print(line)
    print(flush=True)
    outcomes: list[Outcome] = []
    for benchmark in selected:
        outcome = run_benchmark(benchmark, args.quick)
        outcomes.append(outcome)
        if outcome.returncode == 130:
            break
    print_title("summary")
    print(
        format_table(
            ["exit", "seconds", "benchmark"],
            [[str(o.returncode), f"{o.seconds:.0f}", o.name] for o in outcomes],
        )
    )
    return 0 if all(outcome.returncode == 0 for outcome in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
