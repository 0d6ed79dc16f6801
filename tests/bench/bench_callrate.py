"""Benchmark of the whole gateway: the highest call rate it holds with under 0.1 % failed calls.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_callrate
    /work/main/.venv/bin/python -m tests.bench.bench_callrate --rates 300,400,500 --hold-s 60
    /work/main/.venv/bin/python -m tests.bench.bench_callrate --quick --db postgresql

Method
------
One ``callgate run`` process (the real gateway, started from a generated
configuration: the product's INFO logging and store batching, a media port
range wide enough for the concurrency) sits between two sipp peers on
loopback. sipp's ``uas_rate`` is the callee on the tenant's PBX address
(127.0.0.2) and answers at once; sipp's ``uac_rate`` is the caller on the
trunk address (127.0.0.3) and places short calls through the gateway
(127.0.0.1): INVITE with SDP, 200, ACK, the caller sends a G.711 tone (PCMU,
50 RTP packets/s) for the call's hold time (``--call-ms``, 1 s by default),
then BYE. The caller sends it with sipp's ``rtp_stream`` from an ordinary UDP
socket, an SSRC per call (``--caller-media stream``, the default); ``--caller-media
pcap`` replays ``tone440_pcmu.pcap`` instead (``play_pcap_audio``), which sends
each call's packets through a raw UDP socket bound to the caller's media
address: the kernel hands every such socket (over a hundred at 300 calls/s) a
copy of each UDP datagram for that address, and walks them all for every UDP
datagram it delivers on the machine, on the sender's core: 2-2.6 % of the
gateway's time in an ad hoc ``perf`` profile at 300-400 calls/s, and sipp's own core
at 58-60 % at 400/s against 25 % with ``rtp_stream``. The caller's media is on
an address of its own (``--caller-media-host``, 127.0.0.13), so with
``pcap`` the SIP messages for the caller are not copied to those sockets
(about 1 % more of the gateway's time in that profile). The gateway anchors the media (every
call takes two RTP/RTCP port pairs and relays the caller's stream to the callee) and writes
a record for every call.

The rate steps up (``--rates``); each step places ``rate x --hold-s`` calls
at ``rate`` calls/s with fresh sipp peers against the same gateway, then
waits until sipp has finished every call and the store holds a closed record
for each of them. Per step:

- achieved rate: the slope of sipp's created-call count over its elapsed
  time (``-trace_stat`` rows each second) while it was creating calls;
- successful calls as the caller's sipp counts them; failed calls are the
  caller's failed calls (with calls still open when sipp had to be stopped)
  plus the callee's: a call the callee's sipp aborts (say, on an INVITE the
  gateway retransmitted after the callee's 200) failed even when the caller
  saw it succeed. A call failing at both ends counts twice, so the figure
  errs high. A request for a call the callee had already finished (a late
  BYE retransmission) opens a call of its own at the callee's sipp, which
  fails; those are counted apart, not as failed calls. Failure % is of the
  calls created;
- call setup time, INVITE sent to 200 received (sipp ``-trace_rtt``, 1 ms
  resolution): median and 99th percentile;
- the gateway's responsiveness: the round trip of an OPTIONS request this
  script sends it every 20 ms during the step (median, 99th percentile,
  maximum; unanswered after 5 s = lost). The gateway answers OPTIONS
  itself, so this is how long any SIP message waited for its event loop;
- CPU % of one core used by the gateway (utime + stime of all its threads,
  ``/proc/<pid>/stat``), by the two sipp processes, by the kernel's softirq
  work (``/proc/stat``; mostly delivering loopback packets, charged to no
  process), by the PostgreSQL server's processes with ``--db postgresql``
  (all of them: other databases' work counts too), and by everything else
  on the machine (busy time minus those: this script, other processes),
  over the step's ``--hold-s`` seconds of
  load; the gateway's peak RSS (VmRSS) in the step;
- records: rows of the step in the ``calls`` table, closed (``ended_at``
  set) against calls created; RTP per call from ``media_stats`` of a random
  sample of 50 closed records (packets the gateway took from the caller and
  sent to the callee), and the RTP packets that reached the callee's media
  port, counted by the kernel (the port is a bound socket that is never
  read: every datagram is counted in its ``drops``), per successful call.

A step is held when under ``--max-failed-pct`` (0.1 %) of its calls failed,
the achieved rate is at least 95 % of the target, every created call has a
closed record and RTP crossed the gateway. A call the gateway's overload
control refused (503, counted from its ``callgate_calls_shed_total``) is a
failed call; it leaves no record by design, so the records are counted against
the calls created less those refused, and the notes say how many failures were
refusals. Stepping stops at the first step that is not held, unless
``--every-step`` asks to see how the gateway degrades past it. The gateway is
pinned to one core and both sipp peers to the other
(``--gateway-cpu``/``--sipp-cpu``), so they do not take each other's time
slices; the gateway's helper threads (the SQLite driver's) share its core. On
a 2-core machine the peers, the kernel's loopback work and the gateway share
the two cores, so the figure understates what the gateway would carry on a
machine of its own.

Before each step the machine must be quiet: while other processes keep more
than ``--quiet-pct`` (25 %) of a core busy, the step waits (up to
``--quiet-wait-s``), and the load it started under is noted. A step that
is not held while other processes used more than that during it is run
again (``--retries``, 2), after the gateway has closed every call; every
attempt is in the table, and the last one counts. The media
ports (``--media-ports``, default 61000-65535: 1134 calls) lie above the
kernel's ephemeral ports and clear of the ranges the test harness and the
relay benchmark use, so a test running beside the benchmark cannot take them.

``--profile`` samples the gateway with py-spy (when it is installed; it is
no dependency of the project) at 100 Hz for half of each step (30 s at
most), without pausing it, and prints the functions with the most self time
for the highest step held and the first step that was not; py-spy's own CPU
is counted apart. ``--profile-native`` adds the interpreter's native frames
(its garbage collector, the event loop's C code), but py-spy must then pause
the gateway at every sample, which slows it: read those steps for the
profile, not for the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from select import select as wait_readable
from typing import Any, NamedTuple

import pytest
from sqlalchemy import func, select

from gateway.store.engine import make_engine
from gateway.store.models import CALLS
from tests.bench.collector import (
    LONG_PAUSE_S,
    describe_pauses,
    pauses_by_generation,
    step_pauses,
)
from tests.bench.common import (
    MachineCpu,
    format_table,
    machine_lines,
    pin_process,
    process_cpu_s,
    process_rss_bytes,
    processes_named,
    self_time_from_collapsed,
    udp_address_drops,
    udp_socket_drops,
)
from tests.support.gateway import (
    GATEWAY_HOST,
    PBX_HOST,
    TRUNK_HOST,
    GatewayProcess,
    start_gateway,
)
from tests.support.sipp import (
    RTP_PORT_OFFSET,
    SippProcess,
    SippScenario,
    SippStatsRow,
    find_sipp,
    free_media_port,
    sipp_version,
)

DEFAULT_RATES = (50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000)
QUICK_RATES = (100, 200, 300)
DEFAULT_HOLD_S = 60.0
QUICK_HOLD_S = 10.0
DEFAULT_CALL_MS = 1000
MAX_FAILED_PCT = 0.1
MIN_RATE_SHARE = 0.95
RECORD_SAMPLE = 50
SAMPLE_INTERVAL_S = 1.0
RECORD_WAIT_S = 30.0
SETTLE_S = 2.0
IDLE_WAIT_S = 90.0
QUIET_PCT = 25.0
QUIET_WAIT_S = 120.0
QUIET_PROBE_S = 2.0
DEFAULT_MEDIA_PORTS = (61000, 65535)
SIPP_EXTRA_WAIT_S = 45.0
"""How long past the step's load sipp may take to finish its last calls: its
receive timeout (10 s) plus the INVITE/BYE retransmissions of a UDP transaction."""


class CallerMedia(NamedTuple):
    """How the caller sends its tone: its sipp scenario, the file it sends, sipp's action."""

    scenario: str
    file: str
    action: str


CALLER_MEDIA = {
    "stream": CallerMedia("uac_rate_stream", "tone440_pcmu.ul", "rtp_stream"),
    "pcap": CallerMedia("uac_rate", "tone440_pcmu.pcap", "play_pcap_audio"),
}
"""The caller's ways of sending its media, by ``--caller-media`` (see the method)."""
TRUNK_MEDIA_HOST = "127.0.0.13"
"""The caller's media address, apart from its signalling (see the method)."""
CALLEE_NUMBER = "18005550199"
CALLER_NUMBER = "12125550100"
PROFILE_TOP = 15
PROFILE_MAX_S = 30.0


# --------------------------------------------------------------------------
# The gateway under test
# --------------------------------------------------------------------------


def callee_peer(pbx_port: int, media_port: int, name: str) -> SippScenario:
    """The tenant's PBX: sipp's ``uas_rate`` on ``PBX_HOST``, answering every call at once."""
    return SippScenario(
        "uas_rate",
        local_ip=PBX_HOST,
        local_port=pbx_port,
        media_port=media_port,
        calls=None,
        play_media=False,
        rtp_sink=False,
        trace_messages=False,
        name=name,
    )


CALL_PATH_LINE = re.compile(r"call path \(SIP, calls, media\): (.*)")
"""What the gateway says at start about its call path: compiled, or Python and why."""


def call_path_line(log_text: str) -> str:
    """The gateway's call path as it reported it, with a warning when it runs as Python."""
    said = CALL_PATH_LINE.search(log_text)
    state = said.group(1).strip() if said else "not reported"
    if state.startswith("compiled"):
        return f"gateway call path: {state}"
    return f"gateway call path: {state} -- WARNING: not the compiled build, the sources' figures"


def caller_peer(
    gateway: tuple[str, int],
    media_port: int,
    *,
    calls: int,
    rate: float,
    call_limit: int,
    call_ms: int,
    name: str,
    media_host: str = TRUNK_MEDIA_HOST,
    media: str = "stream",
    extra_args: tuple[str, ...] = (),
) -> SippScenario:
    """The trunk: sipp's ``uac_rate`` on ``TRUNK_HOST``, ``calls`` calls at ``rate``/s
    through the gateway, each sending its G.711 tone for ``call_ms`` from ``media_host``
    (``media``: ``stream``, sipp's ``rtp_stream``, or ``pcap``, its ``play_pcap_audio``)."""
    return SippScenario(
        CALLER_MEDIA[media].scenario,
        local_ip=TRUNK_HOST,
        remote=gateway,
        media_ip=media_host,
        media_port=media_port,
        calls=calls,
        rate=rate,
        rate_period_ms=1000,
        call_limit=call_limit,
        duration_ms=call_ms,
        service=CALLEE_NUMBER,
        caller=CALLER_NUMBER,
        play_media=True,
        rtp_sink=False,
        trace_messages=False,
        extra_args=extra_args,
        name=name,
    )


def parse_port_range(text: str) -> tuple[int, int]:
    """``MIN-MAX`` with an even MIN (RTP takes even ports, RFC 3550 section 11)."""
    low_text, dash, high_text = text.partition("-")
    if not dash or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range MIN-MAX")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low < high <= 65535 or low % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: need an even MIN, 1024 <= MIN < MAX <= 65535")
    return low, high


def calls_carried(media_ports: tuple[int, int]) -> int:
    """Simultaneous calls a media port range carries: two RTP/RTCP pairs per call."""
    low, high = media_ports
    return (high - low + 1) // 2 // 2


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


class CountingPort:
    """A UDP port bound and never read: the kernel counts each datagram as a drop.

    The receive buffer is set to its minimum, so almost every datagram that
    reaches the port is dropped and counted (``/proc/net/udp``, ``drops``),
    which costs no CPU in user space and sends no ICMP back to the relay.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            self.sock.bind((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.inode = os.fstat(self.sock.fileno()).st_ino

    def datagrams(self) -> int:
        return udp_socket_drops(self.inode) or 0

    def close(self) -> None:
        self.sock.close()


class OptionsProbe:
    """Measures how long the gateway takes to answer SIP while under load.

    A thread sends an OPTIONS request (RFC 3261 section 11) to the gateway
    every ``interval_s`` from its own socket and times each 200 OK. The
    gateway answers OPTIONS itself, so the round trip is the time its event
    loop took to get to the datagram (plus one parse and one answer): the
    delay every SIP message of the calls saw at that moment. A request not
    answered within ``timeout_s`` counts as lost.
    """

    def __init__(
        self, target: tuple[str, int], interval_s: float = 0.02, timeout_s: float = 5.0
    ) -> None:
        self.target = target
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.round_trips_ms: list[float] = []
        self.sent = 0
        self._pending: dict[str, float] = {}
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((GATEWAY_HOST, 0))
        self._thread = threading.Thread(target=self._run, name="options-probe", daemon=True)

    def start(self) -> OptionsProbe:
        self._thread.start()
        return self

    def _request(self, number: int) -> tuple[str, bytes]:
        port = self._sock.getsockname()[1]
        call_id = f"probe-{number}-{uuid.uuid4().hex[:12]}"
        text = (
            f"OPTIONS sip:{self.target[0]}:{self.target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {GATEWAY_HOST}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            f"From: <sip:probe@{GATEWAY_HOST}>;tag=probe\r\n"
            f"To: <sip:{self.target[0]}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {number} OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        return call_id, text.encode()

    def _run(self) -> None:
        number = 0
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                number += 1
                call_id, data = self._request(number)
                self._pending[call_id] = now
                with contextlib.suppress(OSError):
                    self._sock.sendto(data, self.target)
                self.sent += 1
                next_send += self.interval_s
            wait = max(0.0, next_send - time.monotonic())
            ready, _, _ = wait_readable([self._sock], [], [], wait)
            if ready:
                with contextlib.suppress(OSError):
                    self._on_datagram(self._sock.recv(65535), time.monotonic())

    def _on_datagram(self, data: bytes, arrived: float) -> None:
        match = _CALL_ID.search(data)
        if match is None or not data.startswith(b"SIP/2.0 200"):
            return
        sent = self._pending.pop(match.group(1).decode(errors="replace"), None)
        if sent is not None:
            self.round_trips_ms.append((arrived - sent) * 1000.0)

    def stop(self) -> None:
        """Stop sending, collect answers for up to ``timeout_s`` more, close the socket."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + self.timeout_s
        while self._pending and time.monotonic() < deadline:
            ready, _, _ = wait_readable([self._sock], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self._on_datagram(self._sock.recv(65535), time.monotonic())
        self._sock.close()

    @property
    def lost(self) -> int:
        return len(self._pending)


_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    """Cumulative CPU readings at one instant of a step."""

    at: float
    gateway_cpu_s: float
    sipp_cpu_s: float
    machine: MachineCpu
    gateway_rss: int
    profiler_cpu_s: float = 0.0
    store_cpu_s: float = 0.0


@dataclass(frozen=True)
class RecordCounts:
    """What the store holds for one step's calls."""

    total: int
    closed: int
    caller_packets: list[int]
    callee_packets: list[int]


def creation_rate(rows: Sequence[SippStatsRow], calls: int) -> float:
    """Calls created per second while sipp was creating them.

    sipp starts creating at elapsed 0; the rate is taken at the last
    statistics row written before the last call was created (so the idle
    tail, when sipp waits for its calls to end, does not count), or over the
    whole run when no row falls inside the creation window.
    """
    creating = [row for row in rows if 0 < row.created_calls < calls and row.elapsed_s > 0]
    if creating:
        last = creating[-1]
        return last.created_calls / last.elapsed_s
    if rows and rows[-1].elapsed_s > 0:
        return rows[-1].created_calls / rows[-1].elapsed_s
    return 0.0


def setup_times_ms(path: Path | None, rtd: str = "setup") -> list[float]:
    """Response times of ``rtd`` in sipp's ``-trace_rtt`` file, in milliseconds."""
    if path is None:
        return []
    values: list[float] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.strip().split(";")
            if len(parts) >= 3 and parts[2] == rtd:
                with contextlib.suppress(ValueError):
                    values.append(float(parts[1]))
    return values


_SHED_SAMPLE = re.compile(r"^callgate_calls_shed_total (\S+)$", re.MULTILINE)


def gateway_metrics(api_port: int) -> str:
    """The gateway's ``/metrics`` text; empty when it cannot be read."""
    url = f"http://{GATEWAY_HOST}:{api_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""


def shed_calls(metrics: str) -> int:
    """New calls the gateway's overload control refused with 503 so far (0 when not told)."""
    found = _SHED_SAMPLE.search(metrics)
    return int(float(found.group(1))) if found else 0


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _side_packets(stats: Any, side: str, key: str) -> int:
    if not isinstance(stats, dict):
        return 0
    value = stats.get(side, {})
    return int(value.get(key, 0)) if isinstance(value, dict) else 0


async def _read_records(db_url: str, since: datetime, sample: int) -> RecordCounts:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            counted = await connection.execute(
                select(func.count(), func.count(CALLS.c.ended_at)).where(
                    CALLS.c.started_at >= since
                )
            )
            total, closed = counted.one()
            sampled = await connection.execute(
                select(CALLS.c.media_stats)
                .where(CALLS.c.started_at >= since, CALLS.c.ended_at.is_not(None))
                .order_by(func.random())
                .limit(sample)
            )
            stats = list(sampled.scalars())
    finally:
        await engine.dispose()
    return RecordCounts(
        total=int(total),
        closed=int(closed),
        caller_packets=[_side_packets(item, "a", "packets_in") for item in stats],
        callee_packets=[_side_packets(item, "b", "packets_out") for item in stats],
    )


def read_records(db_url: str, since: datetime, sample: int = RECORD_SAMPLE) -> RecordCounts:
    return asyncio.run(_read_records(db_url, since, sample))


async def _count_open(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            counted = await connection.execute(
                select(func.count()).select_from(CALLS).where(CALLS.c.ended_at.is_(None))
            )
            return int(counted.scalar_one())
    finally:
        await engine.dispose()


def count_open_records(db_url: str) -> int:
    """Call records not closed yet (calls the gateway still holds)."""
    return asyncio.run(_count_open(db_url))


def wait_for_records(db_url: str, since: datetime, expected: int, timeout: float) -> RecordCounts:
    """Poll until ``expected`` closed records exist since ``since`` (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = read_records(db_url, since)
        if counts.closed >= expected and counts.total == counts.closed:
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def wait_for_quiet(limit_pct: float, max_wait_s: float) -> tuple[float, float]:
    """Wait until the machine's busy time is under ``limit_pct`` of a core.

    Runs between steps, when the gateway and the peers are idle, so the busy
    time is other processes'. Returns (the last load measured in % of a core,
    seconds waited); gives up after ``max_wait_s``.
    """
    began = time.monotonic()
    while True:
        before = MachineCpu.read()
        time.sleep(QUIET_PROBE_S)
        load = 100.0 * MachineCpu.read().busy_cores_since(before, QUIET_PROBE_S)
        waited = time.monotonic() - began
        if load <= limit_pct or waited >= max_wait_s:
            return load, waited


# --------------------------------------------------------------------------
# Profiling (optional: py-spy)
# --------------------------------------------------------------------------


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    """Collapsed stacks of the gateway sampled during one step."""

    path: Path
    seconds: float
    process: subprocess.Popen[bytes] | None = None

    def summary(self, top: int = PROFILE_TOP) -> list[str]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ["(no profile written)"]
        total, entries = self_time_from_collapsed(text, top)
        lines = [
            f"{total} samples of the gateway's active time over {self.seconds:.0f} s "
            "(py-spy, 100 Hz, idle excluded); self time = innermost Python frame"
        ]
        lines += [
            f"{entry.share * 100:6.1f}%  {entry.samples:6d}  {entry.function}" for entry in entries
        ]
        return lines


def start_profile(
    py_spy: str, pid: int, path: Path, seconds: float, cpus: set[int] | None, native: bool
) -> Profile:
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "100",
        "--duration",
        f"{seconds:.0f}",
        "--format",
        "raw",
        "--function",
        "--output",
        str(path),
    ]
    # native stacks need the process paused while it is sampled
    command.append("--native" if native else "--nonblocking")

    def pin_child() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=path.with_suffix(".stderr").open("wb"),
        stdin=subprocess.DEVNULL,
        preexec_fn=pin_child,
    )
    return Profile(path, seconds, process)


# --------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------


@dataclass
class StepResult:
    """Everything measured at one call rate."""

    target_rate: int
    hold_s: float
    calls: int
    created: int = 0
    successful: int = 0
    caller_failed: int = 0
    callee_failed: int = 0
    callee_strays: int = 0
    sip_drops: int = 0
    achieved_rate: float = 0.0
    setup_ms: list[float] = field(default_factory=list)
    peak_concurrent: int = 0
    gateway_cpu: float = math.nan
    gateway_rss_peak: int = 0
    gc_full: int = -1
    gc_long: int = -1
    shed: int = 0
    """Calls the gateway refused with 503 (overload control): failed calls, but no record."""
    sipp_cpu: float = math.nan
    softirq_cpu: float = math.nan
    store_cpu: float | None = None
    other_cpu: float = math.nan
    load_before: float = 0.0
    records: RecordCounts | None = None
    callee_datagrams: int = 0
    probe_ms: list[float] = field(default_factory=list)
    probe_lost: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    gateway_problems: int = 0
    attempt: int = 0
    superseded: bool = False
    notes: list[str] = field(default_factory=list)
    profile: Profile | None = None

    @property
    def callee_failed_calls(self) -> int:
        """Calls the callee's sipp failed, without the calls opened by late requests."""
        return max(0, self.callee_failed - self.callee_strays)

    @property
    def failed(self) -> int:
        """Failed calls at either end (at most the calls created)."""
        return min(self.created, self.caller_failed + self.callee_failed_calls)

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed / self.created if self.created else 100.0

    @property
    def records_complete(self) -> bool:
        records = self.records
        return (
            records is not None
            and records.closed >= self.created - self.shed
            and (records.total == records.closed)
        )

    @property
    def rtp_crossed(self) -> bool:
        records = self.records
        return records is not None and sum(records.caller_packets) + sum(records.callee_packets) > 0

    def shortfalls(self, max_failed_pct: float, min_rate_share: float) -> list[str]:
        """Why the step was not held; empty when it was."""
        reasons: list[str] = []
        if self.created == 0:
            return ["no calls created"]
        if self.failed_pct >= max_failed_pct:
            reasons.append(f"{self.failed_pct:.3f}% failed")
        if self.achieved_rate < min_rate_share * self.target_rate:
            reasons.append(f"achieved {self.achieved_rate:.0f}/s < {min_rate_share:.0%} of target")
        if not self.records_complete:
            records = self.records
            closed = records.closed if records else 0
            reasons.append(f"{closed} closed records for {self.created} calls")
        if not self.rtp_crossed:
            reasons.append("no RTP in the sampled records")
        return reasons

    def row(self) -> list[str]:
        records = self.records
        setup = (
            f"{statistics.median(self.setup_ms):.0f}/{percentile(self.setup_ms, 0.99):.0f}"
            if self.setup_ms
            else "-"
        )
        rtp_records = "-"
        if records and records.caller_packets:
            rtp_records = (
                f"{statistics.mean(records.caller_packets):.0f}/"
                f"{statistics.mean(records.callee_packets):.0f}"
            )
        probe = (
            f"{statistics.median(self.probe_ms):.0f}/{percentile(self.probe_ms, 0.99):.0f}/"
            f"{max(self.probe_ms):.0f}"
            if self.probe_ms
            else "-"
        )
        if self.probe_lost:
            probe += f" ({self.probe_lost} lost)"
        callee_rtp = f"{self.callee_datagrams / self.successful:.0f}" if self.successful else "-"
        notes = list(self.notes)
        if self.failure_reasons:
            notes.append(" ".join(f"{k}={v}" for k, v in sorted(self.failure_reasons.items())))
        if self.failed:
            notes.append(
                f"failed at the caller {self.caller_failed}, "
                f"at the callee {self.callee_failed_calls}"
            )
        if self.shed:
            notes.append(
                f"refused by overload control (503) {self.shed}, "
                f"other failures {max(0, self.failed - self.shed)}"
            )
        if self.callee_strays:
            notes.append(f"callee got {self.callee_strays} requests of ended calls")
        if self.sip_drops:
            notes.append(f"gateway SIP socket dropped {self.sip_drops}")
        if self.gateway_problems:
            notes.append(f"gateway warnings {self.gateway_problems}")
        return [
            f"{self.target_rate}" + (f" #{self.attempt + 1}" if self.attempt else ""),
            f"{self.achieved_rate:.1f}",
            str(self.created),
            str(self.successful),
            str(self.failed),
            f"{self.failed_pct:.3f}",
            setup,
            probe,
            str(self.peak_concurrent),
            f"{self.gateway_cpu:.0f}",
            f"{self.gateway_rss_peak / 2**20:.0f}",
            "-" if self.gc_full < 0 else f"{self.gc_full}/{self.gc_long}",
            f"{self.sipp_cpu:.0f}",
            "-" if self.store_cpu is None else f"{self.store_cpu:.0f}",
            f"{self.softirq_cpu:.0f}",
            f"{self.other_cpu:.0f}",
            f"{records.closed if records else 0}/{self.created}",
            rtp_records,
            callee_rtp,
            "; ".join(notes),
        ]


TABLE_HEADERS = [
    "target/s",
    "achieved/s",
    "created",
    "ok",
    "failed",
    "fail%",
    "setup p50/p99 ms",
    "OPTIONS p50/p99/max ms",
    "peak calls",
    "gw CPU%",
    "gw RSS MiB",
    "GC full/>25ms",
    "sipp CPU%",
    "PG CPU%",
    "softirq%",
    "others CPU%",
    "records closed",
    "RTP/call in/out",
    "RTP/call callee",
    "notes",
]


@dataclass
class Options:
    """The run's settings, resolved from the command line."""

    rates: list[int]
    hold_s: float
    call_ms: int
    db: str
    media_ports: tuple[int, int]
    gateway_cpus: set[int] | None
    sipp_cpus: set[int] | None
    max_failed_pct: float
    min_rate_share: float
    log_level: str
    quiet_pct: float
    quiet_wait_s: float
    retries: int
    keep: bool
    every_step: bool
    py_spy: str | None
    profile_native: bool
    caller_media_host: str = TRUNK_MEDIA_HOST
    caller_media: str = "stream"


class CallRateBench:
    """The gateway, the sipp binary and the steps run against them."""

    def __init__(self, options: Options, sipp: str, gateway: GatewayProcess, workdir: Path) -> None:
        self.options = options
        self.sipp = sipp
        self.gateway = gateway
        self.workdir = workdir

    def _pin_sipp(self, peer: SippProcess) -> None:
        if self.options.sipp_cpus:
            with contextlib.suppress(ProcessLookupError):
                pin_process(peer.process.pid, self.options.sipp_cpus)

    def _sample(self, peers: Sequence[SippProcess], profile: Profile | None = None) -> Sample:
        sipp_cpu = 0.0
        for peer in peers:
            with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
                sipp_cpu += process_cpu_s(peer.process.pid)
        profiler_cpu = 0.0
        if profile is not None and profile.process is not None:
            # an exited py-spy stays readable as a zombie until it is waited for
            with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
                profiler_cpu = process_cpu_s(profile.process.pid)
        store_cpu = 0.0
        if self.options.db == "postgresql":
            for pid in processes_named("postgres"):
                with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
                    store_cpu += process_cpu_s(pid)
        return Sample(
            at=time.monotonic(),
            gateway_cpu_s=process_cpu_s(self.gateway.pid),
            sipp_cpu_s=sipp_cpu,
            machine=MachineCpu.read(),
            gateway_rss=process_rss_bytes(self.gateway.pid),
            profiler_cpu_s=profiler_cpu,
            store_cpu_s=store_cpu,
        )

    def wait_until_idle(self, timeout: float = IDLE_WAIT_S) -> int:
        """Wait until the gateway has no open call record; the number still open."""
        deadline = time.monotonic() + timeout
        while True:
            open_calls = count_open_records(self.gateway.db_url)
            if open_calls == 0 or time.monotonic() > deadline or not self.gateway.alive():
                return open_calls
            time.sleep(1.0)

    def run_step(self, rate: int, attempt: int = 0) -> StepResult:
        options = self.options
        calls = max(1, round(rate * options.hold_s))
        result = StepResult(target_rate=rate, hold_s=options.hold_s, calls=calls, attempt=attempt)
        result.load_before, waited = wait_for_quiet(options.quiet_pct, options.quiet_wait_s)
        if result.load_before > options.quiet_pct:
            result.notes.append(
                f"started under {result.load_before:.0f}% other load after {waited:.0f} s wait"
            )
        step_dir = self.workdir / (f"rate-{rate}" + (f"-retry{attempt}" if attempt else ""))
        callee_media = free_media_port(PBX_HOST)
        caller_media = free_media_port(options.caller_media_host)
        problems_before = self.gateway.problem_lines()
        sip_drops_before = udp_address_drops(GATEWAY_HOST, self.gateway.sip_port)
        with contextlib.ExitStack() as stack:
            callee_port = CountingPort(PBX_HOST, callee_media + RTP_PORT_OFFSET)
            stack.callback(callee_port.close)
            caller_port = CountingPort(options.caller_media_host, caller_media + RTP_PORT_OFFSET)
            stack.callback(caller_port.close)
            callee = callee_peer(self.gateway.pbx_port, callee_media, f"uas-{rate}").start(
                step_dir, self.sipp
            )
            stack.callback(callee.close)
            self._pin_sipp(callee)
            metrics_before = gateway_metrics(self.gateway.api_port)
            since = datetime.now(UTC)
            datagrams_before = callee_port.datagrams()
            caller = caller_peer(
                (GATEWAY_HOST, self.gateway.sip_port),
                caller_media,
                calls=calls,
                rate=rate,
                call_limit=calls_carried(options.media_ports),
                call_ms=options.call_ms,
                name=f"uac-{rate}",
                media_host=options.caller_media_host,
                media=options.caller_media,
                extra_args=("-trace_rtt", "-rtt_freq", "1"),
            ).start(step_dir, self.sipp)
            stack.callback(caller.close)
            self._pin_sipp(caller)
            probe = OptionsProbe((GATEWAY_HOST, self.gateway.sip_port)).start()
            stack.callback(probe.stop)
            first = self._sample([caller, callee])
            if options.py_spy:
                seconds = min(PROFILE_MAX_S, options.hold_s / 2)
                time.sleep(options.hold_s / 4)
                result.profile = start_profile(
                    options.py_spy,
                    self.gateway.pid,
                    step_dir / "gateway-profile.txt",
                    seconds,
                    options.sipp_cpus,
                    options.profile_native,
                )
            samples = self._watch(caller, callee, first, result)
            probe.stop()
            result.probe_ms, result.probe_lost = probe.round_trips_ms, probe.lost
            caller_outcome = caller.result()
            callee.stop(grace=15.0)
            callee_outcome = callee.result()
            result.callee_datagrams = callee_port.datagrams() - datagrams_before
        if result.profile is not None and result.profile.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                result.profile.process.wait(PROFILE_MAX_S + 10)
        self._load_figures(result, samples, first)
        rows = caller.interval_stats()
        if caller_outcome.stats is not None:
            final = caller_outcome.stats.final
            result.created = final.created_calls
            result.successful = final.successful_calls
            result.caller_failed = final.failed_calls
            result.failure_reasons = final.failure_reasons
        unfinished = result.created - result.successful - result.caller_failed
        if unfinished > 0:
            result.caller_failed += unfinished
            result.notes.append(f"{unfinished} calls unfinished when sipp was stopped")
        if callee_outcome.stats is not None:
            final = callee_outcome.stats.final
            result.callee_failed = final.failed_calls
            # a request for a call the callee has already ended opens (and fails) a call
            result.callee_strays = max(0, final.cumulative("IncomingCall") - result.created)
        result.sip_drops = udp_address_drops(GATEWAY_HOST, self.gateway.sip_port) - sip_drops_before
        result.achieved_rate = creation_rate(rows, calls)
        result.peak_concurrent = max((row.current_calls for row in rows), default=0)
        rtt_files = sorted(step_dir.glob(f"*_{caller.process.pid}_rtt.csv"))
        result.setup_ms = setup_times_ms(rtt_files[0] if rtt_files else None)
        if not self.gateway.alive():
            result.notes.append(f"gateway exited with {self.gateway.process.returncode}")
        else:
            result.records = wait_for_records(
                self.gateway.db_url, since, result.created, RECORD_WAIT_S
            )
        result.gateway_problems = self.gateway.problem_lines() - problems_before
        metrics_after = gateway_metrics(self.gateway.api_port)
        result.shed = shed_calls(metrics_after) - shed_calls(metrics_before)
        step = step_pauses(
            pauses_by_generation(metrics_before), pauses_by_generation(metrics_after)
        )
        if step is not None:
            result.gc_full = step[-1].count
            result.gc_long = sum(generation.over(LONG_PAUSE_S) for generation in step)
            result.notes.append(describe_pauses(step))
        return result

    def _watch(
        self, caller: SippProcess, callee: SippProcess, first: Sample, result: StepResult
    ) -> list[Sample]:
        """Sample CPU and memory each second until the caller has finished its calls."""
        samples = [first]
        deadline = first.at + self.options.hold_s + self.options.call_ms / 1000 + SIPP_EXTRA_WAIT_S
        repinned = False
        while caller.poll() is None:
            time.sleep(SAMPLE_INTERVAL_S)
            if not self.gateway.alive():
                result.notes.append("gateway died during the step")
                break
            if not repinned:
                self._pin_sipp(caller)
                repinned = True
            samples.append(self._sample([caller, callee], result.profile))
            if time.monotonic() > deadline:
                result.notes.append("sipp stopped at the step's deadline")
                caller.stop()
                break
        return samples

    def _load_figures(self, result: StepResult, samples: list[Sample], first: Sample) -> None:
        """CPU shares over the load window (the step's first ``hold_s`` seconds)."""
        window_end = first.at + self.options.hold_s + SAMPLE_INTERVAL_S / 2
        inside = [sample for sample in samples if sample.at <= window_end]
        last = inside[-1] if len(inside) > 1 else samples[-1]
        wall = last.at - first.at
        result.gateway_rss_peak = max(sample.gateway_rss for sample in samples)
        if wall <= 0:
            return
        result.gateway_cpu = 100.0 * (last.gateway_cpu_s - first.gateway_cpu_s) / wall
        result.sipp_cpu = 100.0 * (last.sipp_cpu_s - first.sipp_cpu_s) / wall
        busy = 100.0 * last.machine.busy_cores_since(first.machine, wall)
        result.softirq_cpu = 100.0 * last.machine.softirq_cores_since(first.machine, wall)
        profiler = 100.0 * (last.profiler_cpu_s - first.profiler_cpu_s) / wall
        if result.profile is not None:
            result.notes.append(f"py-spy used {profiler:.0f}% of a core")
        if self.options.db == "postgresql":
            result.store_cpu = max(0.0, 100.0 * (last.store_cpu_s - first.store_cpu_s) / wall)
        accounted = result.gateway_cpu + result.sipp_cpu + result.softirq_cpu + profiler
        result.other_cpu = max(0.0, busy - accounted - (result.store_cpu or 0.0))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: rates must be positive calls/s")
    return rates


def _cpu(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU number")
    return int(text)


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_callrate", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        help=f"calls/s steps, comma-separated (default {','.join(map(str, DEFAULT_RATES))};"
        f" --quick: {','.join(map(str, QUICK_RATES))})",
    )
    parser.add_argument(
        "--hold-s",
        type=float,
        help=f"seconds each rate is held (default {DEFAULT_HOLD_S:g}; --quick: {QUICK_HOLD_S:g})",
    )
    parser.add_argument("--quick", action="store_true", help="short steps, fewer rates")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--call-ms", type=int, default=DEFAULT_CALL_MS, help="each call's hold time (sipp -d)"
    )
    parser.add_argument(
        "--media-ports",
        type=parse_port_range,
        default=DEFAULT_MEDIA_PORTS,
        help="the gateway's RTP port range (default {}-{})".format(*DEFAULT_MEDIA_PORTS),
    )
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=QUIET_PCT,
        help="%% of a core other processes may use when a step starts",
    )
    parser.add_argument(
        "--quiet-wait-s",
        type=float,
        default=QUIET_WAIT_S,
        help="longest wait for a quiet machine before a step (0: do not wait)",
    )
    parser.add_argument("--gateway-cpu", type=_cpu, default=0)
    parser.add_argument("--sipp-cpu", type=_cpu, default=1)
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place processes")
    parser.add_argument("--max-failed-pct", type=float, default=MAX_FAILED_PCT)
    parser.add_argument("--min-rate-share", type=float, default=MIN_RATE_SHARE)
    parser.add_argument(
        "--caller-media",
        choices=sorted(CALLER_MEDIA),
        default="stream",
        help="how sipp sends the caller's RTP: rtp_stream from a UDP socket (default) or "
        "play_pcap_audio through a raw socket per call",
    )
    parser.add_argument(
        "--caller-media-host",
        default=TRUNK_MEDIA_HOST,
        help=f"the caller's RTP address (default {TRUNK_MEDIA_HOST}; {TRUNK_HOST}: on its "
        "signalling address, where sipp's raw sockets get a copy of each SIP message)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="runs again of a step not held while others used over --quiet-pct of a core",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--every-step",
        action="store_true",
        help="run every rate, past the first not held (how the gateway degrades in overload)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the gateway with py-spy in each step"
    )
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: native frames too (the interpreter's own work, e.g. its GC)",
    )
    parser.add_argument("--py-spy", help="path of py-spy (default: beside python, or on PATH)")
    args = parser.parse_args(argv)
    py_spy = None
    if args.profile:
        py_spy = find_py_spy(args.py_spy)
        if py_spy is None:
            parser.error("--profile needs py-spy (pip install py-spy, or pass --py-spy PATH)")
    usable = os.sched_getaffinity(0)
    gateway_cpus: set[int] | None = None
    sipp_cpus: set[int] | None = None
    if not args.no_pin:
        if {args.gateway_cpu, args.sipp_cpu} - usable or args.gateway_cpu == args.sipp_cpu:
            parser.error(
                f"--gateway-cpu and --sipp-cpu must be two of the usable CPUs {sorted(usable)}"
                " (or pass --no-pin)"
            )
        gateway_cpus, sipp_cpus = {args.gateway_cpu}, {args.sipp_cpu}
    return Options(
        rates=args.rates or list(QUICK_RATES if args.quick else DEFAULT_RATES),
        hold_s=args.hold_s or (QUICK_HOLD_S if args.quick else DEFAULT_HOLD_S),
        call_ms=args.call_ms,
        db=args.db,
        media_ports=args.media_ports,
        gateway_cpus=gateway_cpus,
        sipp_cpus=sipp_cpus,
        max_failed_pct=args.max_failed_pct,
        min_rate_share=args.min_rate_share,
        log_level=args.log_level,
        quiet_pct=args.quiet_pct,
        quiet_wait_s=args.quiet_wait_s,
        retries=args.retries,
        keep=args.keep,
        every_step=args.every_step,
        py_spy=py_spy,
        profile_native=args.profile_native,
        caller_media_host=args.caller_media_host,
        caller_media=args.caller_media,
    )


@contextlib.contextmanager
def bench_database(kind: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """``(url, description)`` of an empty store: a SQLite file or a throwaway PostgreSQL db."""
    if kind == "sqlite":
        path = workdir / "calls.sqlite3"
        yield f"sqlite+aiosqlite:///{path}", f"SQLite file {path} (WAL)"
        return
    from tests.support.databases import create_database, drop_database, postgres_admin_url

    admin_url = postgres_admin_url()
    url = create_database(admin_url)
    try:
        yield (
            url.render_as_string(hide_password=False),
            f"PostgreSQL {url.host}:{url.port or 5432}/{url.database} (throwaway database)",
        )
    finally:
        assert url.database is not None
        drop_database(admin_url, url.database)


def code_revision() -> str:
    """The repository's commit and whether the gateway's code differs from it."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = [line for line in git("status", "--porcelain", "--", "gateway").splitlines() if line]
    state = f"{len(changed)} uncommitted changes in gateway/" if changed else "gateway/ clean"
    return f"{commit} ({state})"


def _method_lines(options: Options, sipp: str, store: str) -> list[str]:
    doc = __doc__ or ""
    method = doc.split("Method\n------\n", 1)[-1].strip()
    placement = (
        f"gateway pinned to CPU {min(options.gateway_cpus)}, sipp caller + callee (and py-spy)"
        f" pinned to CPU {min(options.sipp_cpus)}; this script and the kernel float"
        if options.gateway_cpus and options.sipp_cpus
        else "no pinning: the scheduler places the gateway, sipp and this script"
    )
    carried = calls_carried(options.media_ports)
    return [
        method,
        "",
        *machine_lines(),
        f"code: {code_revision()}",
        f"peers: {sipp_version(sipp)} ({sipp}), UDP; caller sends tests/integration/media/"
        f"{CALLER_MEDIA[options.caller_media].file} (PCMU, 20 ms packets) by "
        f"{CALLER_MEDIA[options.caller_media].action} from {options.caller_media_host}, "
        "from the call's ACK to its BYE",
        f"placement: {placement}",
        "note: the gateway, both sipp peers and the kernel's loopback work share this "
        f"machine's {os.cpu_count()} cores, so the figure understates the gateway alone",
        f"store: {store}",
        f"media ports {options.media_ports[0]}-{options.media_ports[1]}: {carried} "
        f"simultaneous calls (2 RTP/RTCP pairs each); sipp -l {carried}",
        f"steps: {','.join(map(str, options.rates))} calls/s, {options.hold_s:g} s each, "
        f"call hold {options.call_ms} ms; held = failed < {options.max_failed_pct:g}%, "
        f"achieved >= {options.min_rate_share:.0%} of target, a closed record per call, "
        "RTP in the records",
    ]


def _legend() -> list[str]:
    return [
        "setup = INVITE sent to 200 received at the caller; OPTIONS = round trip of an OPTIONS "
        "sent to the gateway every 20 ms during the step (its event loop's delay);",
        "peak calls = sipp's most simultaneous calls;",
        "GC full/>25ms = the gateway's full collections in the step, and its collector "
        f"pauses over {LONG_PAUSE_S * 1000:g} ms (any generation), from its /metrics;",
        "CPU% = % of one core over the step's load; PG = the PostgreSQL server (--db "
        "postgresql); softirq = kernel deferred work (loopback delivery); others = the rest "
        "of the machine's busy time (this script, other processes);",
        "records closed = closed rows / calls created; RTP/call in/out = packets from the "
        f"caller / to the callee in media_stats (sample of {RECORD_SAMPLE});",
        "RTP/call callee = datagrams that reached the callee's media port per successful call;",
        "notes: sipp's failure reasons; 'requests of ended calls' = retransmissions (BYE) the "
        "gateway sent after the callee had answered, i.e. the answer took over T1 (500 ms) to "
        "be read; 'SIP socket dropped' = datagrams lost on the gateway's full SIP socket",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print("bench_callrate: " + (__doc__ or "").split("\n", 1)[0])
    print()
    try:
        sipp = find_sipp()
    except (pytest.skip.Exception, pytest.fail.Exception) as error:
        print(f"bench_callrate skipped: {error}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="callgate-callrate-"))
    results: list[StepResult] = []
    try:
        with contextlib.ExitStack() as stack:
            try:
                db_url, store = stack.enter_context(bench_database(options.db, workdir))
            except RuntimeError as error:
                print(f"bench_callrate: no {options.db} store: {error}")
                return 2
            for line in _method_lines(options, sipp, store):
                print(line)
            print(flush=True)
            gateway = start_gateway(
                workdir,
                db_url,
                cpus=options.gateway_cpus,
                media_ports=options.media_ports,
                log_level=options.log_level,
                store_max_delay_s=None,  # the product's own batching
                instance_id="bench-callrate",
            )
            stack.callback(gateway.stop)
            print(
                f"gateway pid {gateway.pid}: RSS {process_rss_bytes(gateway.pid) / 2**20:.0f}"
                f" MiB at start; working directory {workdir}",
                flush=True,
            )
            print(call_path_line(gateway.log_text()), flush=True)
            bench = CallRateBench(options, sipp, gateway, workdir)
            for rate in options.rates:
                step = _run_rate(bench, rate, results)
                if not gateway.alive():
                    break
                if step.shortfalls(options.max_failed_pct, options.min_rate_share) and not (
                    options.every_step
                ):
                    break
            code = gateway.stop()
            if code != 0:
                print(f"gateway exited with {code}:\n{gateway.log_text()[-3000:]}")
        _report(results, options)
    finally:
        if options.keep:
            print(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _run_rate(bench: CallRateBench, rate: int, results: list[StepResult]) -> StepResult:
    """Run one rate; retry it when it was not held while other processes loaded the machine."""
    options = bench.options
    for attempt in range(options.retries + 1):
        began = time.monotonic()
        step = bench.run_step(rate, attempt)
        results.append(step)
        shortfalls = step.shortfalls(options.max_failed_pct, options.min_rate_share)
        verdict = "held" if not shortfalls else "NOT held: " + ", ".join(shortfalls)
        print(
            f"step {rate} calls/s (attempt {attempt + 1}): {step.created} calls, "
            f"{step.failed} failed, achieved {step.achieved_rate:.1f}/s, gateway CPU "
            f"{step.gateway_cpu:.0f}%, others {step.other_cpu:.0f}% "
            f"({time.monotonic() - began:.0f} s): {verdict}",
            flush=True,
        )
        open_calls = bench.wait_until_idle()
        if open_calls:
            step.notes.append(f"{open_calls} records still open {IDLE_WAIT_S:.0f} s later")
        time.sleep(SETTLE_S)
        disturbed = step.other_cpu > options.quiet_pct
        if not shortfalls or not disturbed or attempt == options.retries:
            return step
        step.superseded = True
        step.notes.append("retried: other processes loaded the machine")
    raise AssertionError("unreachable: the last attempt returns")


def _report(results: list[StepResult], options: Options) -> None:
    print()
    print(format_table(TABLE_HEADERS, [step.row() for step in results]))
    for line in _legend():
        print(line)
    final = [step for step in results if not step.superseded]
    held = [
        step
        for step in final
        if not step.shortfalls(options.max_failed_pct, options.min_rate_share)
    ]
    not_held = [step for step in final if step not in held]
    for title, step in (
        ("highest step held", held[-1] if held else None),
        ("first step not held", not_held[0] if not_held else None),
    ):
        if step is not None and step.profile is not None:
            print()
            print(f"gateway profile, {title} ({step.target_rate} calls/s):")
            for line in step.profile.summary():
                print("  " + line)
    print()
    if held:
        best = held[-1]
        print(
            f"highest rate held: {best.target_rate} calls/s for {best.hold_s:g} s "
            f"with {best.failed_pct:.3f}% failed"
        )
    elif final:
        first = final[0]
        print(
            f"highest rate held: none (lowest step, {first.target_rate} calls/s for "
            f"{first.hold_s:g} s, had {first.failed_pct:.3f}% failed: "
            f"{', '.join(first.shortfalls(options.max_failed_pct, options.min_rate_share))})"
        )
    else:
        print("highest rate held: none (no step ran)")


if __name__ == "__main__":
    raise SystemExit(main())
