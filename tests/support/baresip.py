"""Run the baresip softphone headless, as a real SIP caller or callee for integration tests.

No sound card is involved: the microphone is the ``aufile`` module reading a WAV
file (8 kHz mono 16-bit, as the G.711 codecs run), the loudspeaker is an
``aubridge`` device nobody reads, and the ``sndfile`` audio filter writes what the
phone sent and what it decoded to WAV files, so a test can check the audio that
reached the phone. The phone is driven through the ``ctrl_tcp`` module: JSON
commands and events in netstrings over TCP (the framing of
https://cr.yp.to/proto/netstrings.txt), e.g. ``{"command": "dial", "params": uri}``
and ``{"event": true, "type": "CALL_ESTABLISHED", ...}``.

Media binds to the same loopback address as SIP: baresip's ``net_interface``
accepts an IP address, so the phone's SDP, RTP and SIP all use ``listen_ip``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.sipp import MEDIA_DIR, free_media_port, free_port, missing_tool

MODULE_DIRS = (
    Path("/usr/lib/baresip/modules"),
    Path("/usr/local/lib/baresip/modules"),
    Path("/usr/lib64/baresip/modules"),
)
REQUIRED_MODULES = ("g711", "aufile", "aubridge", "sndfile", "ctrl_tcp", "account", "menu")
DEFAULT_AUDIO = MEDIA_DIR / "tone440_8k.wav"


class BaresipError(RuntimeError):
    """baresip failed to start, answer a command or report an expected event."""


def find_module_dir() -> Path | None:
    """The first module directory that has every module the harness loads."""
    for directory in MODULE_DIRS:
        if all((directory / f"{name}.so").is_file() for name in REQUIRED_MODULES):
            return directory
    return None


def find_baresip() -> str:
    """Path of the baresip binary (with the modules it needs), or fail/skip."""
    found = shutil.which("baresip")
    if found is None:
        missing_tool("baresip not installed")
    if find_module_dir() is None:
        missing_tool(
            "baresip modules missing (need "
            + ", ".join(REQUIRED_MODULES)
            + " in "
            + " or ".join(str(directory) for directory in MODULE_DIRS)
            + ")"
        )
    return found


@dataclass(frozen=True)
class BaresipEvent:
    """One ctrl_tcp event, e.g. type CALL_RINGING / CALL_ESTABLISHED / CALL_CLOSED."""

    type: str
    event_class: str
    peer_uri: str | None
    call_id: str | None
    param: str | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaresipEvent:
        return cls(
            type=str(data.get("type", "")),
            event_class=str(data.get("class", "")),
            peer_uri=data.get("peeruri"),
            call_id=data.get("id"),
            param=data.get("param"),
            raw=data,
        )


def encode_netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class NetstringDecoder:
    """Incremental netstring decoder; malformed framing raises ValueError with a reason."""

    def __init__(self, max_length: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        items: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 20:
                    raise ValueError("netstring length prefix longer than 20 bytes")
                return items
            prefix = bytes(self._buffer[:colon])
            if not prefix.isdigit():
                raise ValueError(f"netstring length {prefix!r} is not a decimal number")
            length = int(prefix)
            if length > self._max_length:
                raise ValueError(f"netstring of {length} bytes exceeds {self._max_length}")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return items
            if self._buffer[end : end + 1] != b",":
                raise ValueError("netstring not terminated by ','")
            items.append(bytes(self._buffer[colon + 1 : end]))
            del self._buffer[: end + 1]


@dataclass
class BaresipConfig:
    """What the phone's config and accounts files say."""

    listen_ip: str
    sip_port: int
    ctrl_port: int
    module_dir: Path
    audio_source: Path = DEFAULT_AUDIO
    user: str = "+12125550100"
    display_name: str = "Test Phone"
    rtp_port_min: int = 0
    rtp_port_max: int = 0
    auth_user: str | None = None
    auth_password: str | None = None
    outbound_proxy: str | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    answer_mode: str = "manual"
    extra_account_params: dict[str, str] = field(default_factory=dict)

    def config_text(self, record_dir: Path) -> str:
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{self.listen_ip}:{self.sip_port}"),
            ("sip_trans_def", "udp"),
            ("call_local_timeout", "120"),
            ("call_max_calls", "4"),
            ("net_interface", self.listen_ip),
            ("audio_player", "aubridge,callgate-test-speaker"),
            ("audio_alert", "aubridge,callgate-test-speaker"),
            ("audio_source", f"aufile,{self.audio_source}"),
            ("audio_level", "no"),
            ("ausrc_format", "s16"),
            ("auplay_format", "s16"),
            ("auenc_format", "s16"),
            ("audec_format", "s16"),
            ("audio_buffer", "20-160"),
            ("rtp_tos", "0"),
            ("rtp_ports", f"{self.rtp_port_min}-{self.rtp_port_max}"),
            ("rtp_timeout", "0"),
            ("module_path", str(self.module_dir)),
            ("module", "g711.so"),
            ("module", "aufile.so"),
            ("module", "aubridge.so"),
            ("module", "sndfile.so"),
            ("module", "ctrl_tcp.so"),
            ("module_app", "account.so"),
            ("module_app", "menu.so"),
            ("snd_path", str(record_dir)),
            ("ctrl_tcp_listen", f"{self.listen_ip}:{self.ctrl_port}"),
            ("video_display", "none"),
        ]
        return "".join(f"{key}\t\t{value}\n" for key, value in lines)

    def account_line(self) -> str:
        params = {
            "regint": "0",
            "audio_codecs": ",".join(self.codecs),
            "answermode": self.answer_mode,
        }
        if self.auth_user:
            params["auth_user"] = self.auth_user
        if self.auth_password:
            params["auth_pass"] = self.auth_password
        if self.outbound_proxy:
            params["outbound"] = f'"{self.outbound_proxy}"'
        params.update(self.extra_account_params)
        suffix = "".join(f";{key}={value}" for key, value in params.items())
        return f'"{self.display_name}" <sip:{self.user}@{self.listen_ip}:{self.sip_port}>{suffix}\n'


class Baresip:
    """A running baresip, driven over ctrl_tcp; events are collected as they arrive."""

    def __init__(self, binary: str, workdir: Path, config: BaresipConfig) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config = config
        self.config_dir = workdir / "config"
        self.record_dir = workdir / "recordings"
        self.log_path = workdir / "baresip.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._events: list[BaresipEvent] = []
        self._events_changed = threading.Condition()
        self._tokens = 0
        self._send_lock = threading.Lock()
        self.protocol_errors: list[str] = []

    @property
    def sip_address(self) -> tuple[str, int]:
        return self.config.listen_ip, self.config.sip_port

    @property
    def uri(self) -> str:
        """This phone's own SIP URI (where a callee-side test sends INVITEs)."""
        return f"sip:{self.config.user}@{self.config.listen_ip}:{self.config.sip_port}"

    def start(self, timeout: float = 10.0) -> Baresip:
        """Write the config, launch baresip and connect to its control socket."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.config.config_text(self.record_dir))
        (self.config_dir / "accounts").write_text(self.config.account_line())
        (self.config_dir / "contacts").write_text("")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "-f", str(self.config_dir), "-v"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BaresipError(
                    f"baresip exited with {self.process.returncode}\n{self.log_tail()}"
                )
            try:
                self._socket = socket.create_connection(
                    (self.config.listen_ip, self.config.ctrl_port), timeout=1.0
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError(f"ctrl_tcp not reachable\n{self.log_tail()}") from None
                time.sleep(0.05)
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="baresip-ctrl", daemon=True)
        self._reader.start()
        self._wait_ready(deadline)
        return self

    def _wait_ready(self, deadline: float) -> None:
        while "baresip is ready" not in self.log_text():
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip did not report ready\n{self.log_tail()}")
            time.sleep(0.05)

    def _read_loop(self) -> None:
        control = self._socket  # stop() may clear the attribute while this thread reads
        assert control is not None
        decoder = NetstringDecoder()
        while True:
            try:
                data = control.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                items = decoder.feed(data)
            except ValueError as error:
                self.protocol_errors.append(str(error))
                return
            for item in items:
                self._dispatch(item)

    def _dispatch(self, item: bytes) -> None:
        try:
            message = json.loads(item)
        except json.JSONDecodeError as error:
            self.protocol_errors.append(f"not JSON: {error}: {item[:200]!r}")
            return
        if not isinstance(message, dict):
            self.protocol_errors.append(f"not a JSON object: {item[:200]!r}")
        elif message.get("event"):
            with self._events_changed:
                self._events.append(BaresipEvent.from_json(message))
                self._events_changed.notify_all()
        elif message.get("response"):
            self._responses.put(message)

    def command(self, name: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Run a ctrl_tcp command; returns its response text, raises when it is not ok."""
        if self._socket is None:
            raise BaresipError("baresip is not running")
        with self._send_lock:
            self._tokens += 1
            token = str(self._tokens)
            request: dict[str, str] = {"command": name, "token": token}
            if params is not None:
                request["params"] = params
            self._socket.sendall(encode_netstring(json.dumps(request).encode()))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BaresipError(f"no response to {name!r}\n{self.log_tail()}")
                try:
                    response = self._responses.get(timeout=remaining)
                except queue.Empty:
                    continue
                if str(response.get("token")) == token:
                    break
        if not response.get("ok", False):
            raise BaresipError(f"{name} {params or ''} failed: {response.get('data')!r}")
        return str(response.get("data", ""))

    def dial(self, uri: str) -> None:
        """Place a call to ``uri`` (e.g. the gateway: ``sip:+1415...@127.0.0.1:5060``)."""
        self.command("dial", uri)

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    @property
    def events(self) -> list[BaresipEvent]:
        with self._events_changed:
            return list(self._events)

    def wait_event(self, event_type: str, timeout: float = 10.0, after: int = 0) -> BaresipEvent:
        """The first event of ``event_type`` at index >= ``after``; AssertionError on timeout
        (with the events seen and the log), or when the call closes first."""
        deadline = time.monotonic() + timeout
        with self._events_changed:
            while True:
                for event in self._events[after:]:
                    if event.type == event_type:
                        return event
                    if event.type == "CALL_CLOSED" and event_type != "CALL_CLOSED":
                        raise AssertionError(
                            f"call closed ({event.param}) before {event_type}\n{self._report()}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {event_type} within {timeout}s\n{self._report()}")
                self._events_changed.wait(remaining)

    def wait_established(self, timeout: float = 10.0) -> BaresipEvent:
        return self.wait_event("CALL_ESTABLISHED", timeout)

    def wait_closed(self, timeout: float = 10.0) -> BaresipEvent:
        return self.wait_event("CALL_CLOSED", timeout)

    def _report(self) -> str:
        seen = ", ".join(f"{event.type}({event.param or ''})" for event in self._events)
        return f"events: {seen or 'none'}\n--- baresip log ---\n{self.log_tail()}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = 4000) -> str:
        text = self.log_text()
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def recordings(self, direction: str = "dec") -> list[Path]:
        """The sndfile dumps: ``dec`` is audio the phone received, ``enc`` what it sent."""
        return sorted(self.record_dir.glob(f"dump-*-{direction}.wav"))

    def received_audio(self) -> np.ndarray:
        """What the phone decoded from the network (16-bit PCM), all calls in order."""
        return _read_wavs(self.recordings("dec"))

    def sent_audio(self) -> np.ndarray:
        """What the phone encoded and sent (16-bit PCM), all calls in order."""
        return _read_wavs(self.recordings("enc"))

    def stop(self, timeout: float = 5.0) -> int | None:
        """Quit baresip (ctrl_tcp ``quit``, then SIGTERM and SIGKILL) and close the socket."""
        if self.process is None:
            return None
        if self.process.poll() is None and self._socket is not None:
            with contextlib.suppress(OSError, BaresipError):
                self._socket.sendall(
                    encode_netstring(json.dumps({"command": "quit", "token": "quit"}).encode())
                )
        for sig, wait_s in ((None, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if sig is not None and self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        if self._reader is not None:
            self._reader.join(timeout=2)
        return self.process.returncode


def _read_wavs(paths: list[Path]) -> np.ndarray:
    chunks: list[np.ndarray] = []
    for path in paths:
        with wave.open(str(path), "rb") as dump:
            if dump.getsampwidth() != 2:
                raise ValueError(f"{path}: {8 * dump.getsampwidth()}-bit samples, expected 16")
            frames = np.frombuffer(dump.readframes(dump.getnframes()), dtype="<i2")
            if dump.getnchannels() > 1:
                frames = frames[:: dump.getnchannels()]
            chunks.append(frames)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def start_baresip(
    workdir: Path,
    listen_ip: str,
    *,
    binary: str | None = None,
    audio_source: Path = DEFAULT_AUDIO,
    user: str = "+12125550100",
    auth_user: str | None = None,
    auth_password: str | None = None,
    outbound_proxy: str | None = None,
    rtp_ports: tuple[int, int] | None = None,
    answer_mode: str = "manual",
) -> Baresip:
    """Start a headless baresip on ``listen_ip`` with free SIP, control and RTP ports."""
    module_dir = find_module_dir()
    if module_dir is None:
        missing_tool("baresip modules missing")
    if rtp_ports is None:
        base = free_media_port(listen_ip, span=10)
        rtp_ports = (base, base + 9)
    config = BaresipConfig(
        listen_ip=listen_ip,
        sip_port=free_port(listen_ip, "both"),
        ctrl_port=free_port(listen_ip, "tcp"),
        module_dir=module_dir,
        audio_source=audio_source,
        user=user,
        rtp_port_min=rtp_ports[0],
        rtp_port_max=rtp_ports[1],
        auth_user=auth_user,
        auth_password=auth_password,
        outbound_proxy=outbound_proxy,
        answer_mode=answer_mode,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    return Baresip(binary or find_baresip(), workdir, config).start()
