"""Benchmark of the RTP relay with capture on: recorded calls on one core, no loss, no gaps.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_capture
    /work/main/.venv/bin/python -m tests.bench.bench_capture --quick
    /work/main/.venv/bin/python -m tests.bench.bench_capture --calls 500 --duration 60 --profile
    /work/main/.venv/bin/python -m tests.bench --only bench_capture

Method
------
Three processes on loopback. The relay (:class:`gateway.media.relay.MediaRelay`
on the gateway's own event loop, :func:`gateway.app.new_event_loop`: uvloop
when installed) runs alone, pinned to one core (``--relay-cpu``), one media
session per call, on ports ``--port-min``-``--port-max`` (61000-65535: above
the kernel's ephemeral ports, clear of the tests' 10000-29999). A fresh relay
process runs every step; like the gateway (:func:`gateway.app.serve`) it
settles before the calls are set up (:func:`gateway.app.settle_for_serving`:
NumPy's BLAS on one thread, what it loaded at start-up moved out of the
collector's generations). The load generator runs pinned
to the other core (``--gen-cpu``); the parent process only orchestrates.

Each call is two phones, UDP sockets on 127.0.0.1 connected to their side of
the call's session (caller to the A side, callee to the B side), so a phone
hears only what the relay sends it. Each phone sends a 172-octet RTP packet
every 20 ms: the RFC 3550 5.1 header (version 2, payload type 0, a random
first sequence number and timestamp advancing by 1 and by 160 per packet,
one random SSRC per phone, the marker bit on the first packet) and 160
octets of PCMU (RFC 3551 4.5.14) carrying a steady tone (caller 440 Hz,
callee 550 Hz, -16 dBFS, starting at its peak, G.711 mu-law; a whole number
of cycles a second, so the 50 payloads of one second repeat without a seam).
A tone never passes the in-band DTMF receiver's screen; ``--audio speech``
sends speech-like audio instead (:func:`tests.unit.dsp.signals.voiced_speech`,
4 s looped, a different voice each way, peaks at -6 dBFS over a -60 dBFS
noise floor), loud speech from both parties at once: the receiver's worst
case, since loud voiced frames pass the screen and are examined further.
The 2N phones' send times are spread evenly over the 20 ms period, and the
calls' starts over 100 ms (call i starts i mod 5 packets late and ends as
late), as calls that began at different times are: the gates' 400 ms batches
do not all fall due in the same 20 ms. At every wake-up the generator sends
every packet that is due (non-blocking sockets, into a reused buffer, at
most 256 in a row before it reads again) and sleeps in epoll until the next
is due (epoll's 1 ms granularity). Each step sends exactly ``--duration`` /
20 ms packets per phone; the phones then read on until 0.5 s pass without a
packet.

Every call count (``--calls``) runs twice, with the same generator: capture
OFF (the relay only) and capture ON. With capture on, each call is set up
as :meth:`gateway.calls.consent_flow.CallConsent.attach` does: a
:class:`~gateway.consent.machine.ConsentMachine` in mode ``notice`` with the
caller as the one required party, brought to ``granted`` the way a call is
(``start``, ``notice_started``, ``notice_finished``); a
:class:`~gateway.media.capture.CaptureGate` reading it (all gates share one
:class:`~gateway.media.capture.TapQueue`, as the service's do), whose sink is a
:class:`~gateway.analysis.recorder.StereoRecorder` (the product's default
window: 0.5 s for the network plus the gate's own delay,
:data:`~gateway.media.capture.CAPTURE_DELAY_S`) and whose timelines are one
:class:`~gateway.analysis.timeline.ChannelTimeline` per party, caller on
channel 0 and callee on channel 1, telephone-event payload type 101 as the
SDP would declare it; the parties' taps on the session's A and B sides
(:meth:`~gateway.media.session.MediaSession.set_tap`). A consented call keeps
listening for digits (withdraw, pause), so every packet is decoded and goes
through the in-band DTMF receiver. A ticker calls ``gate.tick(now)`` for
every gate, then runs the shared queue, every 50 ms, as
:class:`~gateway.calls.consent_service.ConsentService` does. Recordings are
written to tmpfs (``/dev/shm``) when it has room, else to the temporary
directory; the output says which.

Figures per run:

- sent, received back, loss % = (sent - received) / sent, and "sock drops":
  datagrams the kernel dropped on the relay's full receive buffers
  (``/proc/net/udp``), which tells a relay that fell behind;
- relay CPU: utime + stime of the relay process (``/proc/<pid>/stat``) over
  the window from ``--warmup`` seconds after the first packet to the last
  packet sent, as % of one core; "µs/pkt" is that CPU over the packets
  offered to the relay in the window (100 per call per second), and "calls
  at 100 %" the call count that would fill the core at that cost; "core" is
  how busy the relay's CPU was (``/proc/stat``: relay, softirq, anything
  else), "others" what the rest of the machine used besides relay, generator
  and softirq (other processes on a shared host); a note says when the
  relay waited for its CPU more than 5 % of the window
  (``/proc/<pid>/schedstat``);
- delay: from a packet's place in its sender's schedule to the generator's
  poll that found it at the peer phone (the relayed sequence number tells
  which packet it is), after the warm-up: p50, p99, maximum, and the share
  later than 60 ms, past a typical jitter buffer, as good as lost to the
  listener though it arrived (and was recorded);
- loop lag: how late the 50 ms ticker woke (p99 and maximum; the ticker runs
  with no gates when capture is off), and "ticks run": how many ticks ran of
  those due over the run. The ticker keeps a fixed rate as the service's does
  (:func:`~gateway.calls.consent_service.next_tick_due`): a late tick does not
  push the next back, and one more than a period late skips the missed ones.
  A saturated loop serves its sockets first and its timers late, so the
  ticker (and every gate's writing) falls behind;
- RSS per call: the relay's VmRSS at the window's end less its VmRSS before
  the calls were set up, over the calls;
- generator lag (p99 and maximum over its wake-ups: how late it sent against
  the schedule) and its CPU: a run whose generator lagged more than 5 ms at
  p99 or was over 95 % busy is marked GENERATOR-LIMITED, and its loss is not
  the relay's;
- recordings (capture on): the calls end as a BYE would end them, right
  after the media stops: once the relay has handled every party's last
  packet (1 s at most; "hang-up wait" is how long that took once the last
  packet was sent), every gate finishes and every recorder closes, as
  :meth:`CallConsent.finish` and ``close_recording`` do (outside the CPU
  window). ``--hangup-after S`` ends them S seconds later instead, the ticker
  still running. "recs" counts recording files against calls; "late" sums
  ``StereoRecorder.late_samples`` (audio that reached the recorder after
  its place was written to the file); "gaps"
  counts, in every channel of every file read back (:func:`dsp.wav.read_wav`),
  the runs of zero samples longer than one packet (160 samples) between the
  channel's first and last non-zero sample: the audio sent has no such silence, so
  each is audio lost, dropped or masked; "cover" is the smallest share of the
  samples sent that a channel's audible span holds; "rec s" the shortest and
  longest recording against the sending time; "digits" the key presses the
  gates heard (the audio holds none) and "re-anchors" the timelines..

The target: 500 calls with capture on, the relay on one core, with zero
loss, zero late samples, zero gaps, every recording written, and a
generator that kept up. A run can hold all that with no headroom left: the
relay's socket buffers hold seconds of media, so a saturated relay first
delays packets and starves its timers rather than losing anything. The
notes say so: SATURATED (relay CPU at 92 % of its core or more, as
``bench_relay`` counts it), "ticker ran n/m" (under 95 % of its ticks: the
gates write late and the recorders' buffers grow), and the share of
packets later than 60 ms. Timings are reported, not asserted.

``--profile`` adds one capture-on run at ``--profile-calls`` calls with
cProfile in the relay during the window, and prints the functions and
modules with the most own time. cProfile's overhead inflates every Python
call: read it for where the time goes, not for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import pstats
import random
import resource
import select
import shutil
import socket
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.bench.common import (
    MachineCpu,
    format_table,
    machine_lines,
    print_title,
    process_cpu_s,
    process_rss_bytes,
)

PHONE_HOST = "127.0.0.1"
PTIME_NS = 20_000_000
PTIME_S = PTIME_NS / 1e9
SAMPLE_RATE = 8000
SAMPLES_PER_PACKET = 160
PACKETS_PER_S = 50
PCMU = 0
TELEPHONE_EVENT = 101
"""The dynamic payload type the phones' SDP would map to telephone-event (RFC 4733)."""
RTP_HEADER = struct.Struct("!BBHII")
"""RTP fixed header (RFC 3550 5.1): V=2 flags, M+PT, sequence, timestamp, SSRC."""
TONE_HZ = (440.0, 550.0)
"""Caller's and callee's tones: whole cycles per second, so a second of payloads loops."""
TONE_DBFS = -16.0
SPEECH_S = 4.0
"""Speech each phone loops with ``--audio speech`` (different for caller and callee)."""
SPEECH_SEEDS = (11, 12)
SPEECH_PEAK_DBFS = -6.0
NOISE_DBFS = -60.0
"""The noise floor under the speech (RMS): a line is never digital silence, so a run of zero
samples in a recording is still audio lost."""
FULL_SCALE = 32767
GAP_SAMPLES = SAMPLES_PER_PACKET
"""A zero run longer than one packet inside a channel's audio is a gap."""
MAX_BURST = 256
"""Sends in a row before the generator reads again, so a late generator keeps reading."""
STAGGER_ROUNDS = 5
"""Calls start spread over this many 20 ms rounds (100 ms, the capture gate's batch), as
calls that began at different times are: their batches do not all fall due together."""
START_LEAD_NS = 50_000_000
"""The first packet goes out this long after the generator is told to run."""
RECV_BYTES = 2048
DRAIN_S = 0.5
"""After the last send, the phones read on until nothing came for this long..."""
DRAIN_MAX_S = 10.0
"""...or this long after the last send at most."""
LAG_LIMIT_MS = 5.0
LATE_MS = 60.0
"""A packet later than this is past a typical 60 ms jitter buffer: lost to the listener."""
BUSY_LIMIT = 0.95
RUN_DELAY_LIMIT = 0.05
"""Share of the window the relay may wait for its CPU before the run counts as disturbed."""
OTHERS_LIMIT = 0.25
"""Cores other processes may keep busy during a run before it counts as disturbed."""
TARGET_CALLS = 500
SATURATED_CPU = 0.92
"""Relay CPU per wall second from which a run counts as saturating the core."""
TICKS_KEPT = 0.95
"""Share of its ticks the ticker must run for the gates' writing to count as on time."""
REPLY_TIMEOUT_S = 180.0
HANGUP_WAIT_S = 1.0
"""How long the calls' end waits for the parties' last packets to be handled."""
TMPFS = Path("/dev/shm")
RECORDING_BYTES_PER_S = SAMPLE_RATE * 2 * 2
"""Stereo 16-bit at 8 kHz."""


# ------------------------------------------------------------------------------ /proc readings


def cpu_busy_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU from ``/proc/stat`` (idle and iowait are idle)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                values = [int(value) for value in line.split()[1:9]]
                idle = values[3] + values[4]
                return sum(values) - idle, sum(values)
    return 0, 0


def run_delay_s(pid: int) -> float:
    """Seconds ``pid``'s main thread waited on a run queue (``/proc/<pid>/schedstat``)."""
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def udp_drops(host: str, ports: set[int]) -> int:
    """Datagrams dropped on full receive buffers of the IPv4 UDP sockets bound to ``host`` on
    ``ports``: the last column (sk_drops) of ``/proc/net/udp``, read in one pass."""
    wanted_host = f"{int.from_bytes(socket.inet_aton(host), 'little'):08X}"
    total = 0
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) < 13:
            continue
        address, _, port = fields[1].partition(":")
        if address == wanted_host and int(port, 16) in ports:
            total += int(fields[-1])
    return total


# ---------------------------------------------------------------------------- the relay process


@dataclass(frozen=True)
class RelayOptions:
    """What a relay process runs: its CPU, capture or not, its loop, ports, recordings."""

    cpu: int
    capture: bool
    loop: str
    port_min: int
    port_max: int
    record_dir: str


@dataclass(frozen=True)
class RecordingSummary:
    """One call's recording as its recorder closed it."""

    path: str | None
    frames: int
    late_samples: int
    digits: int
    reanchors: int
    refused: int


@dataclass
class RelayReport:
    """The relay's own counters of a run, read after the phones drained."""

    relayed: int
    foreign: int
    faults: int
    send_errors: int
    socket_drops: int
    lag_ms: list[float]
    tick_ms: list[float]
    tick_errors: int
    first_tick_error: str
    ticks_due: int
    """Ticks the ticker would have run in its lifetime had it never been late."""
    recordings: list[RecordingSummary]
    close_s: float
    profile: list[str] = field(default_factory=list)


class CallCapture:
    """One call's capture as :meth:`CallConsent.attach` builds it: machine, gate, recorder."""

    def __init__(self, session: Any, path: Path, now: float, queue: Any) -> None:
        from gateway.analysis.recorder import DEFAULT_LATENCY_S, StereoRecorder
        from gateway.analysis.timeline import ChannelTimeline
        from gateway.calls.call import CALLEE, CALLER
        from gateway.calls.consent_flow import CHANNEL_OF, SIDE_OF
        from gateway.consent.machine import ConsentMachine
        from gateway.consent.rule import Mode
        from gateway.media.capture import CAPTURE_DELAY_S, CaptureGate

        self.machine = ConsentMachine(Mode.NOTICE, (CALLER, CALLEE), (CALLER,), internal=(CALLEE,))
        self.machine.start(now)
        self.machine.notice_started(now, CALLER, "0" * 64)
        self.machine.notice_finished(now, CALLER)
        if not self.machine.capture_allowed:
            raise RuntimeError("the consent machine did not grant capture")
        self.recorder = StereoRecorder(path, latency_s=DEFAULT_LATENCY_S + CAPTURE_DELAY_S)
        self.digits: list[tuple[str, str, str]] = []
        self.timelines = (ChannelTimeline(), ChannelTimeline())
        self.gate = CaptureGate(
            self.machine,
            self.recorder,
            {CALLER: self.timelines[0], CALLEE: self.timelines[1]},
            dict(CHANNEL_OF),
            self.on_digit,
            queue=queue,
        )
        self.gate.set_event_types(frozenset({TELEPHONE_EVENT}))
        for party, side in SIDE_OF.items():
            session.set_tap(side, self.gate.taps[party])

    def on_digit(self, party: str, digit: str, method: str, at: float) -> None:
        self.digits.append((party, digit, method))

    def close(self) -> RecordingSummary:
        self.gate.finish()
        info = self.recorder.close()
        return RecordingSummary(
            path=str(info.path) if info is not None else None,
            frames=info.frames if info is not None else 0,
            late_samples=self.recorder.late_samples,
            digits=len(self.digits),
            reanchors=sum(timeline.reanchors for timeline in self.timelines),
            refused=self.gate.refused,
        )


class RelayServer:
    """The relay process: sessions, captures and the ticker, driven over a pipe."""

    def __init__(self, conn: multiprocessing.connection.Connection, options: RelayOptions) -> None:
        self.conn = conn
        self.options = options
        self.sessions: list[Any] = []
        self.captures: list[CallCapture] = []
        self.lags: list[float] = []
        self.ticks: list[float] = []
        self.tick_errors = 0
        self.first_tick_error = ""
        self.profiler: cProfile.Profile | None = None
        self.profile: list[str] = []
        self.pacer: asyncio.Task[None] | None = None
        self.pace_started = 0.0
        self.pace_s = 0.0
        self.tick_s = 0.05
        from gateway.media.capture import TapQueue

        self.tap_queue = TapQueue()  # shared by the calls' gates, as ConsentService shares one
        self.recordings: list[RecordingSummary] = []
        self.close_s = 0.0

    async def serve(self) -> None:
        from gateway.app import settle_for_serving
        from gateway.media.relay import MediaRelay

        loop = asyncio.get_running_loop()
        relay = MediaRelay(PHONE_HOST, self.options.port_min, self.options.port_max)
        commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), lambda: commands.put_nowait(self.conn.recv()))
        settle_for_serving()
        self.conn.send(("ready", type(loop).__module__))
        while True:
            command = await commands.get()
            name = command[0]
            if name == "setup":
                self.conn.send(await self.setup(relay, command[1]))
                self.pacer = asyncio.ensure_future(self.pace())
            elif name == "profile":
                self.set_profiling(command[1])
            elif name == "hangup":
                self.conn.send(await self.hang_up(command[1], command[2]))
            elif name == "report":
                self.conn.send(self.report())
            elif name == "exit":
                await relay.close()
                self.conn.send("bye")
                return

    async def setup(self, relay: Any, phone_ports: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A session per call, its remotes the call's phones; with capture, its gate."""
        record_dir = Path(self.options.record_dir)
        now = time.monotonic()
        for index, (caller_port, callee_port) in enumerate(phone_ports):
            session = await relay.create_session(f"call-{index}")
            session.set_remote("a", 0, PHONE_HOST, caller_port, None, False)
            session.set_remote("b", 0, PHONE_HOST, callee_port, None, False)
            self.sessions.append(session)
            if self.options.capture:
                path = record_dir / f"call-{index:04d}.wav"
                self.captures.append(CallCapture(session, path, now, self.tap_queue))
        return [(s.local_ports("a")[0][0], s.local_ports("b")[0][0]) for s in self.sessions]

    async def pace(self) -> None:
        """The consent service's ticker: every gate's tick every 50 ms, its lateness noted."""
        from gateway.calls.consent_service import TICK_S, next_tick_due

        self.tick_s = TICK_S
        gates = [capture.gate for capture in self.captures]
        self.pace_started = time.monotonic()
        lags = self.lags
        ticks = self.ticks
        clock = time.monotonic
        due = self.pace_started
        while True:
            due = next_tick_due(due, clock())
            await asyncio.sleep(due - clock())
            now = clock()
            lags.append(now - due)
            for gate in gates:
                try:
                    gate.tick(now)
                except Exception as error:
                    self.tick_errors += 1
                    if not self.first_tick_error:
                        self.first_tick_error = repr(error)
            try:
                self.tap_queue.run()
            except Exception as error:
                self.tick_errors += 1
                if not self.first_tick_error:
                    self.first_tick_error = repr(error)
            ticks.append(clock() - now)

    def set_profiling(self, on: bool) -> None:
        if on:
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        elif self.profiler is not None:
            self.profiler.disable()
            self.profile = profile_lines(self.profiler)
            self.profiler = None

    async def hang_up(self, packets: int, after_s: float) -> tuple[float, int]:
        """End every call as its BYE would, once each party's last packet has been handled.

        Waits until every side has taken ``packets`` packets (``HANGUP_WAIT_S`` at
        most), then ``after_s`` more with the ticker running, then finishes every gate
        and closes every recorder. Returns the wait and the sides still short.
        """
        began = time.monotonic()
        deadline = began + HANGUP_WAIT_S
        sides = [side for session in self.sessions for side in session.sides()]
        short = len(sides)
        while True:
            short = sum(1 for side in sides if side.stats.packets_in < packets)
            if not short or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.005)
        waited = time.monotonic() - began
        if after_s > 0:
            await asyncio.sleep(after_s)
        if self.pacer is not None:
            self.pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pacer
            self.pace_s = time.monotonic() - self.pace_started
        began = time.monotonic()
        self.recordings = [capture.close() for capture in self.captures]
        self.close_s = time.monotonic() - began
        return waited, short

    def report(self) -> RelayReport:
        relayed = foreign = faults = send_errors = 0
        ports: set[int] = set()
        for session in self.sessions:
            for side in session.sides():
                relayed += side.stats.packets_out
                foreign += side.stats.dropped_foreign
                faults += side.rtp.errors + side.rtcp.errors
                send_errors += side.rtp.send_errors + side.rtcp.send_errors
                ports.update((side.rtp_port, side.rtcp_port))
        drops = udp_drops(PHONE_HOST, ports)
        return RelayReport(
            relayed=relayed,
            foreign=foreign,
            faults=faults,
            send_errors=send_errors,
            socket_drops=drops,
            lag_ms=[lag * 1000.0 for lag in self.lags],
            tick_ms=[tick * 1000.0 for tick in self.ticks],
            tick_errors=self.tick_errors,
            first_tick_error=self.first_tick_error,
            ticks_due=int(self.pace_s / self.tick_s),
            recordings=self.recordings,
            close_s=self.close_s,
            profile=self.profile,
        )


def relay_main(conn: multiprocessing.connection.Connection, options: RelayOptions) -> None:
    os.sched_setaffinity(0, {options.cpu})
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    if options.loop == "asyncio":
        loop_factory = asyncio.new_event_loop
    else:
        from gateway.app import new_event_loop

        loop_factory = new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(RelayServer(conn, options).serve())


# ------------------------------------------------------------------------------- profile summary

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PROFILE_TOP = 25


def _profile_place(filename: str) -> str:
    """Where a profiled function lives: a repository path, a library, or C code."""
    if filename == "~":
        return "(C code: NumPy, sockets, built-ins)"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    try:
        return str(path.resolve().relative_to(REPOSITORY_ROOT))
    except ValueError:
        return path.name


def _in_repository(filename: str) -> bool:
    """Whether a profiled function is the project's own code (not a library's, not C)."""
    path = Path(filename)
    return (
        filename != "~"
        and "site-packages" not in path.parts
        and path.resolve().is_relative_to(REPOSITORY_ROOT)
    )


def profile_lines(profiler: cProfile.Profile) -> list[str]:
    """The functions and the files with the most own time, one line each."""
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    functions = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:PROFILE_TOP]
    by_place: dict[str, float] = {}
    for (filename, _, _), entry in stats.items():
        place = _profile_place(filename)
        by_place[place] = by_place.get(place, 0.0) + entry[2]
    lines = [f"own time {total:.2f} s in the window; by function:"]
    for (filename, line, name), (_, calls, own, cumulative, _) in functions:
        where = name if filename == "~" else f"{_profile_place(filename)}:{line} {name}"
        lines.append(
            f"  {100 * own / total:5.1f}%  {own:7.3f} s own  {cumulative:7.3f} s cum  "
            f"{calls:>9} calls  {where}"
        )
    lines.append("by cumulative time, the repository's functions:")
    ours = [item for item in stats.items() if _in_repository(item[0][0])]
    ours.sort(key=lambda item: item[1][3], reverse=True)
    for (filename, line, name), (_, calls, _, cumulative, _) in ours[:PROFILE_TOP]:
        lines.append(
            f"  {100 * cumulative / total:5.1f}%  {cumulative:7.3f} s cum  "
            f"{calls:>9} calls  {_profile_place(filename)}:{line} {name}"
        )
    lines.append("by file:")
    for place, own in sorted(by_place.items(), key=lambda item: item[1], reverse=True)[:12]:
        lines.append(f"  {100 * own / total:5.1f}%  {own:7.3f} s  {place}")
    return lines


# ------------------------------------------------------------------------ the generator process


@dataclass
class GeneratorResult:
    sent: tuple[int, int]
    """Packets the callers sent (A to B), and the callees (B to A)."""
    received: tuple[int, int]
    """Packets the callees received (A to B, as relayed), and the callers (B to A)."""
    short_phones: int
    """Phones that received fewer packets than their peer sent."""
    send_errors: int
    socket_drops: int
    lag_p99_ms: float
    lag_max_ms: float
    cpu_s: float
    sending_s: float
    delay_p50_ms: float
    delay_p99_ms: float
    delay_max_ms: float
    late_share: float
    """Share of the timed packets that came back more than ``LATE_MS`` after their schedule."""


def tone_payloads(frequency_hz: float) -> list[bytes]:
    """One second of a PCMU tone as 50 payloads of 160 octets, in order."""
    from dsp import g711
    from dsp.tones import tone

    pcm = tone(
        frequency_hz, 1.0, sample_rate=SAMPLE_RATE, amplitude_dbfs=TONE_DBFS, phase=math.pi / 2
    )
    codes = g711.encode(pcm, PCMU)
    step = SAMPLES_PER_PACKET
    return [codes[index : index + step] for index in range(0, len(codes), step)]


def speech_payloads(seed: int) -> list[bytes]:
    """:data:`SPEECH_S` of speech-like audio (voiced syllables, fricatives, pauses; peaks at
    :data:`SPEECH_PEAK_DBFS`) over a noise floor at :data:`NOISE_DBFS`, as PCMU payloads."""
    from dsp import g711
    from tests.unit.dsp import signals

    speech = signals.voiced_speech(SPEECH_S, seed=seed)
    speech *= FULL_SCALE * 10 ** (SPEECH_PEAK_DBFS / 20) / max(float(np.abs(speech).max()), 1.0)
    noise = signals.white_noise(len(speech), FULL_SCALE * 10 ** (NOISE_DBFS / 20), seed=seed + 1)
    pcm = np.clip(np.rint(speech + noise), -32768, 32767).astype(np.int16)
    codes = g711.encode(pcm, PCMU)
    step = SAMPLES_PER_PACKET
    return [codes[index : index + step] for index in range(0, len(codes), step)]


class Phones:
    """2N UDP sockets: phone 2i is call i's caller, phone 2i+1 its callee."""

    def __init__(self, calls: int, seed: int, audio: str = "tone") -> None:
        self.audio = audio
        self.socks: list[socket.socket] = []
        for _ in range(2 * calls):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((PHONE_HOST, 0))
            sock.setblocking(False)
            self.socks.append(sock)
        self.ports = [sock.getsockname()[1] for sock in self.socks]
        rng = random.Random(seed)
        self.ssrcs = [rng.getrandbits(32) for _ in self.socks]
        self.first_seq = [rng.getrandbits(16) for _ in self.socks]
        self.first_timestamp = [rng.getrandbits(32) for _ in self.socks]
        self.epoll = select.epoll()
        for sock in self.socks:
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def connect(self, ports: list[int]) -> None:
        for sock, port in zip(self.socks, ports, strict=True):
            sock.connect((PHONE_HOST, port))

    def close(self) -> None:
        self.epoll.close()
        for sock in self.socks:
            sock.close()

    def run(
        self,
        rounds: int,
        warmup_rounds: int,
        started: Callable[[int], None],
        ended: Callable[[int], None],
    ) -> GeneratorResult:
        """Send ``rounds`` packets per phone on schedule, read what comes back, then drain.

        Call i starts ``i % STAGGER_ROUNDS`` rounds late (and ends as late), so the
        calls do not all begin in the same 20 ms. ``started`` hears when the first
        packet is due, ``ended`` when the last was sent (monotonic ns). A packet's
        delay is from its sender's schedule to the poll that found it; each phone's
        first ``warmup_rounds`` packets are not timed.
        """
        socks = self.socks
        count = len(socks)
        sends = [sock.send for sock in socks]
        readers: list[Any] = [None] * (max(sock.fileno() for sock in socks) + 1)
        counts = [0] * len(readers)
        senders = [0] * len(readers)
        for index, sock in enumerate(socks):
            readers[sock.fileno()] = sock.recv_into
            senders[sock.fileno()] = index ^ 1  # a phone hears its peer
        scratch = bytearray(RECV_BYTES)
        frames: list[list[bytearray]] = []
        for party in range(2):
            payloads = (
                tone_payloads(TONE_HZ[party])
                if self.audio == "tone"
                else speech_payloads(SPEECH_SEEDS[party])
            )
            frames.append([bytearray(RTP_HEADER.size) + payload for payload in payloads])
        callers_frames, callees_frames = frames
        loop_length = len(callers_frames)
        ssrcs = self.ssrcs
        first_seq = self.first_seq
        first_timestamp = self.first_timestamp
        pack_into = RTP_HEADER.pack_into
        poll = self.epoll.poll
        clock = time.monotonic_ns
        slot = PTIME_NS / count
        offsets = [int(k * slot) for k in range(count)]
        lags: list[int] = []
        delays = array("q")
        sent = [0, 0]
        send_errors = 0
        first_round = [(index // 2) % STAGGER_ROUNDS for index in range(count)]
        last_round = rounds + max(first_round)
        start = clock() + START_LEAD_NS
        due_at = [
            start + delay * PTIME_NS + offset
            for delay, offset in zip(first_round, offsets, strict=True)
        ]
        started(start)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        round_start = start
        next_due = start
        pair = (callers_frames[0], callees_frames[0])
        k = 0
        sequence = 0
        sending = True
        end_sending = start
        cpu_s = 0.0
        stop = give_up = start + int((last_round * PTIME_S + DRAIN_MAX_S) * 1e9)
        now = clock()
        while True:
            if sending and next_due <= now:
                lags.append(now - next_due)
                burst = 0
                while next_due <= now and burst < MAX_BURST:
                    number = sequence - first_round[k]
                    if 0 <= number < rounds:
                        burst += 1
                        party = k & 1
                        frame = pair[party]
                        pack_into(
                            frame,
                            0,
                            0x80,
                            (0x80 if number == 0 else 0) | PCMU,
                            (first_seq[k] + number) & 0xFFFF,
                            (first_timestamp[k] + number * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
                            ssrcs[k],
                        )
                        try:
                            sends[k](frame)
                            sent[party] += 1
                        except OSError:
                            send_errors += 1
                    k += 1
                    if k == count:
                        k = 0
                        sequence += 1
                        if sequence == last_round:
                            sending = False
                            end_sending = clock()
                            usage1 = resource.getrusage(resource.RUSAGE_SELF)
                            cpu_s = (usage1.ru_utime + usage1.ru_stime) - (
                                usage0.ru_utime + usage0.ru_stime
                            )
                            stop = end_sending + int(DRAIN_S * 1e9)
                            give_up = end_sending + int(DRAIN_MAX_S * 1e9)
                            ended(end_sending)
                            break
                        round_start += PTIME_NS
                        index = sequence % loop_length
                        pair = (callers_frames[index], callees_frames[index])
                    next_due = round_start + offsets[k]
                now = clock()
            if not sending and now >= stop:
                break
            wait_ns = (next_due - now) if sending else (stop - now)
            events = poll(max(wait_ns, 0) / 1e9, count)
            now = clock()
            for fd, _ in events:
                try:
                    readers[fd](scratch)
                except OSError:
                    continue
                counts[fd] += 1
                sender = senders[fd]
                number = ((scratch[2] << 8 | scratch[3]) - first_seq[sender]) & 0xFFFF
                if number >= warmup_rounds:
                    delays.append(now - due_at[sender] - number * PTIME_NS)
            now = clock()
            if not sending and events:
                stop = min(now + int(DRAIN_S * 1e9), give_up)
        received_by_phone = [counts[sock.fileno()] for sock in socks]
        lag_ms = np.array(lags, dtype=np.float64) / 1e6 if lags else np.zeros(1)
        delay_ms = np.frombuffer(delays, dtype=np.int64) / 1e6 if delays else np.zeros(1)
        return GeneratorResult(
            sent=(sent[0], sent[1]),
            received=(sum(received_by_phone[1::2]), sum(received_by_phone[0::2])),
            short_phones=sum(1 for received in received_by_phone if received < rounds),
            send_errors=send_errors,
            socket_drops=udp_drops(PHONE_HOST, set(self.ports)),
            lag_p99_ms=float(np.percentile(lag_ms, 99)),
            lag_max_ms=float(lag_ms.max()),
            cpu_s=cpu_s,
            sending_s=(end_sending - start) / 1e9,
            delay_p50_ms=float(np.percentile(delay_ms, 50)),
            delay_p99_ms=float(np.percentile(delay_ms, 99)),
            delay_max_ms=float(delay_ms.max()),
            late_share=float(np.count_nonzero(delay_ms > LATE_MS)) / delay_ms.size,
        )


def generator_main(conn: multiprocessing.connection.Connection, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    phones: Phones | None = None
    while True:
        command = conn.recv()
        name = command[0]
        if name == "phones":
            if phones is not None:
                phones.close()
            phones = Phones(command[1], command[2], command[3])
            conn.send(phones.ports)
        elif name == "connect":
            assert phones is not None
            phones.connect(command[1])
            conn.send("ok")
        elif name == "run":
            assert phones is not None
            result = phones.run(
                command[1],
                command[2],
                lambda start: conn.send(("started", start)),
                lambda end: conn.send(("sent", end)),
            )
            conn.send(result)
        elif name == "exit":
            if phones is not None:
                phones.close()
            conn.send("bye")
            return


# ------------------------------------------------------------------------ recordings read back


@dataclass(frozen=True)
class RecordingCheck:
    """What one recording file holds, read back."""

    frames: int
    gaps: int
    gap_samples: int
    empty_channels: int
    coverage: float
    """The smaller channel's audible span over the samples its party sent."""
    readable: bool = True
    """False for a file that is not 16-bit stereo WAVE at 8 kHz (both channels count empty)."""


def long_zero_runs(silent: npt.NDArray[np.bool_], longer_than: int) -> tuple[int, int]:
    """How many runs of True in ``silent`` are longer than ``longer_than``, and their samples."""
    edges = np.diff(silent.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    long = lengths[lengths > longer_than]
    return int(long.size), int(long.sum())


def check_recording(path: Path, sent_samples: int) -> RecordingCheck:
    """Gaps and coverage of each channel of a stereo 8 kHz recording of a steady tone."""
    from dsp.wav import read_wav

    try:
        samples, rate = read_wav(path.read_bytes())
    except (OSError, ValueError):
        return RecordingCheck(0, 0, 0, 2, 0.0, readable=False)
    if rate != SAMPLE_RATE or samples.dtype != np.int16 or samples.shape[1] != 2:
        return RecordingCheck(samples.shape[0], 0, 0, 2, 0.0, readable=False)
    gaps = gap_samples = empty = 0
    coverage = 1.0
    for channel in range(2):
        audio = samples[:, channel]
        audible = np.flatnonzero(audio)
        if audible.size == 0:
            empty += 1
            coverage = 0.0
            continue
        first, last = int(audible[0]), int(audible[-1])
        runs, run_samples = long_zero_runs(audio[first : last + 1] == 0, GAP_SAMPLES)
        gaps += runs
        gap_samples += run_samples
        coverage = min(coverage, (last + 1 - first) / sent_samples)
    return RecordingCheck(samples.shape[0], gaps, gap_samples, empty, coverage)


# ------------------------------------------------------------------------------- orchestration


@dataclass
class Run:
    """One run: a call count with capture off or on, and everything measured in it."""

    calls: int
    capture: bool
    loop_module: str
    window_s: float
    sending_s: float
    """How long each phone sent."""
    relay_cpu_s: float
    core_busy: float
    others_cores: float
    run_delay: float
    rss_per_call: float
    generator: GeneratorResult
    generator_cpu_s: float
    relay: RelayReport
    checks: list[RecordingCheck]
    quiet_before: float
    hangup_wait_s: float
    """From the last packet sent to the last packet handled by the relay (the calls' end)."""
    short_sides: int
    """Sides that had not taken every packet when the calls ended."""
    notes: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.generator.sent)

    @property
    def received(self) -> int:
        return sum(self.generator.received)

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else math.nan

    @property
    def relay_cpu(self) -> float:
        return self.relay_cpu_s / self.window_s

    @property
    def us_per_packet(self) -> float:
        offered = self.calls * 2 * PACKETS_PER_S * self.window_s
        return 1e6 * self.relay_cpu_s / offered if offered else math.nan

    @property
    def calls_per_core(self) -> float:
        cost = self.us_per_packet
        return 1e6 / (cost * 2 * PACKETS_PER_S) if cost > 0 else math.inf

    @property
    def generator_busy(self) -> float:
        return self.generator_cpu_s / self.window_s

    @property
    def generator_limited(self) -> bool:
        return self.generator.lag_p99_ms > LAG_LIMIT_MS or self.generator_busy > BUSY_LIMIT

    @property
    def late_samples(self) -> int:
        return sum(recording.late_samples for recording in self.relay.recordings)

    @property
    def recordings_written(self) -> int:
        return sum(1 for recording in self.relay.recordings if recording.path is not None)

    @property
    def gaps(self) -> int:
        return sum(check.gaps + check.empty_channels for check in self.checks)

    def strain(self) -> list[str]:
        """Signs the relay had no headroom, though nothing may have been lost yet."""
        signs: list[str] = []
        if self.relay_cpu >= SATURATED_CPU:
            signs.append("SATURATED")
        ran, due = len(self.relay.lag_ms), self.relay.ticks_due
        if due and ran < TICKS_KEPT * due:
            signs.append(f"ticker ran {ran}/{due}")
        if self.generator.late_share > 0:
            signs.append(f"{self.generator.late_share:.2%} of packets >{LATE_MS:.0f} ms")
        return signs

    def meets_target(self) -> bool:
        """Zero loss, every recording written whole, a generator that kept up."""
        clean = self.loss_pct == 0.0 and not self.generator_limited
        if not self.capture:
            return clean
        return (
            clean
            and self.recordings_written == self.calls
            and len(self.checks) == self.calls
            and self.late_samples == 0
            and self.gaps == 0
            and self.relay.tick_errors == 0
            and self.relay.faults == 0
        )


def _reply(
    conn: multiprocessing.connection.Connection,
    process: multiprocessing.process.BaseProcess | None = None,
    timeout: float = REPLY_TIMEOUT_S,
) -> Any:
    """The next message from a helper process; RuntimeError if it died or went silent."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.5):
        if process is not None and not process.is_alive():
            raise RuntimeError(f"{process.name} exited with code {process.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError("no reply from a benchmark process")
    return conn.recv()


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def wait_for_quiet(limit_cores: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) for the machine to be quiet; the cores others kept busy."""
    waited = 0.0
    while True:
        before = MachineCpu.read()
        time.sleep(1.0)
        busy = MachineCpu.read().busy_cores_since(before, 1.0)
        waited += 1.0
        if busy <= limit_cores or waited >= max_wait_s:
            return busy


@dataclass(frozen=True)
class Window:
    """Readings at one edge of the measuring window."""

    at: float
    relay_cpu_s: float
    generator_cpu_s: float
    core: tuple[int, int]
    machine: MachineCpu
    run_delay_s: float

    @classmethod
    def read(cls, relay_pid: int, generator_pid: int, relay_cpu: int) -> Window:
        return cls(
            time.monotonic(),
            process_cpu_s(relay_pid),
            process_cpu_s(generator_pid),
            cpu_busy_ticks(relay_cpu),
            MachineCpu.read(),
            run_delay_s(relay_pid),
        )


class Bench:
    """The generator process and the runs against fresh relay processes."""

    def __init__(self, args: argparse.Namespace, record_root: Path) -> None:
        self.args = args
        self.record_root = record_root
        self.ctx = multiprocessing.get_context("spawn")
        self.gen, child = self.ctx.Pipe()
        self.generator = self.ctx.Process(
            target=generator_main, args=(child, args.gen_cpu), name="generator", daemon=True
        )
        self.generator.start()
        self.runs = 0

    def close(self) -> None:
        try:
            if self.generator.is_alive():
                self.gen.send(("exit",))
                _reply(self.gen, self.generator, timeout=10.0)
        finally:
            self.generator.join(5)
            if self.generator.is_alive():
                self.generator.terminate()
                self.generator.join(5)

    def run(self, calls: int, capture: bool, profile: bool = False) -> Run:
        args = self.args
        self.runs += 1
        quiet = wait_for_quiet(args.quiet_cores, args.quiet_wait_s)
        self.gen.send(("phones", calls, args.seed + self.runs, args.audio))
        phone_ports: list[int] = _reply(self.gen, self.generator)
        record_dir = self.record_root / f"{calls}-{'on' if capture else 'off'}-{self.runs}"
        options = RelayOptions(
            cpu=args.relay_cpu,
            capture=capture,
            loop=args.loop,
            port_min=args.port_min,
            port_max=args.port_max,
            record_dir=str(record_dir),
        )
        conn, child = self.ctx.Pipe()
        relay = self.ctx.Process(
            target=relay_main, args=(child, options), name="relay", daemon=True
        )
        relay.start()
        try:
            _, loop_module = _reply(conn, relay)
            assert relay.pid is not None and self.generator.pid is not None
            rss_idle = process_rss_bytes(relay.pid)
            conn.send(("setup", list(zip(phone_ports[0::2], phone_ports[1::2], strict=True))))
            relay_ports: list[tuple[int, int]] = _reply(conn, relay)
            self.gen.send(("connect", [port for pair in relay_ports for port in pair]))
            _reply(self.gen, self.generator)
            rounds = max(1, round(args.duration / PTIME_S))
            warmup_s = min(args.warmup, rounds * PTIME_S / 2)
            self.gen.send(("run", rounds, round(warmup_s / PTIME_S)))
            _, start_ns = _reply(self.gen, self.generator)
            start = start_ns / 1e9
            _sleep_until(start + warmup_s)
            first = Window.read(relay.pid, self.generator.pid, args.relay_cpu)
            if profile:
                conn.send(("profile", True))
            _sleep_until(start + rounds * PTIME_S)  # every call sent throughout the window
            last = Window.read(relay.pid, self.generator.pid, args.relay_cpu)
            rss_loaded = process_rss_bytes(relay.pid)
            if profile:
                conn.send(("profile", False))
            _reply(self.gen, self.generator)  # the last packet was sent
            conn.send(("hangup", rounds, args.hangup_after))
            hangup_wait_s, short_sides = _reply(conn, relay)
            generated: GeneratorResult = _reply(self.gen, self.generator)
            conn.send(("report",))
            report: RelayReport = _reply(conn, relay)
            conn.send(("exit",))
            _reply(conn, relay)
            relay.join(10)
        finally:
            if relay.is_alive():
                relay.terminate()
                relay.join(5)
        checks = [
            check_recording(Path(recording.path), rounds * SAMPLES_PER_PACKET)
            for recording in report.recordings
            if recording.path is not None
        ]
        if not args.keep:
            shutil.rmtree(record_dir, ignore_errors=True)
        window = last.at - first.at
        relay_cpu_s = last.relay_cpu_s - first.relay_cpu_s
        generator_cpu_s = last.generator_cpu_s - first.generator_cpu_s
        machine_busy = last.machine.busy_cores_since(first.machine, window)
        softirq = last.machine.softirq_cores_since(first.machine, window)
        core_ticks = last.core[1] - first.core[1]
        result = Run(
            calls=calls,
            capture=capture,
            loop_module=loop_module,
            window_s=window,
            sending_s=rounds * PTIME_S,
            relay_cpu_s=relay_cpu_s,
            core_busy=(last.core[0] - first.core[0]) / core_ticks if core_ticks else math.nan,
            others_cores=max(
                0.0, machine_busy - (relay_cpu_s + generator_cpu_s) / window - softirq
            ),
            run_delay=(last.run_delay_s - first.run_delay_s) / window,
            rss_per_call=(rss_loaded - rss_idle) / calls,
            generator=generated,
            generator_cpu_s=generator_cpu_s,
            relay=report,
            checks=checks,
            quiet_before=quiet,
            hangup_wait_s=hangup_wait_s,
            short_sides=short_sides,
        )
        result.notes = run_notes(result, self.args.quiet_cores)
        return result


def run_notes(run: Run, quiet_cores: float) -> list[str]:
    notes = run.strain()
    if run.generator_limited:
        notes.append("GENERATOR-LIMITED")
    if run.run_delay >= RUN_DELAY_LIMIT:
        notes.append(f"relay waited {run.run_delay:.0%} for its CPU")
    if run.others_cores > OTHERS_LIMIT:
        notes.append(f"others busy {run.others_cores * 100:.0f}%")
    if run.quiet_before > quiet_cores:
        notes.append(f"machine busy before ({run.quiet_before * 100:.0f}% of a core)")
    relay = run.relay
    generator = run.generator
    if generator.short_phones:
        notes.append(f"{generator.short_phones} phones short")
    if generator.socket_drops:
        notes.append(f"phone socket drops {generator.socket_drops}")
    if generator.send_errors or relay.send_errors:
        notes.append(f"send errors gen {generator.send_errors} relay {relay.send_errors}")
    if relay.foreign:
        notes.append(f"foreign {relay.foreign}")
    if relay.faults:
        notes.append(f"relay faults {relay.faults}")
    unreadable = sum(1 for check in run.checks if not check.readable)
    if unreadable:
        notes.append(f"{unreadable} recordings unreadable")
    refused = sum(recording.refused for recording in relay.recordings)
    if refused:
        notes.append(f"gates refused {refused} packets")
    if run.short_sides:
        notes.append(f"{run.short_sides} sides short at hang-up")
    if relay.tick_errors:
        notes.append(f"tick errors {relay.tick_errors}: {relay.first_tick_error}")
    return notes


# ------------------------------------------------------------------------------------- report


def _p99_max(values: Sequence[float]) -> str:
    if not values:
        return "-"
    array = np.asarray(values, dtype=np.float64)
    return f"{np.percentile(array, 99):.1f}/{array.max():.1f}"


RELAY_HEADERS = [
    "calls",
    "capture",
    "sent",
    "received",
    "loss %",
    "sock drops",
    "relay CPU",
    "µs/pkt",
    "calls at 100%",
    "core",
    "others",
    "delay p50/p99/max ms",
    f">{LATE_MS:.0f} ms",
    "loop lag p99/max ms",
    "ticks run",
    "RSS/call",
    "gen lag p99/max ms",
    "gen busy",
    "note",
]


def relay_row(run: Run) -> list[str]:
    g = run.generator
    return [
        str(run.calls),
        "on" if run.capture else "off",
        str(run.sent),
        str(run.received),
        f"{run.loss_pct:.3f}",
        str(run.relay.socket_drops),
        f"{run.relay_cpu * 100:.1f}%",
        f"{run.us_per_packet:.2f}",
        f"{run.calls_per_core:.0f}",
        f"{run.core_busy * 100:.0f}%",
        f"{run.others_cores * 100:.0f}%",
        f"{g.delay_p50_ms:.1f}/{g.delay_p99_ms:.1f}/{g.delay_max_ms:.0f}",
        f"{g.late_share * 100:.2f}%",
        _p99_max(run.relay.lag_ms),
        f"{len(run.relay.lag_ms)}/{run.relay.ticks_due}",
        f"{run.rss_per_call / 1024:.1f} KiB",
        f"{run.generator.lag_p99_ms:.2f}/{run.generator.lag_max_ms:.1f}",
        f"{run.generator_busy * 100:.0f}%",
        ", ".join(run.notes),
    ]


RECORDING_HEADERS = [
    "calls",
    "recs",
    "late",
    "gaps",
    "recs with gaps",
    "min cover",
    "rec s min/max",
    "sent s",
    "digits",
    "re-anchors",
    "tick p99/max ms",
    "hang-up wait ms",
    "close s",
    "conditions",
]


def recording_row(run: Run) -> list[str]:
    recordings = run.relay.recordings
    durations = [check.frames / SAMPLE_RATE for check in run.checks]
    cover = min((check.coverage for check in run.checks), default=0.0)
    with_gaps = sum(1 for check in run.checks if check.gaps or check.empty_channels)
    return [
        str(run.calls),
        f"{run.recordings_written}/{run.calls}",
        str(run.late_samples),
        str(run.gaps),
        str(with_gaps),
        f"{cover * 100:.2f}%",
        f"{min(durations):.2f}/{max(durations):.2f}" if durations else "-",
        f"{run.sending_s:.2f}",
        str(sum(recording.digits for recording in recordings)),
        str(sum(recording.reanchors for recording in recordings)),
        _p99_max(run.relay.tick_ms),
        f"{run.hangup_wait_s * 1000:.0f}",
        f"{run.relay.close_s:.1f}",
        "held" if run.meets_target() else "NOT held",
    ]


def record_root(requested: str | None, needed_bytes: int) -> tuple[Path, str]:
    """Where recordings go: the directory asked for, tmpfs when it has room, else the temp dir."""
    if requested:
        root = Path(tempfile.mkdtemp(prefix="callgate-capture-", dir=requested))
        return root, f"{requested} (as asked)"
    if TMPFS.is_dir() and os.access(TMPFS, os.W_OK):
        free = shutil.disk_usage(TMPFS).free
        if free > 2 * needed_bytes:
            root = Path(tempfile.mkdtemp(prefix="callgate-capture-", dir=TMPFS))
            return root, f"tmpfs {TMPFS} ({free / 2**30:.1f} GiB free)"
    root = Path(tempfile.mkdtemp(prefix="callgate-capture-"))
    return root, f"{tempfile.gettempdir()} (no room on tmpfs {TMPFS})"


def print_method(args: argparse.Namespace, steps: list[int], where: str) -> None:
    print(__doc__.split("Method\n------\n", 1)[1].rstrip())
    print()
    loop = "gateway.app.new_event_loop" if args.loop == "auto" else "asyncio"
    print(
        f"relay on CPU {args.relay_cpu} ({loop} loop), generator on CPU {args.gen_cpu}; "
        f"media ports {args.port_min}-{args.port_max}; "
        f"{args.duration:g} s of packets per run, CPU window from {args.warmup:g} s in; "
        f"steps {','.join(map(str, steps))} calls, capture off then on"
    )
    print(f"recordings written to {where}")
    print(
        f"target: {TARGET_CALLS} calls with capture on, relay on one core: 0 loss, "
        "0 late samples, 0 gaps, every recording written"
    )
    print(flush=True)


def print_report(runs: list[Run]) -> None:
    if not runs:
        return
    print(f"relay event loop: {runs[0].loop_module}")
    print(format_table(RELAY_HEADERS, [relay_row(run) for run in runs]))
    captured = [run for run in runs if run.capture]
    if captured:
        print()
        print("recordings (capture on):")
        print(format_table(RECORDING_HEADERS, [recording_row(run) for run in captured]))
    print()
    offs = {run.calls: run for run in runs if not run.capture}
    for run in captured:
        off = offs.get(run.calls)
        if off is None:
            continue
        print(
            f"{run.calls} calls: capture adds {(run.relay_cpu - off.relay_cpu) * 100:.1f}% of "
            f"the core ({run.us_per_packet - off.us_per_packet:.2f} µs per packet, "
            f"{run.us_per_packet:.2f} against {off.us_per_packet:.2f} relay only)"
        )
    held = [run.calls for run in captured if run.meets_target()]
    print(
        "largest step with capture on that held every condition: "
        + (f"{max(held)} calls" if held else "none")
    )
    easy = [run.calls for run in captured if run.meets_target() and not run.strain()]
    print(
        "largest that held them with headroom (relay under "
        f"{SATURATED_CPU:.0%} of its core, ticker on time, no packet >{LATE_MS:.0f} ms): "
        + (f"{max(easy)} calls" if easy else "none")
    )
    target = [run for run in captured if run.calls == TARGET_CALLS]
    if not target:
        print(f"target ({TARGET_CALLS} recorded calls on one core): no such step in this run")
        return
    run = target[-1]
    if run.meets_target():
        strain = run.strain()
        print(
            f"target MET: {TARGET_CALLS} recorded calls on one core with 0 loss, 0 late samples, "
            f"0 gaps (relay CPU {run.relay_cpu * 100:.0f}% of the core"
            + (f"; but {', '.join(strain)}" if strain else "; with headroom")
            + ")"
        )
        return
    reasons = []
    if run.generator_limited:
        reasons.append("the generator did not keep up: the step measures the generator")
    if run.loss_pct:
        reasons.append(f"loss {run.loss_pct:.3f}%")
    if run.late_samples:
        reasons.append(f"{run.late_samples} late samples")
    if run.gaps:
        reasons.append(f"{run.gaps} gaps")
    if run.recordings_written != run.calls:
        reasons.append(f"{run.recordings_written} of {run.calls} recordings")
    if run.relay.faults or run.relay.tick_errors:
        reasons.append("errors in the relay")
    print(f"target NOT met at {TARGET_CALLS} calls: {'; '.join(reasons)}")


# ------------------------------------------------------------------------------------- main


def _calls(text: str) -> list[int]:
    steps = [int(item) for item in text.split(",") if item.strip()]
    if not steps or any(step <= 0 for step in steps):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive call counts")
    return steps


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_capture", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", type=_calls, help="steps (default 100,300,500,700)")
    parser.add_argument("--duration", type=float, help="seconds of packets per run (20)")
    parser.add_argument("--warmup", type=float, help="seconds before the CPU window (1)")
    parser.add_argument("--quick", action="store_true", help="100 and 500 calls, 5 s each")
    parser.add_argument("--relay-cpu", type=int, default=0)
    parser.add_argument("--gen-cpu", type=int, default=1)
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio"),
        default="auto",
        help="auto: the gateway's own choice (uvloop when installed)",
    )
    parser.add_argument("--port-min", type=int, default=61000)
    parser.add_argument("--port-max", type=int, default=65535)
    parser.add_argument("--record-dir", help="where recordings go (default: tmpfs if it has room)")
    parser.add_argument("--keep", action="store_true", help="keep the recordings")
    parser.add_argument("--seed", type=int, default=3550)
    parser.add_argument(
        "--audio",
        choices=("tone", "speech"),
        default="tone",
        help="what the phones send: a steady tone each (never passes the DTMF screen) or "
        "speech-like audio (loud voiced speech both ways, the DTMF receiver's worst case)",
    )
    parser.add_argument("--quiet-cores", type=float, default=OTHERS_LIMIT)
    parser.add_argument(
        "--quiet-wait-s",
        type=float,
        help="wait up to this long before each run for other load to stop (30; quick 5)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more capture-on run under cProfile"
    )
    parser.add_argument("--profile-calls", type=int, default=TARGET_CALLS)
    parser.add_argument(
        "--hangup-after",
        type=float,
        default=0.0,
        help="end the calls this long after the last packet was handled (0: as a BYE "
        "right after the media stops; 0.5 shows audio held at a stream's end being lost)",
    )
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = [100, 500] if args.quick else [100, 300, 500, 700]
    if args.duration is None:
        args.duration = 5.0 if args.quick else 20.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.quiet_wait_s is None:
        args.quiet_wait_s = 5.0 if args.quick else 30.0
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_options(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if args.relay_cpu not in cpus or args.gen_cpu not in cpus or args.relay_cpu == args.gen_cpu:
        print(f"need two distinct CPUs among {cpus} (--relay-cpu/--gen-cpu)", file=sys.stderr)
        return 2
    capacity = (args.port_max - args.port_min + 1) // 4
    if max(args.calls) > capacity:
        print(f"ports {args.port_min}-{args.port_max} carry {capacity} calls", file=sys.stderr)
        return 2
    print_title("bench_capture: " + __doc__.split("\n")[0])
    for line in machine_lines():
        print(line)
    needed = max(args.calls) * args.duration * RECORDING_BYTES_PER_S
    root, where = record_root(args.record_dir, int(needed))
    print_method(args, args.calls, where)
    bench = Bench(args, root)
    runs: list[Run] = []
    profiled: Run | None = None
    try:
        for calls in args.calls:
            for capture in (False, True):
                run = bench.run(calls, capture)
                runs.append(run)
                print(
                    f"{calls} calls, capture {'on ' if capture else 'off'}: loss "
                    f"{run.loss_pct:.3f}%, relay CPU {run.relay_cpu * 100:.0f}%"
                    + (
                        f", {run.recordings_written} recordings, late {run.late_samples}, "
                        f"gaps {run.gaps}"
                        if capture
                        else ""
                    )
                    + (f" ({', '.join(run.notes)})" if run.notes else ""),
                    flush=True,
                )
        if args.profile:
            profiled = bench.run(args.profile_calls, True, profile=True)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"recordings kept in {root}")
    print()
    print_report(runs)
    if profiled is not None:
        print()
        print(
            f"relay profile (cProfile), capture on, {profiled.calls} calls: relay CPU "
            f"{profiled.relay_cpu * 100:.0f}% under the profiler, loss {profiled.loss_pct:.3f}%"
        )
        for line in profiled.relay.profile:
            print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
