"""Benchmark of the anchored RTP relay: packets/s on one core, loss, added latency, memory.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_relay
    /work/main/.venv/bin/python -m tests.bench.bench_relay --calls 500,1500 --duration 10
    /work/main/.venv/bin/python -m tests.bench.bench_relay --realtime   # on a shared host

Method
------
Three processes. The relay (:class:`gateway.media.relay.MediaRelay`, on
uvloop unless ``--loop asyncio``) runs alone, pinned to one core
(``--relay-cpu``), its heap settled for serving as the gateway's is
(:func:`gateway.app.settle_for_serving`: startup objects frozen, the
collector's thresholds :data:`gateway.app.GC_THRESHOLDS`); a fresh relay
process is started for every step so its memory is measured from a clean
baseline. The window's packet counts are the relay's own totals
(``packet_totals``, what ``/metrics`` reads). The load generator runs pinned to
another core (``--gen-cpu``) and emulates N G.711 calls: every call has a
caller phone and a callee phone, each a UDP socket on 127.0.0.1 that sends
a 172-byte RTP packet (12-byte header + 160 bytes of PCMU) every 20 ms, the
2N phones' send times spread evenly over the 20 ms period (sent in bursts
of at most 1 ms, the generator's sleep granularity). The relay holds one
session per call with both phones' addresses set as remotes, so every call
is 100 packets/s through the relay (1,500 calls = 150,000 packets/s). The
parent process only orchestrates.

Each step first runs the DIRECT path (each phone sends straight to its
peer, no relay), then the RELAY path, with the same generator. The direct
run is capped at ``--direct-max-calls`` (1,000): there the generator is
both ends of every packet, and the kernel path it measures does not depend
on the number of calls.

The payload carries the send time (``time.time_ns()``) and the phone's
index; the sinks read the kernel's receive timestamp of every packet
(SO_TIMESTAMPNS, the same CLOCK_REALTIME), so the sink's own scheduling
delay is not counted. Latency = receive timestamp - send time; "added"
latency is relay minus direct at the same percentile. Loss counts every
packet sent in the step against every packet received (the sinks read on
until 0.5 s pass without a packet, 10 s at most). "late%" is the share
of packets more than 60 ms late (past a typical jitter buffer: lost to the
listener even though they arrived). Latency percentiles, late% and
packets/s exclude the first ``--warmup`` seconds.

Columns: "relayCPU" is the relay process's user+system CPU (getrusage, read
by the relay at the start and end of the window) per second of wall time;
"CPU-s/1kpps" is that divided by thousands of packets/s relayed. On
loopback a sender's system call also delivers the packet into the
receiver's socket, so the relay's CPU includes delivery into the sinks (and
the generator's includes delivery into the relay). "core" is how busy the
relay's CPU was in total (/proc/stat): relay, softirqs, and anything else
that ran there. "rq wait" is the share of time the relay was runnable but
waiting for its CPU (/proc/self/schedstat): more than a few percent means
other load on the core disturbed the step; ``--realtime`` runs relay and
generator SCHED_FIFO so ordinary processes cannot delay them. RSS per call =
(relay VmRSS with N calls under traffic - VmRSS of the same process before
its sessions) / N; kernel socket buffers are not in RSS. "machine µs/pkt"
is what relaying adds to the whole machine's busy time (every CPU, softirqs
included, /proc/stat) per packet: the relay run's busy time per packet
relayed less the direct run's per packet delivered. It is the one column that
sees the kernel forwarder's work, which runs in the softirq of whichever CPU
receives the packet (on loopback, the generator's), not in the relay process.

The generator is ``rtpload.c`` (``--generator c``, the default), compiled
with ``$CC`` (or ``cc``) at start and run by the generator process on the
phones' sockets it inherits: the schedule, packets and sinks described above,
without the interpreter's cost per packet (``--generator python`` runs the same
schedule in Python, which sets the pace from about 100,000 packets/s on a fast
host).

The generator is checked too: "gen lag" is how late (p99 over send
batches) it sent against the schedule, and "gen busy" its CPU per wall
second. A step where the generator lagged more than 5 ms at p99 or was over
95 % busy is marked GENERATOR-LIMITED: its numbers measure the generator,
not the relay.

Findings that shaped the relay (2-vCPU Xeon 2.1 GHz VM, Python 3.11,
uvloop 0.23, ``--realtime``): uvloop's ``DatagramProtocol`` path costs about
7-8 µs of relay CPU per packet, about half of it in the kernel's sendto;
``loop.add_reader`` with one ``recvfrom`` per wakeup costs about 40 % more,
reading until BlockingIOError more still, and one epoll set drained per
wakeup about the same as the protocol path. asyncio's own loop is about
4-5x slower than uvloop. Sending through the socket's ``sendto`` instead of
the transport's avoids uvloop's 2048-entry address cache, which thrashes
above about 1,000 calls (0.6-0.8 µs per packet). Raising SO_RCVBUF/SO_SNDBUF
to 4 MB changed neither CPU nor loss: a 50 packet/s socket's default buffer
already holds seconds of media. Exact per-packet RFC 3550 statistics cost
about 0.5 µs per packet. A latched party on a flow socket (connected to it,
read through ``add_reader`` with ``recv``, sent to with ``send``) costs about
10 % less relay CPU per packet than the protocol path on the first socket
(2-vCPU EPYC VM, 700 calls, both paths in one run: 10.2-11.2 against
11.9-13.1 µs): the kernel keeps the connected socket's route instead of
looking one up per packet, and no source address is built or destination
parsed per packet. Two thirds of the relay's core is the kernel's work
(an ad hoc ``perf`` profile: receive, send, and on loopback the delivery into the receiving
phone's socket, which a real network card would take off the core). The native
forwarder (2-vCPU VM, ``--realtime``, both paths in each run) costs 8.2-12.0 µs
of relay CPU per packet where flow sockets in Python cost 12.9-17.6, and holds
850 calls at zero loss with 0.49 ms p99 added latency where Python saturates
its core from 700; its own code is under 3 % of its core (``perf``), so what
is left is the kernel's. The kernel forwarder removes that: no system call, wakeup
or copy to user space per packet; on the same host it added 0.8-1.5 µs of machine
time per packet against the native forwarder's 7.2-9.2, and held 1,500 calls at
zero loss with no added latency measurable in microseconds.

``--paths`` picks the relay paths each step runs in turn, after the same
direct run: ``kernel`` (latched flow sockets served by the kernel forwarder,
:mod:`gateway.media.kernel`, the gateway's default where it can run),
``native`` (latched flow sockets served by the native forwarder,
:mod:`gateway.media.fastpath`, the default elsewhere), ``flows`` (flow sockets
relayed in Python) and ``first`` (every packet on the first socket, in
Python); the default is ``kernel,native,flows``. The native forwarder's thread
runs in the relay process, so "relayCPU" and "core" count it; the kernel
forwarder's work shows in "machine µs/pkt" only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import multiprocessing
import multiprocessing.connection
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.app import settle_for_serving

PACKET_SIZE = 172
RELAY_PATHS: dict[str, dict[str, Any]] = {
    "kernel": {"kernel_forwarding": "on"},
    "native": {},
    "flows": {"fastpath": False},
    "first": {"flow_sockets": False},
}
"""The relay's per-packet paths, as MediaRelay keyword arguments: latched parties on flow
sockets served by the native forwarder (the gateway's default), flow sockets relayed in
Python, every packet on the first socket in Python."""
PTIME_NS = 20_000_000
SAMPLES_PER_PACKET = 160
HEADER = struct.Struct("!BBHIIqI")
"""RTP header (V=2, PT=0 PCMU, seq, timestamp, SSRC) + send time (ns) + phone index."""
RECORD = np.dtype(
    [("head", "V8"), ("ssrc", ">u4"), ("sent_ns", ">i8"), ("phone", ">u4"), ("rest", "V8")]
)
"""The first 32 octets of a generator packet, all the sinks read."""
RECV_BYTES = RECORD.itemsize
TIMESPEC = np.dtype([("sec", "<i8"), ("nsec", "<i8")])
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: struct timespec receive timestamps as SCM_TIMESTAMPNS (socket(7))."""
CMSG_SPACE = socket.CMSG_SPACE(16)
MAX_BURST = 256
"""Sends in a row before the generator reads again, so a late generator keeps sinking."""
DRAIN_S = 0.5
"""After the last send, the sinks read on until nothing came for this long..."""
DRAIN_MAX_S = 10.0
"""...or this long after the last send at most."""
TARGET_ADDED_P99_US = 2000.0
LATE_US = 60_000.0
"""A packet later than this is past a typical 60 ms jitter buffer: as good as lost."""
SATURATED_CPU = 0.92
"""Relay CPU per wall second from which a step counts as saturating the core."""
CLEAN_RUN_DELAY = 0.05
"""Share of time the relay may wait for its CPU before a step counts as disturbed."""
LAG_LIMIT_MS = 5.0
BUSY_LIMIT = 0.95
PHONE_HOST = "127.0.0.1"


# ---------------------------------------------------------------------------- relay process


def _proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _proc_run_delay_s() -> float:
    """Seconds this process waited on a run queue for a CPU (/proc/self/schedstat)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_busy_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]
                return sum(values) - idle, sum(values)
    return 0, 0


def _machine_busy_s() -> float:
    """Seconds of CPU the whole machine has spent busy (every CPU, softirq included),
    from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _claim_cpu(cpu: int, nice: int, realtime: bool = False) -> None:
    """Pin this process to ``cpu``; when asked, raise its priority (needs root)."""
    os.sched_setaffinity(0, {cpu})
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            print("cannot use SCHED_FIFO: not permitted", file=sys.stderr)
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except PermissionError:
            print(f"cannot set nice {nice}: not permitted", file=sys.stderr)


def _relay_main(conn: multiprocessing.connection.Connection, options: dict[str, Any]) -> None:
    _claim_cpu(options["relay_cpu"], options["nice"], options["realtime"])
    module_name, _, class_name = options["relay_class"].partition(":")
    relay_class = getattr(importlib.import_module(module_name), class_name)
    if options["loop"] == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_relay_serve(conn, relay_class, options))


async def _relay_serve(
    conn: multiprocessing.connection.Connection, relay_class: type, options: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = dict(options["relay_kwargs"])
    if options["rcvbuf"]:
        kwargs["recv_buffer"] = options["rcvbuf"]
    if options["sndbuf"]:
        kwargs["send_buffer"] = options["sndbuf"]
    relay = relay_class(PHONE_HOST, options["port_min"], options["port_max"], **kwargs)
    settle_for_serving()  # as the gateway's process does once it has started
    sessions: list[Any] = []
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    conn.send(("ready", _proc_rss_bytes(os.getpid()), type(loop).__module__))
    while True:
        command = await commands.get()
        name = command[0]
        if name == "setup":
            calls: int = command[1]
            for index in range(calls):
                sessions.append(await relay.create_session(f"call-{index}"))
            ports = [(s.local_ports("a")[0][0], s.local_ports("b")[0][0]) for s in sessions]
            conn.send(ports)
        elif name == "remotes":
            for session, (caller_port, callee_port) in zip(sessions, command[1], strict=True):
                session.set_remote("a", 0, PHONE_HOST, caller_port, None, False)
                session.set_remote("b", 0, PHONE_HOST, callee_port, None, False)
            conn.send("ok")
        elif name == "counters":
            relayed, foreign = _relayed_and_foreign(relay, sessions)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            rss = _proc_rss_bytes(os.getpid())
            conn.send((time.monotonic(), relayed, foreign, rss, cpu, _proc_run_delay_s()))
        elif name == "exit":
            await relay.close()
            conn.send("bye")
            return


def _relayed_and_foreign(relay: Any, sessions: list[Any]) -> tuple[int, int]:
    """Packets relayed and dropped as foreign so far: the relay's own totals (what
    ``/metrics`` reads, a few counters per session) when it keeps them, else every
    session's statistics (about 2 us a session: a pause the traffic would queue behind)."""
    if hasattr(relay, "packet_totals"):
        totals = relay.packet_totals()
        return totals["packets_out"], totals["dropped_foreign"]
    relayed = foreign = 0
    for session in sessions:
        stats = session.stats()
        relayed += stats["a"]["packets_out"] + stats["b"]["packets_out"]
        foreign += stats["a"]["dropped_foreign"] + stats["b"]["dropped_foreign"]
    return relayed, foreign


# ------------------------------------------------------------------------ generator process


@dataclass
class RunResult:
    sent: int
    send_errors: int
    received: int
    stray: int
    latencies_us: np.ndarray
    lag_p99_ms: float
    lag_max_ms: float
    busy: float
    run_delay: float
    cpu_s: float
    wall_s: float


class Phones:
    """2N UDP sockets: phone 2i is call i's caller, phone 2i+1 its callee."""

    def __init__(self, calls: int) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(2 * calls):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((PHONE_HOST, 0))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.socks.append(sock)
        self.ports = [sock.getsockname()[1] for sock in self.socks]
        self.epoll = select.epoll()
        for sock in self.socks:
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def connect(self, ports: list[int]) -> None:
        for sock, port in zip(self.socks, ports, strict=True):
            sock.connect((PHONE_HOST, port))
        self._drain()

    def _drain(self) -> None:
        for sock in self.socks:
            while True:
                try:
                    sock.recv(RECV_BYTES)
                except (BlockingIOError, ConnectionRefusedError):
                    break

    def close(self) -> None:
        self.epoll.close()
        for sock in self.socks:
            sock.close()

    def run(self, duration: float, warmup: float, calls: int | None = None) -> RunResult:
        """Send on schedule and sink everything for ``duration`` s, then drain."""
        socks = self.socks if calls is None else self.socks[: 2 * calls]
        count = len(socks)
        sends = [sock.send for sock in socks]
        receivers: list[Any] = [None] * (max(sock.fileno() for sock in socks) + 1)
        for sock in socks:
            receivers[sock.fileno()] = sock.recvmsg
        poll = self.epoll.poll
        pack_into = HEADER.pack_into
        clock = time.perf_counter_ns
        wallclock = time.time_ns
        buf = bytearray(PACKET_SIZE)
        slot = PTIME_NS / count
        offsets = [int(k * slot) for k in range(count)]
        datas: list[bytes] = []
        stamps: list[bytes] = []
        chunks: list[np.ndarray] = []
        lags: list[int] = []
        sent = 0
        send_errors = 0
        received = 0
        stray = 0
        rusage0 = resource.getrusage(resource.RUSAGE_SELF)
        delay0 = _proc_run_delay_s()
        start = clock()
        start_wall = wallclock()
        window_start_wall = start_wall + int(warmup * 1e9)
        stop_sending = start + int(duration * 1e9)
        stop = stop_sending + int(DRAIN_MAX_S * 1e9)  # until sending ends; then see below
        give_up = stop
        round_start = start
        k = 0
        seq = 0
        next_due = start
        sending = True
        now = start
        while now < stop:
            if sending and next_due <= now:
                lags.append(now - next_due)
                burst = 0
                while next_due <= now and burst < MAX_BURST:
                    burst += 1
                    pack_into(
                        buf,
                        0,
                        0x80,
                        0,
                        seq & 0xFFFF,
                        (seq * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
                        k + 1,
                        wallclock(),
                        k,
                    )
                    try:
                        sends[k](buf)
                        sent += 1
                    except OSError:
                        send_errors += 1
                    k += 1
                    if k == count:
                        k = 0
                        seq += 1
                        round_start += PTIME_NS
                        if round_start >= stop_sending:
                            sending = False
                            give_up = clock() + int(DRAIN_MAX_S * 1e9)
                            stop = clock() + int(DRAIN_S * 1e9)
                            break
                    next_due = round_start + offsets[k]
                now = clock()
            # epoll rounds the timeout up to whole milliseconds: sends go out in
            # bursts of at most 1 ms worth, and the generator sleeps in between
            wait_ns = (next_due - now) if sending else (stop - now)
            timeout = max(wait_ns, 0) / 1e9
            events = poll(timeout, count)
            if events:
                for fd, _ in events:
                    try:
                        data, ancillary, _, _ = receivers[fd](RECV_BYTES, CMSG_SPACE)
                    except OSError:
                        continue
                    if len(data) < RECV_BYTES:
                        continue
                    datas.append(data)
                    stamps.append(ancillary[0][2] if ancillary else _timespec_now())
                if len(datas) >= 50_000:
                    latencies, ours = _latencies(
                        datas, stamps, count, start_wall, window_start_wall
                    )
                    chunks.append(latencies)
                    received += ours
                    stray += len(datas) - ours
                    datas = []
                    stamps = []
            now = clock()
            if not sending and events:  # still arriving: keep draining
                stop = min(max(stop, now + int(DRAIN_S * 1e9)), give_up)
        latencies, ours = _latencies(datas, stamps, count, start_wall, window_start_wall)
        chunks.append(latencies)
        received += ours
        stray += len(datas) - ours
        rusage1 = resource.getrusage(resource.RUSAGE_SELF)
        run_delay = (_proc_run_delay_s() - delay0) / ((now - start) / 1e9)
        wall_ns = now - start
        cpu_s = (rusage1.ru_utime + rusage1.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
        lag_ms = np.array(lags, dtype=np.float64) / 1e6 if lags else np.zeros(1)
        return RunResult(
            sent=sent,
            send_errors=send_errors,
            received=received,
            stray=stray,
            latencies_us=np.concatenate(chunks) if chunks else np.zeros(0),
            lag_p99_ms=float(np.percentile(lag_ms, 99)),
            lag_max_ms=float(lag_ms.max()),
            busy=cpu_s / (wall_ns / 1e9),
            run_delay=run_delay,
            cpu_s=cpu_s,
            wall_s=wall_ns / 1e9,
        )

    def run_native(
        self,
        binary: str,
        duration: float,
        warmup: float,
        calls: int | None = None,
        cpus: tuple[int, ...] = (),
    ) -> RunResult:
        """:meth:`run` by the C generator (``rtpload.c``): the same schedule, packets and
        sinks, without the interpreter's cost per packet. It inherits the phones' sockets
        and writes what it received to files that :func:`_latencies` reads as usual.

        With ``cpus``, one generator per CPU, each with a share of the calls (both phones
        of a call in the same share), their figures summed."""
        socks = self.socks if calls is None else self.socks[: 2 * calls]
        pairs = len(socks) // 2
        workers = max(1, len(cpus))
        shares = [
            socks[2 * (pairs * n // workers) : 2 * (pairs * (n + 1) // workers)]
            for n in range(workers)
        ]
        with tempfile.TemporaryDirectory(prefix="rtpload-") as outdir:
            processes = []
            for n, share in enumerate(shares):
                fds = [sock.fileno() for sock in share]
                directory = Path(outdir) / str(n)
                directory.mkdir()
                cpu = {cpus[n]} if cpus else None
                processes.append(
                    subprocess.Popen(
                        [binary, f"{duration}", str(directory), *map(str, fds)],
                        pass_fds=fds,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        preexec_fn=(lambda cpu=cpu: os.sched_setaffinity(0, cpu)) if cpu else None,
                    )
                )
            parts = []
            for n, (process, share) in enumerate(zip(processes, shares, strict=True)):
                out, err = process.communicate()
                if process.returncode != 0:
                    raise RuntimeError(f"rtpload failed ({process.returncode}): {err.strip()}")
                directory = Path(outdir) / str(n)
                parts.append(
                    (
                        out.split(),
                        len(share),
                        np.fromfile(directory / "received.bin", dtype=NATIVE_RECEIVED),
                        np.fromfile(directory / "lags.bin", dtype=np.int64),
                    )
                )
        latencies, received_total, stray, lags, sent_total = [], 0, 0, [], 0
        send_errors_total, cpu_total, delay_total, wall = 0, 0.0, 0.0, 0.0
        for summary, phones, received, lags_ns in parts:
            sent, send_errors, cpu_s, delay_s, wall_s, start_wall = summary
            start_wall_ns = int(start_wall)
            window_start_wall = start_wall_ns + int(warmup * 1e9)
            part_latencies, ours = _latencies_of(
                received["head"], received["stamp"], phones, start_wall_ns, window_start_wall
            )
            latencies.append(part_latencies)
            received_total += ours
            stray += int(received.size) - ours
            lags.append(lags_ns)
            sent_total += int(sent)
            send_errors_total += int(send_errors)
            cpu_total += float(cpu_s)
            delay_total += float(delay_s)
            wall = max(wall, float(wall_s))
        lag_ms = np.concatenate(lags) / 1e6 if sum(lag.size for lag in lags) else np.zeros(1)
        return RunResult(
            sent=sent_total,
            send_errors=send_errors_total,
            received=received_total,
            stray=stray,
            latencies_us=np.concatenate(latencies),
            lag_p99_ms=float(np.percentile(lag_ms, 99)),
            lag_max_ms=float(lag_ms.max()),
            busy=cpu_total / wall / workers,
            run_delay=delay_total / wall / workers,
            cpu_s=cpu_total,
            wall_s=wall,
        )


NATIVE_RECEIVED = np.dtype([("head", RECORD), ("stamp", TIMESPEC)])
"""What the C generator writes per received datagram: its first 32 octets, the kernel's
receive timestamp."""


def build_native_generator(directory: str) -> str:
    """Compile ``rtpload.c`` into ``directory``; the binary's path."""
    source = Path(__file__).with_name("rtpload.c")
    binary = str(Path(directory) / "rtpload")
    compiler = os.environ.get("CC", "cc")
    subprocess.run([compiler, "-O2", "-Wall", "-o", binary, str(source)], check=True)
    return binary


def _timespec_now() -> bytes:
    now = time.time_ns()
    return struct.pack("<qq", now // 1_000_000_000, now % 1_000_000_000)


def _latencies(
    datas: list[bytes], stamps: list[bytes], phones: int, start_wall: int, window_start_wall: int
) -> tuple[np.ndarray, int]:
    """Latency (µs) of this run's packets sent inside the measuring window, and how many
    received packets were this run's (a stray datagram has no valid phone/SSRC pair)."""
    if not datas:
        return np.zeros(0), 0
    records = np.frombuffer(b"".join(datas), dtype=RECORD)
    times = np.frombuffer(b"".join(stamps), dtype=TIMESPEC)
    return _latencies_of(records, times, phones, start_wall, window_start_wall)


def _latencies_of(
    records: np.ndarray, times: np.ndarray, phones: int, start_wall: int, window_start_wall: int
) -> tuple[np.ndarray, int]:
    """:func:`_latencies` of records and timestamps already in arrays."""
    if records.size == 0:
        return np.zeros(0), 0
    arrived = times["sec"] * 1_000_000_000 + times["nsec"]
    sent = records["sent_ns"].astype(np.int64)
    phone = records["phone"].astype(np.int64)
    ours = (phone < phones) & (records["ssrc"].astype(np.int64) == phone + 1)
    ours &= (sent >= start_wall) & (sent <= arrived)
    in_window = ours & (sent >= window_start_wall)
    return (arrived[in_window] - sent[in_window]) / 1000.0, int(ours.sum())


def _generator_main(
    conn: multiprocessing.connection.Connection,
    gen_cpu: int,
    nice: int,
    realtime: bool,
    native_binary: str | None = None,
    gen_cpus: tuple[int, ...] = (),
) -> None:
    _claim_cpu(gen_cpu, nice, realtime)
    phones: Phones | None = None
    while True:
        command = conn.recv()
        name = command[0]
        if name == "phones":
            if phones is not None:
                phones.close()
            phones = Phones(command[1])
            conn.send(phones.ports)
        elif name == "connect":
            assert phones is not None
            phones.connect(command[1])
            conn.send("ok")
        elif name == "run":
            assert phones is not None
            if native_binary is not None:
                conn.send(phones.run_native(native_binary, *command[1:], cpus=gen_cpus))
            else:
                conn.send(phones.run(*command[1:]))
        elif name == "exit":
            if phones is not None:
                phones.close()
            conn.send("bye")
            return


# ------------------------------------------------------------------------------- orchestration


@dataclass
class StepResult:
    calls: int
    path: str
    pps: float
    loss_pct: float
    direct: RunResult
    relay: RunResult
    relay_cpu_per_s: float
    core_busy: float
    run_delay: float
    rss_per_call: float
    machine_us_added: float
    foreign: int
    note: str


def _percentiles(latencies_us: np.ndarray) -> tuple[float, float]:
    if latencies_us.size == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(latencies_us, [50, 99])
    return float(p50), float(p99)


def _late_pct(run: RunResult) -> float:
    """Share of measured packets later than a jitter buffer waits (useless to the callee)."""
    if run.latencies_us.size == 0:
        return float("nan")
    return 100.0 * float(np.count_nonzero(run.latencies_us > LATE_US)) / run.latencies_us.size


def _limited(run: RunResult) -> bool:
    return run.lag_p99_ms > LAG_LIMIT_MS or run.busy > BUSY_LIMIT


REPLY_TIMEOUT_S = 120.0


def _reply(conn: multiprocessing.connection.Connection, process: Any = None) -> Any:
    """The next message from a helper process; RuntimeError if it died or went silent."""
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while not conn.poll(0.5):
        if process is not None and not process.is_alive():
            raise RuntimeError(f"relay process exited with code {process.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError("no reply from a benchmark process")
    return conn.recv()


def run_step(
    ctx: multiprocessing.context.SpawnContext,
    gen: multiprocessing.connection.Connection,
    calls: int,
    args: argparse.Namespace,
) -> list[StepResult]:
    """One step: the direct path, then the relay once per ``--paths`` path."""
    gen.send(("phones", calls))
    phone_ports: list[int] = _reply(gen)
    callers = phone_ports[0::2]
    callees = phone_ports[1::2]

    # DIRECT: phone 2i <-> phone 2i+1
    direct_targets = [port for pair in zip(callees, callers, strict=True) for port in pair]
    gen.send(("connect", direct_targets))
    _reply(gen)
    direct_calls = min(calls, args.direct_max_calls)
    gen.send(
        ("run", args.direct_duration, min(args.warmup, args.direct_duration / 2), direct_calls)
    )
    busy_before = _machine_busy_s()
    direct: RunResult = _reply(gen)
    direct_busy_s = _machine_busy_s() - busy_before
    # what the machine spends per packet with no relay: the generator sends and sinks it
    direct_us_per_packet = 1e6 * direct_busy_s / direct.received if direct.received else 0.0
    return [
        _relay_run(ctx, gen, calls, args, direct, callers, callees, path, direct_us_per_packet)
        for path in args.paths
    ]


def _relay_run(
    ctx: multiprocessing.context.SpawnContext,
    gen: multiprocessing.connection.Connection,
    calls: int,
    args: argparse.Namespace,
    direct: RunResult,
    callers: list[int],
    callees: list[int],
    path: str,
    direct_us_per_packet: float,
) -> StepResult:
    parent, child = ctx.Pipe()
    options = {
        "relay_kwargs": RELAY_PATHS[path],
        "relay_cpu": args.relay_cpu,
        "relay_class": args.relay_class,
        "loop": args.loop,
        "rcvbuf": args.rcvbuf,
        "sndbuf": args.sndbuf,
        "port_min": args.port_min,
        "port_max": args.port_max,
        "nice": args.nice,
        "realtime": args.realtime,
    }
    process = ctx.Process(target=_relay_main, args=(child, options), daemon=True)
    process.start()
    _, rss_base, _loop_module = _reply(parent, process)
    parent.send(("setup", calls))
    relay_ports: list[tuple[int, int]] = _reply(parent, process)
    parent.send(("remotes", list(zip(callers, callees, strict=True))))
    _reply(parent, process)
    relay_targets = [port for pair in relay_ports for port in pair]
    gen.send(("connect", relay_targets))
    _reply(gen)
    gen.send(("run", args.duration, args.warmup))
    time.sleep(args.warmup)
    busy0, total0 = _cpu_busy_ticks(args.relay_cpu)
    machine0 = _machine_busy_s()
    parent.send(("counters",))
    t0, relayed0, _, _, cpu0, delay0 = _reply(parent, process)
    time.sleep(max(0.1, args.duration - args.warmup - 0.2))
    parent.send(("counters",))
    t1, relayed1, foreign, rss, cpu1, delay1 = _reply(parent, process)
    busy1, total1 = _cpu_busy_ticks(args.relay_cpu)
    machine1 = _machine_busy_s()
    relay: RunResult = _reply(gen)
    parent.send(("exit",))
    _reply(parent, process)
    process.join(5)

    window = t1 - t0
    pps = (relayed1 - relayed0) / window
    loss = 100.0 * (relay.sent - relay.received) / relay.sent if relay.sent else float("nan")
    notes = []
    if _limited(relay) or _limited(direct):
        notes.append("GENERATOR-LIMITED")
    starved = max(relay.run_delay, direct.run_delay)
    if starved >= CLEAN_RUN_DELAY:
        notes.append(f"generator waited {starved:.0%} for its CPU")
    if relay.stray or direct.stray:
        notes.append(f"stray packets {relay.stray}/{direct.stray}")
    if foreign:
        notes.append(f"foreign drops {foreign}")
    if relay.send_errors or direct.send_errors:
        notes.append(f"send errors {relay.send_errors}/{direct.send_errors}")
    return StepResult(
        calls=calls,
        path=path,
        pps=pps,
        loss_pct=loss,
        direct=direct,
        relay=relay,
        relay_cpu_per_s=(cpu1 - cpu0) / window,
        core_busy=(busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan"),
        run_delay=(delay1 - delay0) / window,
        rss_per_call=(rss - rss_base) / calls,
        machine_us_added=(
            1e6 * (machine1 - machine0) / (relayed1 - relayed0) - direct_us_per_packet
            if relayed1 > relayed0
            else float("nan")
        ),
        foreign=foreign,
        note=", ".join(notes),
    )


def _print_header(args: argparse.Namespace, loop_name: str) -> None:
    print(
        f"python {sys.version.split()[0]}, relay loop: {loop_name}, relay {args.relay_class}, "
        f"generator {args.generator}"
    )
    print(
        f"relay on CPU {args.relay_cpu}, generator on CPU "
        f"{','.join(map(str, args.gen_cpus)) if args.gen_cpus else args.gen_cpu}; "
        f"{args.duration:g} s per step ({args.warmup:g} s warm-up), "
        f"direct {args.direct_duration:g} s; SO_RCVBUF={args.rcvbuf or 'default'} "
        f"SO_SNDBUF={args.sndbuf or 'default'}; realtime={args.realtime} nice={args.nice}"
    )
    print("G.711 calls, 172-byte RTP every 20 ms both ways (100 packets/s relayed per call)")
    print(
        "latencies in µs (kernel receive timestamp - send time); added = relay - direct; "
        f"direct baseline at up to {args.direct_max_calls} calls"
    )
    print()
    print(
        f"{'calls':>6} {'path':>7} {'pkt/s':>8} {'loss%':>7} {'late%':>6} {'direct p50/p99':>15} "
        f"{'relay p50/p99':>15} {'added p50/p99':>15} {'relayCPU':>8} {'CPU-s/1kpps':>11} "
        f"{'core':>6} {'rq wait':>7} {'RSS/call':>9} {'gen lag p99':>11} {'gen busy':>8} "
        f"{'machine µs/pkt':>14}  note"
    )


def _print_row(step: StepResult) -> None:
    d50, d99 = _percentiles(step.direct.latencies_us)
    r50, r99 = _percentiles(step.relay.latencies_us)
    cpu_per_kpps = step.relay_cpu_per_s / (step.pps / 1000.0) if step.pps else float("nan")
    lag = max(step.relay.lag_p99_ms, step.direct.lag_p99_ms)
    busy = max(step.relay.busy, step.direct.busy)
    print(
        f"{step.calls:>6} {step.path:>7} {step.pps:>8.0f} {step.loss_pct:>7.3f} "
        f"{_late_pct(step.relay):>6.2f} "
        f"{d50:>7.0f}/{d99:<7.0f} {r50:>7.0f}/{r99:<7.0f} {r50 - d50:>7.0f}/{r99 - d99:<7.0f} "
        f"{step.relay_cpu_per_s * 100:>7.1f}% {cpu_per_kpps:>11.5f} "
        f"{step.core_busy * 100:>5.0f}% {step.run_delay * 100:>6.1f}% "
        f"{step.rss_per_call / 1024:>7.1f}KB {lag:>9.2f}ms {busy * 100:>7.1f}% "
        f"{step.machine_us_added:>14.2f}  {step.note}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="250,500,1000,1500,2000", help="comma-separated steps")
    parser.add_argument("--duration", type=float, default=10.0, help="relay seconds per step")
    parser.add_argument("--direct-duration", type=float, default=5.0)
    parser.add_argument(
        "--direct-max-calls",
        type=int,
        default=1000,
        help="the direct baseline runs at most this many calls (there the generator is "
        "both ends of every packet; its latency does not depend on the call count)",
    )
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--relay-cpu", type=int, default=0)
    parser.add_argument("--gen-cpu", type=int, default=1)
    parser.add_argument(
        "--gen-cpus",
        default="",
        help="comma-separated CPUs, one C generator each with a share of the calls (default: "
        "one generator, on --gen-cpu); e.g. 0,1 with --paths kernel, whose forwarder needs "
        "no core of its own (its work runs in the receiving CPU's softirq), so that the "
        "generator is not the limit",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF of relay sockets")
    parser.add_argument("--sndbuf", type=int, default=0, help="SO_SNDBUF of relay sockets")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value of the relay and generator (e.g. -20 on a shared host; needs root)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run relay and generator SCHED_FIFO so other load on a shared host cannot "
        "delay them (root; the kernel still leaves 5%% of each CPU to others)",
    )
    parser.add_argument("--port-min", type=int, default=10000)
    parser.add_argument("--port-max", type=int, default=29999)
    parser.add_argument(
        "--relay-class",
        default="gateway.media.relay:MediaRelay",
        help="module:Class with the MediaRelay API, to compare implementations",
    )
    parser.add_argument(
        "--paths",
        default="kernel,native,flows",
        help="comma-separated relay paths, each run in turn at every step: kernel (flow "
        "sockets served by the kernel forwarder; needs root), native (by the native "
        "forwarder), flows (flow sockets relayed in Python), first (every packet on the "
        "first socket)",
    )
    parser.add_argument(
        "--generator",
        choices=("c", "python"),
        default="c",
        help="the load generator: c (rtpload.c, compiled with $CC or cc at start; one core "
        "sends and sinks past 150,000 packets/s) or python (Phones.run: about 100,000 on "
        "a fast host)",
    )
    args = parser.parse_args(argv)
    asked_paths = args.paths
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = [name for name in args.paths if name not in RELAY_PATHS]
    if unknown or not args.paths:
        parser.error(f"--paths: choose among {', '.join(RELAY_PATHS)}; got {args.paths}")
    if "kernel" in args.paths:
        from gateway.media import kernel

        reason = kernel.unavailable_reason()
        if reason is not None and asked_paths == parser.get_default("paths"):
            print(f"kernel path left out: {reason}", file=sys.stderr)
            args.paths.remove("kernel")
        elif reason is not None:
            parser.error(f"--paths kernel: {reason}")
    steps = [int(n) for n in args.calls.split(",") if n.strip()]
    args.gen_cpus = tuple(int(n) for n in args.gen_cpus.split(",") if n.strip())
    if args.gen_cpus and args.generator != "c":
        parser.error("--gen-cpus needs the C generator")
    cpus = sorted(os.sched_getaffinity(0))
    if set(args.gen_cpus) - set(cpus):
        parser.error(f"--gen-cpus must be among {cpus}")
    if args.relay_cpu not in cpus or args.gen_cpu not in cpus or args.relay_cpu == args.gen_cpu:
        print(f"need two distinct CPUs among {cpus} (--relay-cpu/--gen-cpu)", file=sys.stderr)
        return 2
    build_dir = tempfile.TemporaryDirectory(prefix="bench-relay-")
    native_binary = build_native_generator(build_dir.name) if args.generator == "c" else None
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    generator = ctx.Process(
        target=_generator_main,
        args=(child, args.gen_cpu, args.nice, args.realtime, native_binary, args.gen_cpus),
        daemon=True,
    )
    generator.start()
    _print_header(args, args.loop)
    results = []
    try:
        for calls in steps:
            for step in run_step(ctx, parent, calls, args):
                results.append(step)
                _print_row(step)
    finally:
        parent.send(("exit",))
        parent.recv()
        generator.join(5)
        build_dir.cleanup()
    _print_summary(results)
    return 0


def _meets_target(step: StepResult) -> bool:
    """Zero loss, added p99 under 2 ms, and a step the harness measured cleanly."""
    _, d99 = _percentiles(step.direct.latencies_us)
    _, r99 = _percentiles(step.relay.latencies_us)
    return (
        step.loss_pct == 0.0
        and r99 - d99 < TARGET_ADDED_P99_US
        and not step.note
        and (step.run_delay < CLEAN_RUN_DELAY or step.relay_cpu_per_s >= SATURATED_CPU)
    )


def _print_summary(results: list[StepResult]) -> None:
    print()
    saturated = [
        f"{step.calls} ({step.path})" for step in results if step.relay_cpu_per_s >= SATURATED_CPU
    ]
    disturbed = [
        f"{step.calls} ({step.path})"
        for step in results
        if step.run_delay >= CLEAN_RUN_DELAY and step.relay_cpu_per_s < SATURATED_CPU
    ]
    if saturated:
        print(
            f"relay saturated its core in steps {', '.join(saturated)} (SCHED_FIFO stops at 95 %)"
        )
    if disturbed:
        print(f"relay waited for its CPU in steps {', '.join(disturbed)}: other load on the core")
    for path in dict.fromkeys(step.path for step in results):
        passing = [step for step in results if step.path == path and _meets_target(step)]
        if passing:
            best = max(passing, key=lambda step: step.calls)
            print(
                f"{path}: largest step with zero loss and added p99 < 2 ms: {best.calls} "
                f"calls ({best.pps:.0f} packets/s)"
            )
        else:
            print(f"{path}: no step had zero loss and added p99 < 2 ms")


if __name__ == "__main__":
    raise SystemExit(main())
