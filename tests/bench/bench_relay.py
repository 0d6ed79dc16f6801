"""Benchmark of the anchored RTP relay: packets/s on one core, loss, added latency, memory.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_relay
    /work/main/.venv/bin/python -m tests.bench.bench_relay --calls 500,1500 --duration 10

Method
------
Three processes. The relay (:class:`gateway.media.relay.MediaRelay`, on
uvloop unless ``--loop asyncio``) runs alone, pinned to one core
(``--relay-cpu``); a fresh relay process is started for every step so its
memory is measured from a clean baseline. The load generator runs pinned to
another core (``--gen-cpu``) and emulates N G.711 calls: every call has a
caller phone and a callee phone, each a UDP socket on 127.0.0.1 that sends
a 172-byte RTP packet (12-byte header + 160 bytes of PCMU) every 20 ms, the
2N phones' send times spread evenly over the 20 ms period. The relay holds
one session per call with both phones' addresses set as remotes, so every
call is 100 packets/s through the relay (1,500 calls = 150,000 packets/s).
The parent process only orchestrates.

Each step first runs the DIRECT path (each phone sends straight to its
peer, no relay), then the RELAY path, with the same generator and load.
The payload carries the send time (``time.time_ns()``) and the phone's
index; the sinks read the kernel's receive timestamp of every packet
(SO_TIMESTAMPNS, same CLOCK_REALTIME), so the sink's own scheduling delay is
not counted. Latency = receive timestamp - send time; "added" latency is
relay minus direct at the same percentile. Loss counts every packet sent in
the step against every packet received (the sinks read on until 0.5 s pass
without a packet, 10 s at most). Latency percentiles and packets/s exclude
the first ``--warmup`` seconds.

Relay CPU is utime+stime from /proc/<pid>/stat over the measuring window
(10 ms ticks); "CPU-s per 1k pps" = relay CPU seconds per second divided by
thousands of packets/s relayed. On loopback, a sender's system call also
delivers the packet into the receiver's socket, so the relay's CPU includes
delivery into the sinks, and the generator's includes delivery into the
relay. RSS per call = (relay VmRSS with N calls under traffic - VmRSS of
the same process before its sessions) / N; kernel socket buffers are not in
RSS.

The generator is checked too: "gen lag" is how late (p99 over send
batches) it sent against the 20 ms schedule, and "gen busy" is the share of
wall time it was not idle. A step where the generator lagged more than
5 ms at p99 or was over 95 % busy is marked GENERATOR-LIMITED: its numbers
measure the generator, not the relay.
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
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

PACKET_SIZE = 172
PTIME_NS = 20_000_000
SAMPLES_PER_PACKET = 160
HEADER = struct.Struct("!BBHIIqI")
"""RTP header (V=2, PT=0 PCMU, seq, timestamp, SSRC) + send time (ns) + phone index."""
RECORD = np.dtype([("rtp", "V12"), ("sent_ns", ">i8"), ("phone", ">u4"), ("rest", f"V{32 - 24}")])
RECV_BYTES = RECORD.itemsize
TIMESPEC = np.dtype([("sec", "<i8"), ("nsec", "<i8")])
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: struct timespec receive timestamps as SCM_TIMESTAMPNS (socket(7))."""
CMSG_SPACE = socket.CMSG_SPACE(16)
DRAIN_S = 0.5
"""After the last send, the sinks read on until nothing came for this long..."""
DRAIN_MAX_S = 10.0
"""...or this long after the last send at most."""
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
    kwargs: dict[str, Any] = {}
    if options["rcvbuf"]:
        kwargs["recv_buffer"] = options["rcvbuf"]
    if options["sndbuf"]:
        kwargs["send_buffer"] = options["sndbuf"]
    relay = relay_class(PHONE_HOST, options["port_min"], options["port_max"], **kwargs)
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
            relayed = 0
            foreign = 0
            for session in sessions:
                stats = session.stats()
                relayed += stats["a"]["packets_out"] + stats["b"]["packets_out"]
                foreign += stats["a"]["dropped_foreign"] + stats["b"]["dropped_foreign"]
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            rss = _proc_rss_bytes(os.getpid())
            conn.send((time.monotonic(), relayed, foreign, rss, cpu, _proc_run_delay_s()))
        elif name == "exit":
            await relay.close()
            conn.send("bye")
            return


# ------------------------------------------------------------------------ generator process


@dataclass
class RunResult:
    sent: int
    send_errors: int
    received: int
    latencies_us: np.ndarray
    lag_p99_ms: float
    lag_max_ms: float
    busy: float
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

    def run(self, duration: float, warmup: float) -> RunResult:
        """Send on schedule and sink everything for ``duration`` s, then drain."""
        socks = self.socks
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
        rusage0 = resource.getrusage(resource.RUSAGE_SELF)
        start = clock()
        start_wall = wallclock()
        window_start_wall = start_wall + int(warmup * 1e9)
        stop_sending = start + int(duration * 1e9)
        stop = stop_sending + int(DRAIN_S * 1e9)
        give_up = stop_sending + int(DRAIN_MAX_S * 1e9)
        round_start = start
        k = 0
        seq = 0
        next_due = start
        sending = True
        now = start
        while now < stop:
            if sending and next_due <= now:
                lags.append(now - next_due)
                while next_due <= now:
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
                            break
                    next_due = round_start + offsets[k]
                now = clock()
            # epoll rounds the timeout up to whole milliseconds: sends go out in
            # bursts of at most 1 ms worth, and the generator sleeps in between
            wait_ns = (next_due - now) if sending else (stop - now)
            timeout = max(wait_ns, 0) / 1e9
            events = poll(timeout)
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
                    chunks.append(_latencies(datas, stamps, window_start_wall))
                    received += len(datas)
                    datas = []
                    stamps = []
            now = clock()
            if not sending and events:  # still arriving: keep draining
                stop = min(max(stop, now + int(DRAIN_S * 1e9)), give_up)
        received += len(datas)
        chunks.append(_latencies(datas, stamps, window_start_wall))
        rusage1 = resource.getrusage(resource.RUSAGE_SELF)
        wall_ns = now - start
        cpu_s = (rusage1.ru_utime + rusage1.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
        lag_ms = np.array(lags, dtype=np.float64) / 1e6 if lags else np.zeros(1)
        return RunResult(
            sent=sent,
            send_errors=send_errors,
            received=received,
            latencies_us=np.concatenate(chunks) if chunks else np.zeros(0),
            lag_p99_ms=float(np.percentile(lag_ms, 99)),
            lag_max_ms=float(lag_ms.max()),
            busy=cpu_s / (wall_ns / 1e9),
            cpu_s=cpu_s,
            wall_s=wall_ns / 1e9,
        )


def _timespec_now() -> bytes:
    now = time.time_ns()
    return struct.pack("<qq", now // 1_000_000_000, now % 1_000_000_000)


def _latencies(datas: list[bytes], stamps: list[bytes], window_start_wall: int) -> np.ndarray:
    """Latency (µs) of the packets sent inside the measuring window."""
    if not datas:
        return np.zeros(0)
    records = np.frombuffer(b"".join(datas), dtype=RECORD)
    times = np.frombuffer(b"".join(stamps), dtype=TIMESPEC)
    arrived = times["sec"] * 1_000_000_000 + times["nsec"]
    sent = records["sent_ns"].astype(np.int64)
    in_window = sent >= window_start_wall
    return (arrived[in_window] - sent[in_window]) / 1000.0


def _generator_main(conn: multiprocessing.connection.Connection, gen_cpu: int, nice: int) -> None:
    _claim_cpu(gen_cpu, nice)
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
            conn.send(phones.run(command[1], command[2]))
        elif name == "exit":
            if phones is not None:
                phones.close()
            conn.send("bye")
            return


# ------------------------------------------------------------------------------- orchestration


@dataclass
class StepResult:
    calls: int
    pps: float
    loss_pct: float
    direct: RunResult
    relay: RunResult
    relay_cpu_per_s: float
    core_busy: float
    run_delay: float
    rss_per_call: float
    foreign: int
    note: str


def _percentiles(latencies_us: np.ndarray) -> tuple[float, float]:
    if latencies_us.size == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(latencies_us, [50, 99])
    return float(p50), float(p99)


def _limited(run: RunResult) -> bool:
    return run.lag_p99_ms > LAG_LIMIT_MS or run.busy > BUSY_LIMIT


def run_step(
    ctx: multiprocessing.context.SpawnContext,
    gen: multiprocessing.connection.Connection,
    calls: int,
    args: argparse.Namespace,
) -> StepResult:
    gen.send(("phones", calls))
    phone_ports: list[int] = gen.recv()
    callers = phone_ports[0::2]
    callees = phone_ports[1::2]

    # DIRECT: phone 2i <-> phone 2i+1
    direct_targets = [port for pair in zip(callees, callers, strict=True) for port in pair]
    gen.send(("connect", direct_targets))
    gen.recv()
    gen.send(("run", args.direct_duration, min(args.warmup, args.direct_duration / 2)))
    direct: RunResult = gen.recv()

    # RELAY
    parent, child = ctx.Pipe()
    options = {
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
    _, rss_base, _loop_module = parent.recv()
    parent.send(("setup", calls))
    relay_ports: list[tuple[int, int]] = parent.recv()
    parent.send(("remotes", list(zip(callers, callees, strict=True))))
    parent.recv()
    relay_targets = [port for pair in relay_ports for port in pair]
    gen.send(("connect", relay_targets))
    gen.recv()
    gen.send(("run", args.duration, args.warmup))
    time.sleep(args.warmup)
    busy0, total0 = _cpu_busy_ticks(args.relay_cpu)
    parent.send(("counters",))
    t0, relayed0, _, _, cpu0, delay0 = parent.recv()
    time.sleep(max(0.1, args.duration - args.warmup - 0.2))
    parent.send(("counters",))
    t1, relayed1, foreign, rss, cpu1, delay1 = parent.recv()
    busy1, total1 = _cpu_busy_ticks(args.relay_cpu)
    relay: RunResult = gen.recv()
    parent.send(("exit",))
    parent.recv()
    process.join(5)

    window = t1 - t0
    pps = (relayed1 - relayed0) / window
    loss = 100.0 * (relay.sent - relay.received) / relay.sent if relay.sent else float("nan")
    notes = []
    if _limited(relay) or _limited(direct):
        notes.append("GENERATOR-LIMITED")
    if relay.send_errors or direct.send_errors:
        notes.append(f"send errors {relay.send_errors}/{direct.send_errors}")
    return StepResult(
        calls=calls,
        pps=pps,
        loss_pct=loss,
        direct=direct,
        relay=relay,
        relay_cpu_per_s=(cpu1 - cpu0) / window,
        core_busy=(busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan"),
        run_delay=(delay1 - delay0) / window,
        rss_per_call=(rss - rss_base) / calls,
        foreign=foreign,
        note=", ".join(notes),
    )


def _print_header(args: argparse.Namespace, loop_name: str) -> None:
    print(f"python {sys.version.split()[0]}, relay loop: {loop_name}, relay {args.relay_class}")
    print(
        f"relay on CPU {args.relay_cpu}, generator on CPU {args.gen_cpu}; "
        f"{args.duration:g} s per step ({args.warmup:g} s warm-up), "
        f"direct {args.direct_duration:g} s; SO_RCVBUF={args.rcvbuf or 'default'} "
        f"SO_SNDBUF={args.sndbuf or 'default'}; realtime={args.realtime} nice={args.nice}"
    )
    print("G.711 calls, 172-byte RTP every 20 ms both ways (100 packets/s relayed per call)")
    print("latencies in µs (kernel receive timestamp - send time); added = relay - direct")
    print()
    print(
        f"{'calls':>6} {'pkt/s':>8} {'loss%':>7} {'direct p50/p99':>15} {'relay p50/p99':>15} "
        f"{'added p50/p99':>15} {'relayCPU':>8} {'CPU-s/1kpps':>11} {'core':>6} {'rq wait':>7} "
        f"{'RSS/call':>9} {'gen lag p99':>11} {'gen busy':>8}  note"
    )


def _print_row(step: StepResult) -> None:
    d50, d99 = _percentiles(step.direct.latencies_us)
    r50, r99 = _percentiles(step.relay.latencies_us)
    cpu_per_kpps = step.relay_cpu_per_s / (step.pps / 1000.0) if step.pps else float("nan")
    lag = max(step.relay.lag_p99_ms, step.direct.lag_p99_ms)
    busy = max(step.relay.busy, step.direct.busy)
    print(
        f"{step.calls:>6} {step.pps:>8.0f} {step.loss_pct:>7.3f} "
        f"{d50:>7.0f}/{d99:<7.0f} {r50:>7.0f}/{r99:<7.0f} {r50 - d50:>7.0f}/{r99 - d99:<7.0f} "
        f"{step.relay_cpu_per_s * 100:>7.1f}% {cpu_per_kpps:>11.5f} "
        f"{step.core_busy * 100:>5.0f}% {step.run_delay * 100:>6.1f}% "
        f"{step.rss_per_call / 1024:>7.1f}KB {lag:>9.2f}ms {busy * 100:>7.1f}%  {step.note}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="250,500,1000,1500,2000", help="comma-separated steps")
    parser.add_argument("--duration", type=float, default=10.0, help="relay seconds per step")
    parser.add_argument("--direct-duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--relay-cpu", type=int, default=0)
    parser.add_argument("--gen-cpu", type=int, default=1)
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
        help="run the relay SCHED_FIFO so other load on a shared host cannot delay it (root)",
    )
    parser.add_argument("--port-min", type=int, default=10000)
    parser.add_argument("--port-max", type=int, default=29999)
    parser.add_argument(
        "--relay-class",
        default="gateway.media.relay:MediaRelay",
        help="module:Class with the MediaRelay API, to compare implementations",
    )
    args = parser.parse_args(argv)
    steps = [int(n) for n in args.calls.split(",") if n.strip()]
    cpus = sorted(os.sched_getaffinity(0))
    if args.relay_cpu not in cpus or args.gen_cpu not in cpus or args.relay_cpu == args.gen_cpu:
        print(f"need two distinct CPUs among {cpus} (--relay-cpu/--gen-cpu)", file=sys.stderr)
        return 2
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    generator = ctx.Process(
        target=_generator_main, args=(child, args.gen_cpu, args.nice), daemon=True
    )
    generator.start()
    _print_header(args, args.loop)
    results = []
    try:
        for calls in steps:
            step = run_step(ctx, parent, calls, args)
            results.append(step)
            _print_row(step)
    finally:
        parent.send(("exit",))
        parent.recv()
        generator.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
