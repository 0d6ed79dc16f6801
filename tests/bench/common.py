"""Shared helpers of the benchmarks: machine description, /proc readings, tables, profiles.

Everything here reads Linux's ``/proc`` (proc(5)): per-process CPU time from
``/proc/<pid>/stat`` (utime and stime, fields 14 and 15, in clock ticks, all
threads included), resident memory from ``/proc/<pid>/status`` (VmRSS), and
machine-wide CPU time from the first line of ``/proc/stat``.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
TITLE_WIDTH = 78


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``unknown`` when it names none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_mib() -> int:
    """Installed memory (MemTotal in ``/proc/meminfo``), in MiB; 0 when unreadable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_lines() -> list[str]:
    """What the figures were measured on: cores, CPU, memory, kernel, Python, load."""
    usable = sorted(os.sched_getaffinity(0))
    load = os.getloadavg()
    return [
        f"machine: {os.cpu_count()} CPUs (usable here: {','.join(map(str, usable))}), "
        f"{cpu_model()}, {memory_total_mib()} MiB",
        f"system: Linux {platform.release()}, Python {sys.version.split()[0]}",
        f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]


def print_title(title: str) -> None:
    """A benchmark's heading: the title between two rules."""
    print("=" * TITLE_WIDTH)
    print(title)
    print("=" * TITLE_WIDTH, flush=True)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns right-aligned to their widest cell; the last column left-aligned (notes)."""
    body = [list(row) for row in rows]
    widths = [len(header) for header in headers]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table {len(headers)} columns")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        *aligned, last = cells
        parts = [cell.rjust(width) for cell, width in zip(aligned, widths, strict=False)]
        return "  ".join([*parts, last]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


# --------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) ``pid`` has used; proc(5) fields 14-15.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ``)``. Raises ProcessLookupError once the process is gone.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def process_rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` in bytes; ProcessLookupError once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class MachineCpu:
    """Machine-wide CPU time from ``/proc/stat`` in seconds (all cores): busy, of which
    softirq (deferred interrupt work, e.g. delivering loopback packets), and total."""

    busy_s: float
    softirq_s: float
    total_s: float

    @classmethod
    def read(cls) -> MachineCpu:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        ticks = [int(value) for value in first[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice; guest time is
        # already inside user and nice, so only the first eight are summed
        total = sum(ticks[:8])
        idle = ticks[3] + ticks[4]
        return cls(
            (total - idle) / CLOCK_TICKS_PER_S,
            ticks[6] / CLOCK_TICKS_PER_S,
            total / CLOCK_TICKS_PER_S,
        )

    def busy_cores_since(self, earlier: MachineCpu, wall_s: float) -> float:
        """Cores kept busy on average between ``earlier`` and this reading."""
        return (self.busy_s - earlier.busy_s) / wall_s if wall_s > 0 else 0.0

    def softirq_cores_since(self, earlier: MachineCpu, wall_s: float) -> float:
        """Cores spent in softirq on average between ``earlier`` and this reading."""
        return (self.softirq_s - earlier.softirq_s) / wall_s if wall_s > 0 else 0.0


def processes_named(name: str) -> list[int]:
    """Ids of the processes whose command name (``/proc/<pid>/comm``) is ``name``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def pin_process(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of ``pid`` (and threads it starts later) to ``cpus``."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        thread_ids = [int(entry.name) for entry in tasks.iterdir()]
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    for thread_id in thread_ids:
        try:
            os.sched_setaffinity(thread_id, cpus)
        except ProcessLookupError:
            continue


def udp_address_drops(host: str, port: int) -> int:
    """Datagrams dropped (receive buffer full) on the IPv4 UDP sockets bound to host:port,
    from ``/proc/net/udp`` (addresses in hex, the host in network byte order as stored)."""
    packed = socket.inet_aton(host)
    wanted = f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
    total = 0
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) >= 13 and fields[1] == wanted:
            total += int(fields[-1])
    return total


def udp_socket_drops(inode: int) -> int | None:
    """Datagrams the kernel dropped on the UDP socket with ``inode`` (``/proc/net/udp``
    last column, sk_drops: receive buffer full); None when no such socket is listed."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] == str(inode):
                return int(fields[-1])
    return None


# --------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileEntry:
    """One function's samples as the innermost frame (self time)."""

    function: str
    samples: int
    share: float


def self_time_from_collapsed(text: str, top: int = 15) -> tuple[int, list[ProfileEntry]]:
    """Total samples and the ``top`` functions by self time, from collapsed stacks.

    Collapsed stacks (py-spy ``--format raw``, Brendan Gregg's flame graph input) are
    one line per distinct stack: frames joined by ``;``, outermost first, then a space
    and the sample count. The innermost frame of a line gets its count as self time.
    """
    counts: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, number = line.rstrip().rpartition(" ")
        if not stack or not number.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1].strip()
        counts[leaf] += int(number)
        total += int(number)
    entries = [
        ProfileEntry(function, samples, samples / total if total else 0.0)
        for function, samples in counts.most_common(top)
    ]
    return total, entries
