"""One call's media at a demo phone: its SDP, its RTP sender and its RTP recorder.

Session description (RFC 3264 offer/answer, RFC 4566 syntax): the phone
offers G.711 (PCMU 0, PCMA 8: the static types of RFC 3551 6) plus
telephone-event/8000 on payload type 101 with ``a=fmtp:101 0-15`` (RFC 4733
2.4, 7.1.1), ``a=ptime:20`` and ``sendrecv``. An answer keeps the offer's
payload type numbers and order for what both support (RFC 3264 6.1) and
rejects every other media section with port 0 (RFC 3264 6).

Sending (RFC 3550 5.1, RFC 3551 4.5.14): one packet every 20 ms on an
absolute schedule counted from ``media_t0`` (slot ``n`` leaves at
``media_t0 + n * 0.02``, so timer lateness never accumulates), random
initial sequence number, timestamp and SSRC, timestamp +160 per slot, marker
on the first packet. What each slot carries comes from the script's
:class:`~gateway.demo.script.RenderedScript`. Packets go from the socket
the phone receives on (symmetric RTP, RFC 4961).

Receiving: every RTP packet is kept with its arrival time
(``time.monotonic()``); RFC 4733 digits are read by
:class:`~gateway.media.telephone_event.TelephoneEventReceiver`, each key
press once. :meth:`RtpEndpoint.received_audio` lays the decoded G.711
audio on a timeline by arrival time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from dsp import g711
from gateway.demo.script import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, RenderedScript
from gateway.media.rtp import RtpPacket, RtpParseError
from gateway.media.telephone_event import TelephoneEventReceiver
from gateway.sip.sdp import (
    HOLD_ADDRESSES,
    Connection,
    MediaDescription,
    SessionDescription,
    new_origin,
)

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_PAYLOAD_TYPE",
    "G711_NAMES",
    "RemoteMedia",
    "RtpEndpoint",
    "answer_sdp",
    "offer_sdp",
    "remote_media",
]

G711_NAMES: Final = {g711.PAYLOAD_TYPE_PCMU: "PCMU", g711.PAYLOAD_TYPE_PCMA: "PCMA"}
EVENT_PAYLOAD_TYPE: Final = 101
JITTER_SAMPLES: Final = 480
"""How far (60 ms at 8 kHz) a packet that follows in sequence may arrive from where the
previous one ended and still be played right after it (:meth:`RtpEndpoint.received_audio`)."""
_EVENT_ENCODING: Final = "telephone-event"
_RTP_HEADER: Final = struct.Struct("!BBHII")
_RTP_VERSION_BITS: Final = 0x80
_MARKER: Final = 0x80
_ANSWER_DIRECTION: Final = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
"""RFC 3264 6.1: the direction an answer gives to each offered direction."""


# ----------------------------------------------------------------- SDP


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """Where and how to send to the peer, read from its SDP (RFC 3264 5, 6.1).

    ``audio_pt``: the first G.711 payload type of the peer's list that this
    phone supports; ``event_pt``: its telephone-event/8000 type, None when it
    has none; ``may_send``: the peer's direction lets this phone send.
    """

    address: str
    port: int
    audio_pt: int
    event_pt: int | None
    may_send: bool


def _origin_user(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isalnum() or ch in "-_.")
    return cleaned or "-"


def _audio_section(
    port: int, audio_pts: list[int], event_pt: int | None, direction: str
) -> MediaDescription:
    formats = [str(pt) for pt in audio_pts]
    if event_pt is not None:
        formats.append(str(event_pt))
    media = MediaDescription("audio", port, None, "RTP/AVP", formats)
    for pt in audio_pts:
        media.add_attribute("rtpmap", f"{pt} {G711_NAMES[pt]}/{SAMPLE_RATE}")
    if event_pt is not None:
        media.add_attribute("rtpmap", f"{event_pt} {_EVENT_ENCODING}/{SAMPLE_RATE}")
        media.add_attribute("fmtp", f"{event_pt} 0-15")
    media.add_attribute("ptime", str(round(FRAME_S * 1000)))
    media.add_attribute(direction)
    return media


def _session(host: str, name: str, media: list[MediaDescription]) -> SessionDescription:
    return SessionDescription(
        origin=new_origin(host, _origin_user(name)),
        session_name=name or "-",
        connection=Connection(host, "IP6" if ":" in host else "IP4"),
        media=media,
    )


def _check_codecs(codecs: tuple[int, ...]) -> None:
    unknown = [pt for pt in codecs if pt not in G711_NAMES]
    if unknown or not codecs:
        raise ValueError(f"codecs must be G.711 payload types 0 and/or 8, got {codecs}")


def offer_sdp(host: str, port: int, codecs: tuple[int, ...], name: str) -> SessionDescription:
    """The phone's offer: ``codecs`` in order, telephone-event 101, ptime 20, sendrecv."""
    _check_codecs(codecs)
    audio = _audio_section(port, list(codecs), EVENT_PAYLOAD_TYPE, "sendrecv")
    return _session(host, name, [audio])


def _event_type(media: MediaDescription) -> int | None:
    for pt, (encoding, clock_rate, _) in media.rtpmap.items():
        if encoding.lower() == _EVENT_ENCODING and clock_rate == SAMPLE_RATE and pt.isdigit():
            return int(pt)
    return None


def _g711_types(media: MediaDescription, codecs: tuple[int, ...]) -> list[int]:
    return [int(pt) for pt in media.formats if pt.isdigit() and int(pt) in codecs]


def _audio_index(sdp: SessionDescription, codecs: tuple[int, ...]) -> int | None:
    """The first audio section that is not rejected and offers a G.711 type we support."""
    for index, media in enumerate(sdp.media):
        if media.kind == "audio" and not media.is_rejected and _g711_types(media, codecs):
            return index
    return None


def answer_sdp(
    offer: SessionDescription, host: str, port: int, codecs: tuple[int, ...], name: str
) -> SessionDescription | None:
    """The answer to ``offer`` (RFC 3264 6.1), or None when no G.711 type is common.

    One audio section is accepted with the offered G.711 types this phone
    supports, in the offer's order, and the offer's telephone-event type;
    every other section is rejected with port 0 (RFC 3264 6).
    """
    _check_codecs(codecs)
    chosen = _audio_index(offer, codecs)
    if chosen is None:
        return None
    sections: list[MediaDescription] = []
    for index, media in enumerate(offer.media):
        if index == chosen:
            direction = _ANSWER_DIRECTION[offer.direction_for(index)]
            types = _g711_types(media, codecs)
            sections.append(_audio_section(port, types, _event_type(media), direction))
        else:
            sections.append(MediaDescription(media.kind, 0, None, media.proto, media.formats[:1]))
    return _session(host, name, sections)


def remote_media(sdp: SessionDescription, codecs: tuple[int, ...]) -> RemoteMedia | None:
    """Where the peer wants this phone's audio, or None when its SDP accepts no G.711 we do."""
    index = _audio_index(sdp, codecs)
    if index is None:
        return None
    media = sdp.media[index]
    connection = sdp.connection_for(index)
    if connection is None:
        return None
    direction = sdp.direction_for(index)
    return RemoteMedia(
        address=connection.address,
        port=media.port,
        audio_pt=_g711_types(media, codecs)[0],
        event_pt=_event_type(media),
        may_send=direction in ("sendrecv", "recvonly") and connection.address not in HOLD_ADDRESSES,
    )


# ----------------------------------------------------------------- RTP


class _MediaSocket(asyncio.DatagramProtocol):
    """The endpoint's UDP socket: hands each datagram and its arrival time to the endpoint."""

    def __init__(self, endpoint: RtpEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._endpoint._on_datagram(data, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        log.debug("media socket error: %s", exc)


class RtpEndpoint:
    """One call's RTP socket: sends a script, records what arrives (see the module notes)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: RemoteMedia | None = None
        self.media_t0: float | None = None
        """``time.monotonic()`` when media started: the time slot 0 (the first packet) left."""
        self.packets_sent = 0
        self.received_packets: list[tuple[float, RtpPacket]] = []
        self.ssrcs: set[int] = set()
        self.received_digits: list[str] = []
        self.digit_arrivals: list[tuple[float, str]] = []
        self._events = TelephoneEventReceiver()
        self._event_pts = {EVENT_PAYLOAD_TYPE}
        self._plan: RenderedScript | None = None
        self._sent_log: list[tuple[float, str]] = []
        self._slot = 0
        self._timer: asyncio.TimerHandle | None = None
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp0 = random.getrandbits(32)

    # -- socket

    async def open(self) -> None:
        """Bind the media socket on ``host`` (port 0: any free port)."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _MediaSocket(self), local_addr=(self.host, self._requested_port), family=family
        )
        self._transport = transport
        self.port = transport.get_extra_info("socket").getsockname()[1]

    def close(self) -> None:
        """Stop sending and close the socket; what was received stays readable."""
        self.stop()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- negotiation

    def set_remote(self, remote: RemoteMedia) -> None:
        """Send to ``remote`` from now on (a later SDP may replace an earlier one)."""
        self.remote = remote
        if remote.event_pt is not None:
            self._event_pts.add(remote.event_pt)

    # -- sending

    @property
    def started(self) -> bool:
        return self.media_t0 is not None

    def start(self, plan: RenderedScript, sent_log: list[tuple[float, str]]) -> float:
        """Start sending ``plan`` now; returns ``media_t0``. Steps started go to ``sent_log``."""
        if self.media_t0 is not None:
            return self.media_t0
        self._plan = plan
        self._sent_log = sent_log
        self.media_t0 = time.monotonic()
        self._slot = 0
        self._send_due()
        return self.media_t0

    def stop(self) -> None:
        """Stop sending (the socket stays open until :meth:`close`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._plan = None

    def _send_due(self) -> None:
        self._timer = None
        if self._plan is None or self.media_t0 is None:
            return
        now = time.monotonic()
        due = self.media_t0 + self._slot * FRAME_S
        while due <= now:
            self._send_slot(self._slot, now)
            self._slot += 1
            due = self.media_t0 + self._slot * FRAME_S
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(due - time.monotonic(), self._send_due)

    def _send_slot(self, slot: int, now: float) -> None:
        plan = self._plan
        assert plan is not None
        for description in plan.marks.get(slot, ()):
            self._sent_log.append((now, description))
        remote = self.remote
        if remote is None or self._transport is None:
            return
        event = plan.events.get(slot)
        if event is not None:
            payload_type = remote.event_pt if remote.event_pt is not None else EVENT_PAYLOAD_TYPE
            timestamp = self._timestamp0 + event.start_slot * FRAME_SAMPLES
            payload = event.payload
            marker = event.marker
        else:
            payload_type = remote.audio_pt
            timestamp = self._timestamp0 + slot * FRAME_SAMPLES
            payload = plan.frame(slot, payload_type)
            marker = slot == 0
        header = _RTP_HEADER.pack(
            _RTP_VERSION_BITS,
            payload_type | (_MARKER if marker else 0),
            self._sequence,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        if remote.may_send and remote.port:
            self._transport.sendto(header + payload, (remote.address, remote.port))
            self.packets_sent += 1

    # -- receiving

    def _on_datagram(self, data: bytes, arrival: float) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        self.received_packets.append((arrival, packet))
        self.ssrcs.add(packet.ssrc)
        if packet.payload_type in self._event_pts:
            digit = self._events.feed(packet.ssrc, packet.timestamp, packet.marker, packet.payload)
            if digit is not None:
                self.received_digits.append(digit)
                self.digit_arrivals.append((arrival, digit))

    def received_audio(self) -> npt.NDArray[np.int16]:
        """The G.711 audio received, decoded, on a timeline by arrival time, as a
        jitter buffer would play it.

        A packet starts at sample round((arrival - media_t0) * 8000), unless it
        is the next of its stream (same SSRC, the next sequence number, RFC 3550
        5.1) and arrived within :data:`JITTER_SAMPLES` of where the previous one
        ended: then it follows that one without a gap, so packets that a busy
        host delivered in a bunch play as they were sent. Gaps are zeros; a
        later packet overwrites an earlier one where they overlap; what arrived
        before ``media_t0`` is cut off. Empty before media starts.
        """
        t0 = self.media_t0
        if t0 is None:
            return np.zeros(0, dtype=np.int16)
        placed: list[tuple[int, RtpPacket]] = []
        end = 0
        previous: tuple[int, int, int] | None = None  # SSRC, sequence number, end sample
        for arrival, packet in self.received_packets:
            if packet.payload_type not in G711_NAMES:
                continue
            start = round((arrival - t0) * SAMPLE_RATE)
            if (
                previous is not None
                and previous[:2] == (packet.ssrc, (packet.sequence_number - 1) & 0xFFFF)
                and abs(start - previous[2]) <= JITTER_SAMPLES
            ):
                start = previous[2]
            stop = start + len(packet.payload)
            previous = (packet.ssrc, packet.sequence_number, stop)
            if stop <= 0:
                continue
            placed.append((start, packet))
            end = max(end, stop)
        audio = np.zeros(end, dtype=np.int16)
        for start, packet in placed:
            samples = g711.decode(packet.payload, packet.payload_type)
            if start < 0:
                samples = samples[-start:]
                start = 0
            audio[start : start + len(samples)] = samples
        return audio
