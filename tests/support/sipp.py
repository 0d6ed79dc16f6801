"""Run sipp as a SIP caller (UAC) or callee (UAS) for integration tests and benchmarks.

A :class:`SippScenario` says what to run (scenario file, addresses, call count and
rate, keys); :meth:`SippScenario.start` launches sipp and returns a
:class:`SippProcess` handle whose :meth:`~SippProcess.wait` and
:meth:`~SippProcess.result` give the exit code, the parsed statistics and the error
log, so a failed assertion shows why the calls failed.

Every peer gets its own files in the test's directory (errors, statistics CSV, final
screen, SIP message trace) and, by default, an :class:`~tests.support.rtp.RtpSink`
on the port its SDP advertises: the scenarios in ``tests/integration/scenarios``
put ``[media_port+4]`` in their SDP and send their pcap from that port, so the sink
records exactly the RTP that reaches the peer.

sipp exit codes (sipp's own documentation): 0 all calls succeeded, 1 at least one
call failed, 97 exit on an internal command, 99 normal exit without calls processed,
255 fatal error, 254 fatal error binding a socket.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, NoReturn

import pytest

from tests.support.rtp import RtpSink

SUPPORT_DIR = Path(__file__).resolve().parent
SCENARIO_DIR = SUPPORT_DIR.parent / "integration" / "scenarios"
MEDIA_DIR = SUPPORT_DIR.parent / "integration" / "media"
INSTALL_HINT = "run scripts/install-test-deps.sh"

EXIT_ALL_CALLS_OK = 0
EXIT_SOME_CALLS_FAILED = 1
EXIT_INTERNAL_COMMAND = 97
EXIT_NO_CALLS_PROCESSED = 99
EXIT_FATAL = 255
EXIT_BIND_FAILED = 254
EXIT_MEANINGS = {
    EXIT_ALL_CALLS_OK: "all calls succeeded",
    EXIT_SOME_CALLS_FAILED: "at least one call failed",
    EXIT_INTERNAL_COMMAND: "exit on internal command",
    EXIT_NO_CALLS_PROCESSED: "normal exit without calls processed",
    EXIT_FATAL: "fatal error",
    EXIT_BIND_FAILED: "fatal error binding a socket",
}

# What a sipp peer's SDP advertises, relative to -mp: sipp itself binds -mp and -mp+2.
RTP_PORT_OFFSET = 4

DEFAULT_CALLEE = "+14155550100"
DEFAULT_CALLER = "+12125550100"

Role = Literal["uac", "uas"]
Transport = Literal["udp", "tcp"]

_SIPP_TRANSPORT_MODE: dict[str, str] = {"udp": "u1", "tcp": "t1"}

# Options a scenario needs to work at all (see the scenario's own comment).
SCENARIO_ARGS: dict[str, tuple[str, ...]] = {
    "uas_challenge_407": ("-deadcall_wait", "0"),
}
_instance_numbers = itertools.count(1)


def in_ci() -> bool:
    """True when the CI environment variable says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(reason: str) -> NoReturn:
    """Fail in CI (a missing peer must not pass silently), skip with a how-to elsewhere."""
    message = f"{reason}: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def sipp_version(sipp: str) -> str:
    """sipp's version banner, e.g. ``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``."""
    output = subprocess.run(
        [sipp, "-v"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for line in output.splitlines():
        if line.strip().startswith("SIPp v"):
            return line.strip()
    return output.strip().splitlines()[0] if output.strip() else "unknown"


def _has_raw_socket_capability(path: str) -> bool:
    """pcap play sends through a raw socket: root, or the binary carries file capabilities."""
    if os.geteuid() == 0:
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def find_sipp() -> str:
    """Path of a sipp built with pcap play that may open raw sockets, or fail/skip."""
    found = shutil.which("sipp")
    if found is None:
        missing_tool("sipp not installed")
    if "PCAP" not in sipp_version(found):
        missing_tool(f"{found} was built without pcap play (sipp -v lacks PCAP)")
    if not _has_raw_socket_capability(found):
        missing_tool(
            f"{found} cannot open raw sockets for pcap play "
            f"(run as root or: setcap cap_net_raw+ep {found})"
        )
    return found


def free_port(host: str, transport: Literal["udp", "tcp", "both"] = "both") -> int:
    """A port on ``host`` that is free for UDP, TCP or both at the time of the call."""
    kinds = {
        "udp": [socket.SOCK_DGRAM],
        "tcp": [socket.SOCK_STREAM],
        "both": [socket.SOCK_DGRAM, socket.SOCK_STREAM],
    }[transport]
    for _ in range(100):
        with socket.socket(socket.AF_INET, kinds[0]) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if all(_can_bind(host, port, kind) for kind in kinds[1:]):
            return port
    raise RuntimeError(f"no free {transport} port on {host}")


def free_media_port(host: str, span: int = RTP_PORT_OFFSET + 2) -> int:
    """An even UDP port P on ``host`` with P .. P+span-1 all free (RTP/RTCP pairs)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000) & ~1
        if all(_can_bind(host, base + offset, socket.SOCK_DGRAM) for offset in range(span)):
            return base
    raise RuntimeError(f"no {span} consecutive free UDP ports on {host}")


def _can_bind(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def is_listening(host: str, port: int, transport: Transport) -> bool:
    """Whether a socket is bound (UDP) or listening (TCP) on host:port, per /proc/net.

    Reading the kernel's table avoids probing with a bind, which could take the port
    from the process that is about to bind it.
    """
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    packed = socket.inet_aton(host)
    wanted = {
        f"{int.from_bytes(packed, 'little'):08X}:{port:04X}",
        f"00000000:{port:04X}",
    }
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[1] not in wanted:
            continue
        if transport == "udp" or fields[3] == "0A":
            return True
    return False


def _parse_duration_s(text: str) -> float:
    """sipp's ``HH:MM:SS`` or ``HH:MM:SS:uuuuuu`` durations, in seconds."""
    parts = text.strip().split(":")
    if len(parts) < 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not a sipp duration: {text!r}")
    seconds = int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])
    if len(parts) == 4:
        seconds += int(parts[3]) / 10 ** len(parts[3])
    return float(seconds)


@dataclass(frozen=True)
class SippStatsRow:
    """One line of sipp's ``-trace_stat`` CSV: (P) columns cover the interval, (C) the run."""

    values: Mapping[str, str]

    def cumulative(self, name: str) -> int:
        return int(self.values[f"{name}(C)"])

    def periodic(self, name: str) -> int:
        return int(self.values[f"{name}(P)"])

    @property
    def created_calls(self) -> int:
        return int(self.values["TotalCallCreated"])

    @property
    def current_calls(self) -> int:
        return int(self.values["CurrentCall"])

    @property
    def successful_calls(self) -> int:
        return self.cumulative("SuccessfulCall")

    @property
    def failed_calls(self) -> int:
        return self.cumulative("FailedCall")

    @property
    def interval_successful_calls(self) -> int:
        return self.periodic("SuccessfulCall")

    @property
    def interval_failed_calls(self) -> int:
        return self.periodic("FailedCall")

    @property
    def elapsed_s(self) -> float:
        return _parse_duration_s(self.values["ElapsedTime(C)"])

    @property
    def interval_s(self) -> float:
        return _parse_duration_s(self.values["ElapsedTime(P)"])

    @property
    def call_rate(self) -> float:
        """Calls per second created during the interval."""
        return float(self.values["CallRate(P)"])

    @property
    def failure_reasons(self) -> dict[str, int]:
        """Failed calls by sipp's reason (FailedMaxUDPRetrans, FailedUnexpectedMessage...)."""
        reasons: dict[str, int] = {}
        for key, value in self.values.items():
            if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
                with contextlib.suppress(ValueError):
                    if int(value):
                        reasons[key[: -len("(C)")]] = int(value)
        return reasons

    def response_time_s(self, name: str | int = "setup", periodic: bool = False) -> float:
        """Average of a scenario response-time measure (``rtd="setup"`` or ``rtd="1"``),
        in seconds; sipp measures with millisecond resolution."""
        column = f"ResponseTime{name}({'P' if periodic else 'C'})"
        return _parse_duration_s(self.values[column])

    @property
    def call_length_s(self) -> float:
        return _parse_duration_s(self.values["CallLength(C)"])


@dataclass(frozen=True)
class SippStats:
    """All rows of a ``-trace_stat`` file; the last one is the final count."""

    rows: tuple[SippStatsRow, ...]

    @classmethod
    def read(cls, path: Path) -> SippStats | None:
        """The statistics in ``path``, or None when sipp wrote none (yet)."""
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        reader = csv.reader(lines, delimiter=";")
        header = next(reader)
        rows = tuple(
            SippStatsRow(dict(zip(header, row, strict=False)))
            for row in reader
            if len(row) >= len(header) - 1
        )
        return cls(rows) if rows else None

    @property
    def final(self) -> SippStatsRow:
        return self.rows[-1]

    @property
    def successful_calls(self) -> int:
        return self.final.successful_calls

    @property
    def failed_calls(self) -> int:
        return self.final.failed_calls

    @property
    def created_calls(self) -> int:
        return self.final.created_calls


@dataclass(frozen=True)
class SippResult:
    """What a sipp run ended with, and the evidence to explain a failure."""

    name: str
    command: tuple[str, ...]
    returncode: int | None
    stats: SippStats | None
    errors: str
    stderr: str
    screen: str
    messages_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == EXIT_ALL_CALLS_OK

    @property
    def successful_calls(self) -> int:
        return self.stats.successful_calls if self.stats else 0

    @property
    def failed_calls(self) -> int:
        return self.stats.failed_calls if self.stats else 0

    def describe(self) -> str:
        """A report for assertion messages: exit code, counts, errors, screen, messages."""
        meaning = EXIT_MEANINGS.get(self.returncode or 0, "unknown exit code")
        if self.returncode is None:
            meaning = "still running"
        summary = f"sipp {self.name}: exit {self.returncode} ({meaning})"
        if self.stats:
            final = self.stats.final
            summary += (
                f"; created {final.created_calls}, successful {final.successful_calls},"
                f" failed {final.failed_calls} {final.failure_reasons or ''}"
            )
        sections = [summary, "command: " + " ".join(self.command)]
        for title, text in (
            ("errors", self.errors),
            ("stderr", self.stderr),
            ("screen", self.screen),
            ("last SIP messages", self.messages_tail),
        ):
            if text.strip():
                sections.append(f"--- {title} ---\n{text.strip()}")
        return "\n".join(sections)

    def assert_success(self, calls: int | None = None) -> None:
        """All calls succeeded (and exactly ``calls`` of them, when given)."""
        assert self.ok, self.describe()
        if calls is not None:
            assert self.successful_calls == calls, self.describe()
            assert self.failed_calls == 0, self.describe()


@dataclass(frozen=True)
class SippScenario:
    """One sipp invocation: scenario, role, addresses, call pattern and scenario keys.

    ``scenario`` is a file name in ``tests/integration/scenarios`` (with or without
    ``.xml``) or a path. ``role`` defaults to the name's ``uac_``/``uas_`` prefix.
    ``duration_ms`` is sipp's ``-d``, which the scenarios' bare ``<pause/>`` uses (call
    hold time, ringing or early-media time, depending on the scenario).
    """

    scenario: str | Path
    local_ip: str
    remote: tuple[str, int] | None = None
    role: Role | None = None
    local_port: int | None = None
    media_ip: str | None = None
    media_port: int | None = None
    transport: Transport = "udp"
    calls: int | None = 1
    rate: float | None = None
    rate_period_ms: int | None = None
    call_limit: int | None = None
    duration_ms: int = 1000
    service: str = DEFAULT_CALLEE
    caller: str = DEFAULT_CALLER
    play_media: bool = True
    rtp_sink: bool = True
    rtp_echo: bool = False
    keep_rtp_packets: bool = True
    auth_user: str = "alice"
    auth_password: str = "secret"
    keys: Mapping[str, str] = field(default_factory=dict)
    recv_timeout_ms: int | None = 10_000
    global_timeout_s: float | None = None
    max_socket: int | None = None
    auto_answer: bool = True
    trace_messages: bool = True
    stats_interval_s: int = 1
    extra_args: Sequence[str] = ()
    name: str | None = None

    @property
    def path(self) -> Path:
        candidate = Path(self.scenario)
        if candidate.suffix != ".xml":
            candidate = candidate.with_name(candidate.name + ".xml")
        if not candidate.is_absolute() and not candidate.exists():
            candidate = SCENARIO_DIR / candidate
        if not candidate.is_file():
            raise FileNotFoundError(f"sipp scenario {self.scenario!r} not found ({candidate})")
        return candidate

    @property
    def resolved_role(self) -> Role:
        if self.role is not None:
            return self.role
        stem = self.path.stem
        if stem.startswith("uac"):
            return "uac"
        if stem.startswith("uas"):
            return "uas"
        raise ValueError(f"cannot tell the role of scenario {stem!r}: pass role='uac' or 'uas'")

    def start(self, workdir: Path, sipp: str | None = None) -> SippProcess:
        """Launch sipp; a UAS is returned once its SIP port is bound."""
        return SippProcess.launch(self, workdir, sipp or find_sipp())


def run_sipp(
    scenario: str | Path, workdir: Path, *, sipp: str | None = None, **options: object
) -> SippProcess:
    """Build a :class:`SippScenario` from keyword options and start it."""
    spec = SippScenario(scenario=scenario, **options)  # type: ignore[arg-type]
    return spec.start(workdir, sipp)


class SippTimeoutError(AssertionError):
    """sipp did not finish in time; the message carries its report."""


class SippProcess:
    """A running sipp peer: its addresses, its files, its RTP sink and its outcome."""

    def __init__(
        self,
        spec: SippScenario,
        command: list[str],
        process: subprocess.Popen[bytes],
        *,
        name: str,
        local_port: int,
        media_ip: str,
        media_port: int,
        files: dict[str, Path],
        rtp: RtpSink | None,
    ) -> None:
        self.spec = spec
        self.command = command
        self.process = process
        self.name = name
        self.local_ip = spec.local_ip
        self.local_port = local_port
        self.media_ip = media_ip
        self.media_port = media_port
        self.files = files
        self.rtp = rtp

    @classmethod
    def launch(cls, spec: SippScenario, workdir: Path, sipp: str) -> SippProcess:
        role = spec.resolved_role
        if role == "uac" and spec.remote is None:
            raise ValueError("a UAC needs remote=(host, port)")
        workdir.mkdir(parents=True, exist_ok=True)
        stage_stream_files(spec.path, workdir)
        name = spec.name or f"{spec.path.stem}-{next(_instance_numbers)}"
        transport_kind: Literal["udp", "tcp"] = spec.transport
        local_port = spec.local_port or free_port(spec.local_ip, transport_kind)
        media_ip = spec.media_ip or spec.local_ip
        media_port = spec.media_port or free_media_port(media_ip)
        files = {
            "errors": workdir / f"{name}.errors.log",
            "stats": workdir / f"{name}.stats.csv",
            "screen": workdir / f"{name}.screen.log",
            "messages": workdir / f"{name}.messages.log",
            "stderr": workdir / f"{name}.stderr.log",
        }
        for stale in files.values():
            stale.unlink(missing_ok=True)
        rtp = None
        if spec.rtp_sink:
            rtp = RtpSink(
                media_ip,
                media_port + RTP_PORT_OFFSET,
                echo=spec.rtp_echo,
                keep_packets=spec.keep_rtp_packets,
            )
        command = build_command(spec, sipp, local_port, media_ip, media_port, files)
        try:
            with files["stderr"].open("wb") as stderr:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=workdir,
                )
        except BaseException:
            if rtp is not None:
                rtp.close()
            raise
        peer = cls(
            spec,
            command,
            process,
            name=name,
            local_port=local_port,
            media_ip=media_ip,
            media_port=media_port,
            files=files,
            rtp=rtp,
        )
        if role == "uas":
            try:
                peer.wait_ready()
            except Exception:
                peer.close()
                raise
        return peer

    @property
    def address(self) -> tuple[str, int]:
        """Where this peer's SIP socket is."""
        return self.local_ip, self.local_port

    @property
    def rtp_address(self) -> tuple[str, int]:
        """The media address this peer's SDP advertises (and sends from)."""
        return self.media_ip, self.media_port + RTP_PORT_OFFSET

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until sipp's SIP socket is bound (UDP) or listening (TCP)."""
        deadline = time.monotonic() + timeout
        while not is_listening(self.local_ip, self.local_port, self.spec.transport):
            if self.process.poll() is not None:
                raise RuntimeError(f"sipp exited before it was ready\n{self.result().describe()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sipp not listening after {timeout}s\n{self.result().describe()}"
                )
            time.sleep(0.02)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for sipp to exit and return its exit code.

        Raises :class:`SippTimeoutError` (an AssertionError with sipp's report) when it
        is still running after ``timeout`` seconds; teardown stops it.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise SippTimeoutError(
                f"sipp {self.name} still running after {timeout}s\n{self.result().describe()}"
            ) from None

    def result(self) -> SippResult:
        """The outcome so far (final once the process has exited)."""
        return SippResult(
            name=self.name,
            command=tuple(self.command),
            returncode=self.process.poll(),
            stats=SippStats.read(self.files["stats"]),
            errors=_read_tail(self.files["errors"], 8000),
            stderr=_filtered_stderr(_read_tail(self.files["stderr"], 4000)),
            screen=_read_tail(self.files["screen"], 4000),
            messages_tail=_read_tail(self.files["messages"], 6000),
        )

    def wait_result(self, timeout: float = 30.0) -> SippResult:
        self.wait(timeout)
        return self.result()

    def assert_success(self, calls: int | None = None, timeout: float = 30.0) -> SippResult:
        """Wait for sipp to exit and assert that every call (``calls`` of them) succeeded."""
        outcome = self.wait_result(timeout)
        outcome.assert_success(calls)
        return outcome

    def interval_stats(self) -> list[SippStatsRow]:
        """The statistics rows written so far (one per ``stats_interval_s``)."""
        stats = SippStats.read(self.files["stats"])
        return list(stats.rows) if stats else []

    def messages(self) -> list[TracedMessage]:
        """The SIP messages this peer sent and received (needs trace_messages=True)."""
        try:
            return parse_message_log(self.files["messages"].read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def digest_checks(self, password: str | None = None) -> list[DigestCheck]:
        """Proxy-Authorization credentials received, verified with ``password``
        (default: the scenario's auth_password) against the nonces this peer issued."""
        return digest_checks(self.messages(), password or self.spec.auth_password)

    def stop(self, grace: float = 5.0) -> SippResult:
        """Stop sipp: SIGUSR1 asks it to let active calls end and quit, as pressing q does;
        a second SIGUSR1 forces the exit, then SIGTERM and SIGKILL as last resorts."""
        if self.process.poll() is None:
            for sig, wait_s in (
                (signal.SIGUSR1, grace),
                (signal.SIGUSR1, 2.0),
                (signal.SIGTERM, 2.0),
                (signal.SIGKILL, 5.0),
            ):
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
                try:
                    self.process.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        return self.result()

    def close(self) -> SippResult:
        """Stop sipp and release the RTP sink's port."""
        outcome = self.stop()
        if self.rtp is not None:
            self.rtp.close()
        return outcome


_RTP_STREAM_FILE = re.compile(r'rtp_stream="([^",]+)')


def stage_stream_files(scenario: Path, workdir: Path) -> None:
    """Copy the media files a scenario's ``rtp_stream`` actions name into sipp's working
    directory, where sipp 3.6 reads them (``play_pcap_audio`` files are found from the
    scenario's own directory, ``rtp_stream`` ones are not)."""
    for name in _RTP_STREAM_FILE.findall(scenario.read_text()):
        source = MEDIA_DIR / name
        if "/" not in name and source.is_file():
            shutil.copyfile(source, workdir / name)


def build_command(
    spec: SippScenario,
    sipp: str,
    local_port: int,
    media_ip: str,
    media_port: int,
    files: Mapping[str, Path],
) -> list[str]:
    """sipp's command line for ``spec`` (kept separate so it can be read in reports)."""
    command = [sipp]
    if spec.resolved_role == "uac":
        assert spec.remote is not None
        command.append(f"{spec.remote[0]}:{spec.remote[1]}")
    command += ["-sf", str(spec.path)]
    command += ["-i", spec.local_ip, "-p", str(local_port)]
    command += ["-mi", media_ip, "-mp", str(media_port)]
    command += ["-t", _SIPP_TRANSPORT_MODE[spec.transport]]
    command += ["-s", spec.service, "-d", str(spec.duration_ms)]
    keys = {
        "caller": spec.caller,
        "play_media": "yes" if spec.play_media else "no",
        "auth_user": spec.auth_user,
        "auth_password": spec.auth_password,
        **spec.keys,
    }
    for key, value in keys.items():
        command += ["-key", key, value]
    command += ["-au", spec.auth_user, "-ap", spec.auth_password]
    if spec.calls is not None:
        command += ["-m", str(spec.calls)]
    if spec.rate is not None:
        command += ["-r", f"{spec.rate:g}"]
    if spec.rate_period_ms is not None:
        command += ["-rp", str(spec.rate_period_ms)]
    if spec.call_limit is not None:
        command += ["-l", str(spec.call_limit)]
    if spec.recv_timeout_ms is not None:
        command += ["-recv_timeout", str(spec.recv_timeout_ms)]
    if spec.global_timeout_s is not None:
        command += ["-timeout", f"{spec.global_timeout_s:g}s", "-timeout_error"]
    if spec.max_socket is not None:
        command += ["-max_socket", str(spec.max_socket)]
    if spec.auto_answer:
        command.append("-aa")
    command += ["-trace_err", "-error_file", str(files["errors"])]
    command += ["-trace_stat", "-stf", str(files["stats"]), "-fd", str(spec.stats_interval_s)]
    command += ["-trace_screen", "-screen_file", str(files["screen"])]
    if spec.trace_messages:
        command += ["-trace_msg", "-message_file", str(files["messages"])]
    command.append("-nostdin")
    command += list(SCENARIO_ARGS.get(spec.path.stem, ()))
    command += list(spec.extra_args)
    return command


_LOG_SEPARATOR = re.compile(r"^-{20,} (.*)$", re.MULTILINE)
_LOG_DIRECTION = re.compile(r"^(UDP|TCP|TLS|SCTP) message (sent|received)", re.IGNORECASE)
_AUTH_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class TracedMessage:
    """One SIP message from sipp's -trace_msg file; ``timestamp`` is epoch seconds."""

    direction: Literal["sent", "received"]
    text: str
    timestamp: float | None = None

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        first = self.start_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        first = self.start_line
        if not first.startswith("SIP/2.0 "):
            return None
        return int(first.split(" ", 2)[1])

    def header(self, name: str) -> list[str]:
        """Values of header ``name`` (case-insensitive; no compact forms), in order."""
        head = self.text.split("\n\n", 1)[0]
        prefix = name.lower() + ":"
        return [
            line.split(":", 1)[1].strip()
            for line in head.splitlines()[1:]
            if line.lower().startswith(prefix)
        ]


def parse_message_log(text: str) -> list[TracedMessage]:
    """The messages of a -trace_msg file, in order, with direction and time."""
    messages: list[TracedMessage] = []
    parts = _LOG_SEPARATOR.split(text)
    for stamp, block in zip(parts[1::2], parts[2::2], strict=False):
        lines = block.strip("\n").split("\n", 1)
        match = _LOG_DIRECTION.match(lines[0].strip()) if lines else None
        if match is None or len(lines) < 2:
            continue
        body = lines[1].replace("\r\n", "\n").strip("\n")
        direction: Literal["sent", "received"] = (
            "sent" if match.group(2).lower() == "sent" else "received"
        )
        messages.append(TracedMessage(direction, body + "\n", _parse_log_time(stamp)))
    return messages


def _parse_log_time(stamp: str) -> float | None:
    """sipp writes local wall-clock time, ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    try:
        return datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def parse_digest(value: str) -> dict[str, str]:
    """The parameters of a Digest challenge or credentials (RFC 2617 section 3.2)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not Digest credentials: {value!r}")
    params: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = quoted if quoted is not None else bare
    return params


def digest_response(params: Mapping[str, str], method: str, password: str) -> str:
    """The request-digest for credentials ``params`` (RFC 2617 section 3.2.2.1, MD5)."""
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm != "MD5":
        raise ValueError(f"digest algorithm {algorithm} is not supported here")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{params.get('username', '')}:{params.get('realm', '')}:{password}")
    ha2 = md5(f"{method}:{params.get('uri', '')}")
    qop = params.get("qop")
    if qop:
        return md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{qop}:{ha2}")
    return md5(f"{ha1}:{params.get('nonce', '')}:{ha2}")


@dataclass(frozen=True)
class DigestCheck:
    """Credentials one request carried, checked against what this peer challenged with."""

    method: str
    username: str
    realm: str
    nonce: str
    response: str
    expected: str
    nonce_issued: bool

    @property
    def valid(self) -> bool:
        return self.nonce_issued and self.response == self.expected


def digest_checks(
    messages: Sequence[TracedMessage], password: str, header: str = "Proxy-Authorization"
) -> list[DigestCheck]:
    """Check every received request's Digest credentials (RFC 2617 section 3.2.2).

    A nonce counts as issued when a challenge this peer sent (Proxy-Authenticate or
    WWW-Authenticate) carried it, with the same realm.
    """
    issued: set[tuple[str, str]] = set()
    for message in messages:
        if message.direction != "sent":
            continue
        for challenge in message.header("Proxy-Authenticate") + message.header("WWW-Authenticate"):
            params = parse_digest(challenge)
            issued.add((params.get("realm", ""), params.get("nonce", "")))
    checks: list[DigestCheck] = []
    for message in messages:
        if message.direction != "received" or message.method is None:
            continue
        for credentials in message.header(header):
            params = parse_digest(credentials)
            checks.append(
                DigestCheck(
                    method=message.method,
                    username=params.get("username", ""),
                    realm=params.get("realm", ""),
                    nonce=params.get("nonce", ""),
                    response=params.get("response", ""),
                    expected=digest_response(params, message.method, password),
                    nonce_issued=(params.get("realm", ""), params.get("nonce", "")) in issued,
                )
            )
    return checks


def _read_tail(path: Path, limit: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _filtered_stderr(text: str) -> str:
    """sipp's stderr without the pcap loader's informational lines."""
    noise = ("In pcap ", "max pkt length", "base port", "Resolving remote host")
    return "\n".join(line for line in text.splitlines() if not line.startswith(noise))
