"""A small RTP endpoint for tests: receive, record, echo and send RTP on one UDP port.

Tests place an :class:`RtpSink` where a SIP peer's SDP says its media is (the sipp
harness binds one at every sipp peer's advertised media port). Because a sipp peer
sends its pcap from that same port, the port is symmetric (RFC 4961) and the sink
sees exactly what the gateway relays back to that peer. The sink can also answer
like a phone: echo what it receives, or send a pcap/packets of its own (DTMF
events, marker tones) to the address media comes from.

The audio helpers decode G.711 (ITU-T G.711) and measure how much of a signal's
energy sits at one frequency, so a test can prove that a marker tone arrived end
to end (or did not).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from tests.support.pcap import PcapError, read_udp_datagrams

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
PT_PCMU = 0
PT_PCMA = 8
PT_TELEPHONE_EVENT = 101
SAMPLE_RATE = 8000


class RtpParseError(ValueError):
    """A datagram that is not a well-formed RTP packet (RFC 3550 section 5.1)."""


class PcapParseError(ValueError):
    """A file that is not a classic libpcap capture of Ethernet/IPv4/UDP frames."""


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet (RFC 3550 section 5.1); header extensions are kept as raw bytes."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: bytes | None = None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse a datagram; padding (section 5.1, P bit) is removed from the payload."""
        if len(data) < RTP_HEADER_SIZE:
            raise RtpParseError(f"datagram of {len(data)} bytes is shorter than the RTP header")
        first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP version {version}, expected {RTP_VERSION}")
        padded = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        offset = RTP_HEADER_SIZE + 4 * csrc_count
        if len(data) < offset:
            raise RtpParseError(f"{csrc_count} CSRCs announced but the packet ends first")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE)
        extension = None
        if has_extension:
            if len(data) < offset + 4:
                raise RtpParseError("header extension announced but the packet ends first")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            end = offset + 4 + 4 * words
            if len(data) < end:
                raise RtpParseError(f"header extension of {words} words runs past the packet")
            extension = data[offset:end]
            offset = end
        end_of_payload = len(data)
        if padded:
            padding = data[-1]
            if padding == 0 or offset + padding > len(data):
                raise RtpParseError(f"padding count {padding} does not fit the packet")
            end_of_payload -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[offset:end_of_payload],
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
        )

    def __bytes__(self) -> bytes:
        first = (RTP_VERSION << 6) | (0x10 if self.extension else 0) | len(self.csrcs)
        second = (0x80 if self.marker else 0) | self.payload_type
        header = struct.pack(
            "!BBHII", first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc
        )
        csrcs = struct.pack(f"!{len(self.csrcs)}I", *self.csrcs)
        return header + csrcs + (self.extension or b"") + self.payload


@dataclass(frozen=True)
class TelephoneEvent:
    """An RFC 4733 section 2.3 named event payload."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpParseError(f"telephone-event payload of {len(payload)} bytes, expected 4")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    @property
    def digit(self) -> str:
        """The DTMF digit for events 0-15 (RFC 4733 section 3.2, table 7)."""
        return "0123456789*#ABCD"[self.event] if self.event < 16 else f"event-{self.event}"


@dataclass(frozen=True)
class ReceivedRtp:
    """A packet as the sink saw it: where it came from, and when (``arrival`` on the
    monotonic clock, ``wallclock`` as epoch seconds to order it against sipp's logs)."""

    packet: RtpPacket
    source: tuple[str, int]
    arrival: float
    wallclock: float


_MULAW_TABLE: np.ndarray | None = None
_ALAW_TABLE: np.ndarray | None = None


def _mulaw_table() -> np.ndarray:
    """Decoded value of every mu-law byte (ITU-T G.711 table 2)."""
    global _MULAW_TABLE
    if _MULAW_TABLE is None:
        codes = ~np.arange(256, dtype=np.int32) & 0xFF
        exponent = (codes >> 4) & 0x07
        mantissa = codes & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        _MULAW_TABLE = np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)
    return _MULAW_TABLE


def _alaw_table() -> np.ndarray:
    """Decoded value of every A-law byte (ITU-T G.711 table 1; even bits inverted)."""
    global _ALAW_TABLE
    if _ALAW_TABLE is None:
        codes = np.arange(256, dtype=np.int32) ^ 0x55
        exponent = (codes >> 4) & 0x07
        mantissa = codes & 0x0F
        magnitude = np.where(
            exponent == 0,
            (mantissa << 4) + 8,
            ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
        )
        _ALAW_TABLE = np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)
    return _ALAW_TABLE


def mulaw_decode(payload: bytes) -> np.ndarray:
    """G.711 mu-law bytes to 16-bit linear PCM."""
    return _mulaw_table()[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> np.ndarray:
    """G.711 A-law bytes to 16-bit linear PCM."""
    return _alaw_table()[np.frombuffer(payload, dtype=np.uint8)]


def tone_ratio(samples: np.ndarray, frequency_hz: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Share of the signal's energy at ``frequency_hz`` (0.0 to about 1.0).

    The single-bin DFT (as the Goertzel algorithm computes it) of a pure sine of
    amplitude A over N samples has magnitude A*N/2 while its energy is A*A*N/2, so
    |X|^2 / (energy * N / 2) is close to 1 for a pure tone at that frequency, close to
    0 for silence-free audio elsewhere, and 0 for silence.
    """
    signal = np.asarray(samples, dtype=np.float64)
    if signal.size == 0:
        return 0.0
    energy = float(np.dot(signal, signal))
    if energy == 0.0:
        return 0.0
    phase = 2.0 * np.pi * frequency_hz * np.arange(signal.size) / sample_rate
    component = complex(np.dot(signal, np.cos(phase)), -np.dot(signal, np.sin(phase)))
    return float(abs(component) ** 2 / (energy * signal.size / 2.0))


def read_pcap_rtp(path: Path | str) -> list[tuple[float, bytes]]:
    """The UDP payloads of a classic pcap file with their time offsets from the first one.

    The framing sipp's ``play_pcap_audio`` accepts (Ethernet, Linux cooked) and more:
    see :func:`tests.support.pcap.read_udp_datagrams`.
    """
    try:
        datagrams = read_udp_datagrams(path)
    except PcapError as error:
        raise PcapParseError(str(error)) from None
    if not datagrams:
        return []
    first = datagrams[0].time_s
    return [(datagram.time_s - first, datagram.payload) for datagram in datagrams]


@dataclass
class _SendJob:
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)


class RtpSink:
    """A UDP port that records every RTP packet it receives, optionally echoing it.

    Everything runs on one background thread; the recorded packets are read through
    snapshot methods, so a test can poll while media flows. Datagrams that are not
    RTP are counted in :attr:`malformed` (with the last reason) and otherwise ignored.
    """

    def __init__(
        self, host: str, port: int = 0, *, echo: bool = False, keep_packets: bool = True
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._socket.bind((host, port))
        self._socket.setblocking(False)
        self.echo = echo
        self.keep_packets = keep_packets
        self._lock = threading.Lock()
        self._packets: list[ReceivedRtp] = []
        self._count = 0
        self._bytes = 0
        self._sources: dict[tuple[str, int], int] = {}
        self._last_source: tuple[str, int] | None = None
        self.malformed = 0
        self.last_malformed_reason: str | None = None
        self._stop = threading.Event()
        self._senders: list[_SendJob] = []
        self._thread = threading.Thread(target=self._receive_loop, name=f"rtp-sink-{port}")
        self._thread.daemon = True
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    def __enter__(self) -> RtpSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving and sending and release the port."""
        self._stop.set()
        for job in self._senders:
            job.done.set()
            job.thread.join(timeout=2)
        self._thread.join(timeout=2)
        self._socket.close()

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._socket], [], [], 0.05)
            if not readable:
                continue
            while True:
                try:
                    data, source = self._socket.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    return
                self._record(data, (source[0], source[1]))

    def _record(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError as error:
            with self._lock:
                self.malformed += 1
                self.last_malformed_reason = str(error)
            return
        with self._lock:
            self._count += 1
            self._bytes += len(data)
            self._sources[source] = self._sources.get(source, 0) + 1
            self._last_source = source
            if self.keep_packets:
                self._packets.append(ReceivedRtp(packet, source, time.monotonic(), time.time()))
        if self.echo:
            with contextlib.suppress(OSError):
                self._socket.sendto(data, source)

    @property
    def packet_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def byte_count(self) -> int:
        with self._lock:
            return self._bytes

    @property
    def sources(self) -> dict[tuple[str, int], int]:
        """Packets received per source address."""
        with self._lock:
            return dict(self._sources)

    @property
    def last_source(self) -> tuple[str, int] | None:
        with self._lock:
            return self._last_source

    def packets(self, payload_type: int | None = None) -> list[ReceivedRtp]:
        """The recorded packets, in arrival order, optionally of one payload type."""
        with self._lock:
            recorded = list(self._packets)
        if payload_type is None:
            return recorded
        return [item for item in recorded if item.packet.payload_type == payload_type]

    def count(self, payload_type: int | None = None) -> int:
        if payload_type is None:
            return self.packet_count
        return len(self.packets(payload_type))

    def ssrcs(self) -> set[int]:
        return {item.packet.ssrc for item in self.packets()}

    def wait_for_packets(
        self, minimum: int, timeout: float = 5.0, payload_type: int | None = None
    ) -> int:
        """Wait until at least ``minimum`` packets arrived; AssertionError says what did."""
        deadline = time.monotonic() + timeout
        while True:
            have = self.count(payload_type)
            if have >= minimum:
                return have
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"RTP sink {self.address}: {have} packets"
                    f"{'' if payload_type is None else f' of PT {payload_type}'} after "
                    f"{timeout:.1f}s, wanted {minimum}; sources {self.sources}; "
                    f"malformed {self.malformed} ({self.last_malformed_reason})"
                )
            time.sleep(0.02)

    def audio(self, payload_type: int = PT_PCMU, ssrc: int | None = None) -> np.ndarray:
        """Decoded G.711 audio of the recorded packets, per SSRC in sequence order.

        Streams of several SSRCs (e.g. a notice player taking over, RFC 3550 section
        8.2) are concatenated in order of their first arrival.
        """
        decode = {PT_PCMU: mulaw_decode, PT_PCMA: alaw_decode}.get(payload_type)
        if decode is None:
            raise ValueError(f"payload type {payload_type} is not G.711 (0 or 8)")
        streams: dict[int, list[RtpPacket]] = {}
        for item in self.packets(payload_type):
            if ssrc is None or item.packet.ssrc == ssrc:
                streams.setdefault(item.packet.ssrc, []).append(item.packet)
        chunks: list[np.ndarray] = []
        for packets in streams.values():
            first = packets[0].sequence
            ordered = sorted(packets, key=lambda packet: _unwrapped_order(first, packet.sequence))
            chunks.extend(decode(packet.payload) for packet in ordered)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def tone_ratio(self, frequency_hz: float, payload_type: int = PT_PCMU) -> float:
        """Share of the received audio's energy at ``frequency_hz`` (see :func:`tone_ratio`)."""
        return tone_ratio(self.audio(payload_type), frequency_hz)

    def telephone_events(self, payload_type: int = PT_TELEPHONE_EVENT) -> list[TelephoneEvent]:
        """Distinct RFC 4733 events received, end packets included once per event."""
        seen: dict[tuple[int, int, int], TelephoneEvent] = {}
        for item in self.packets(payload_type):
            event = TelephoneEvent.parse(item.packet.payload)
            key = (item.packet.ssrc, item.packet.timestamp, event.event)
            previous = seen.get(key)
            if previous is None or (event.end and not previous.end):
                seen[key] = event
        return list(seen.values())

    def digits(self, payload_type: int = PT_TELEPHONE_EVENT) -> str:
        """The DTMF digits received as RFC 4733 events, in order."""
        return "".join(event.digit for event in self.telephone_events(payload_type))

    def send(self, datagram: bytes, to: tuple[str, int] | None = None) -> None:
        """Send one datagram from this port (to the last media source by default)."""
        self._socket.sendto(datagram, self._target(to))

    def play(
        self,
        packets: Sequence[tuple[float, bytes]],
        to: tuple[str, int] | None = None,
        *,
        wait: bool = False,
    ) -> threading.Event:
        """Send (offset seconds, datagram) pairs from this port, paced by their offsets.

        Returns an event set when the last packet left; ``wait=True`` blocks until then.
        """
        target = self._target(to)
        job = _SendJob(thread=threading.Thread(target=lambda: None))
        finished = threading.Event()

        def run() -> None:
            start = time.monotonic()
            for offset, datagram in packets:
                delay = start + offset - time.monotonic()
                if delay > 0 and job.done.wait(delay):
                    break
                if self._stop.is_set():
                    break
                with contextlib.suppress(OSError):
                    self._socket.sendto(datagram, target)
            finished.set()

        job.thread = threading.Thread(target=run, name=f"rtp-send-{self.port}", daemon=True)
        self._senders.append(job)
        job.thread.start()
        if wait:
            finished.wait()
        return finished

    def play_pcap(
        self, path: Path | str, to: tuple[str, int] | None = None, *, wait: bool = False
    ) -> threading.Event:
        """Replay a pcap's UDP payloads (e.g. the DTMF event files) from this port."""
        return self.play(read_pcap_rtp(path), to, wait=wait)

    def _target(self, to: tuple[str, int] | None) -> tuple[str, int]:
        if to is not None:
            return to
        source = self.last_source
        if source is None:
            raise RuntimeError(
                f"RTP sink {self.address} has received nothing yet: give the address to send to"
            )
        return source


def _unwrapped_order(first: int, sequence: int) -> int:
    """Signed distance of a sequence number from the first one received, across the
    16-bit wrap (RFC 3550 appendix A.1), so late and reordered packets sort in place."""
    return ((sequence - first + 0x8000) & 0xFFFF) - 0x8000


def tone_packets(
    frequency_hz: float,
    seconds: float,
    *,
    ssrc: int = 0x5EED0001,
    amplitude: float = 0.3,
    first_sequence: int = 1,
    first_timestamp: int = 0,
) -> list[tuple[float, bytes]]:
    """A PCMU tone as 20 ms RTP packets with send offsets, ready for :meth:`RtpSink.play`."""
    count = round(seconds * SAMPLE_RATE)
    phase = 2.0 * np.pi * frequency_hz * np.arange(count) / SAMPLE_RATE
    linear = np.round(np.sin(phase) * amplitude * 32767).astype(np.int16)
    encoded = mulaw_encode(linear)
    packets: list[tuple[float, bytes]] = []
    for index in range(count // 160):
        packet = RtpPacket(
            payload_type=PT_PCMU,
            sequence=(first_sequence + index) & 0xFFFF,
            timestamp=(first_timestamp + index * 160) & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=encoded[index * 160 : (index + 1) * 160].tobytes(),
            marker=index == 0,
        )
        packets.append((index * 0.02, bytes(packet)))
    return packets


def mulaw_encode(samples: Iterable[int] | np.ndarray) -> np.ndarray:
    """16-bit linear PCM to G.711 mu-law, as the reference coder does (ITU-T G.711)."""
    linear = np.asarray(samples, dtype=np.int32) >> 2
    mask = np.where(linear < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(linear) + 0x21, 0x1FFF)
    segment = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0, 7)
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    return (((segment << 4) | mantissa) ^ mask).astype(np.uint8)
