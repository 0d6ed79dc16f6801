"""The announcement player: plays a notice into one party's incoming RTP stream.

While a notice plays, the player owns the stream toward one party: the
relay drops the other party's RTP toward it (:meth:`MediaSide.set_announcing
<gateway.media.session.MediaSide.set_announcing>`) and the player sends its
own from the same relay socket, so the party's NAT binding and symmetric RTP
(RFC 4961) hold. When the notice ends or is stopped, relaying resumes.

The player is an RTP source of its own (RFC 3550 5.1): version 2, a random
SSRC, a random initial sequence number and timestamp (RFC 3550 5.1 asks for
random starts), the sequence number +1 per packet sent, the timestamp +
samples per packet (8 per millisecond for G.711, RFC 3551 4.5.14), and the
marker bit on the first packet of a talkspurt (RFC 3551 4.1): the first
packet, and the first after a gap in which nothing was sent.

The audio is encoded once (:func:`dsp.g711.encode`, payload type 0 PCMU or
8 PCMA, RFC 3551 6) with the last packet filled up with silence; each packet
is a header written into one reused buffer plus a slice of that payload.
Packets go out on an absolute schedule (``start + n * ptime`` on the loop's
clock), so timer lateness does not add up. A loop more than three packets
late does not send the backlog in a burst: the schedule moves to now, the
timestamp jumps by the time skipped (the party hears a short gap), and the
notice goes on where it was, so no words are lost.

A periodic recording beep is a short :func:`dsp.tones.tone` played every
period; a whole :func:`dsp.tones.beep_train` would hold the stream through
its silences too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from dsp import g711
from gateway.media.forward import Address
from gateway.media.session import MediaSide

__all__ = ["MAX_LATE_PACKETS", "Playback", "play"]

log = logging.getLogger(__name__)

MAX_LATE_PACKETS: Final = 3
"""Packets a late loop may still send back to back before the schedule skips ahead."""

_SAMPLES_PER_MS: Final = g711.SAMPLE_RATE // 1000
_HEADER: Final = struct.Struct("!BBHII")
_VERSION_OCTET: Final = 2 << 6  # RTP version 2, no padding, no extension, no CSRCs
_MARKER: Final = 0x80


class Playback:
    """One announcement running on one side; made by :func:`play`.

    ``done`` resolves True when the last packet's time has come (every
    packet sent, or due while the party had no address), False when the
    playback was stopped, replaced by another on the same side, or its
    socket closed. ``packets_sent`` counts packets that left the socket,
    ``send_errors`` those the socket refused, ``skips`` the times a late
    loop moved the schedule ahead.
    """

    def __init__(
        self,
        side: MediaSide,
        payload: bytes,
        payload_type: int,
        samples_per_packet: int,
        loop: asyncio.AbstractEventLoop,
        ssrc: int,
    ) -> None:
        self.side = side
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.samples_per_packet = samples_per_packet
        self.ptime_s = samples_per_packet / g711.SAMPLE_RATE
        self.packets_total = len(payload) // samples_per_packet
        self.packets_sent = 0
        self.send_errors = 0
        self.skips = 0
        self.done: asyncio.Future[bool] = loop.create_future()
        self.started_at: float = loop.time()
        self.finished_at: float | None = None
        self._loop = loop
        self._payload = memoryview(payload)
        self._packet = bytearray(_HEADER.size + samples_per_packet)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._marker = True
        self._next = 0
        self._schedule_start = self.started_at
        self._handle: asyncio.TimerHandle | None = None
        self.done.add_done_callback(self._on_done)

    @property
    def position_s(self) -> float:
        """Seconds of the notice played so far."""
        return self._next * self.ptime_s

    @property
    def running(self) -> bool:
        return not self.done.done()

    def stop(self) -> None:
        """End the playback now: ``done`` becomes False and relaying resumes."""
        self._finish(False)

    def _start(self) -> None:
        self.side.playback = self
        self.side.set_announcing(True)
        self._tick()

    def _tick(self) -> None:
        self._handle = None
        if self.done.done():
            return
        side = self.side
        sock = side.rtp_sock
        if not side.open or sock.fileno() < 0:
            self._finish(False)
            return
        ptime = self.ptime_s
        late = self._loop.time() - (self._schedule_start + self._next * ptime)
        if late > MAX_LATE_PACKETS * ptime:
            skipped = int(late / ptime)
            self._schedule_start += skipped * ptime
            self._timestamp = (self._timestamp + skipped * self.samples_per_packet) & 0xFFFFFFFF
            self._marker = True
            self.skips += 1
        self._send(sock, side.announce_destination())
        self._next += 1
        self._timestamp = (self._timestamp + self.samples_per_packet) & 0xFFFFFFFF
        if self._next >= self.packets_total:
            self._finish(True)
            return
        when = self._schedule_start + self._next * ptime
        self._handle = self._loop.call_at(when, self._tick)

    def _send(self, sock: socket.socket, dest: Address | None) -> None:
        """Packet ``self._next`` toward ``dest``; a gap (marker next) when there is none."""
        if dest is None:
            self._marker = True
            return
        packet = self._packet
        second = self.payload_type | (_MARKER if self._marker else 0)
        _HEADER.pack_into(
            packet, 0, _VERSION_OCTET, second, self._sequence, self._timestamp, self.ssrc
        )
        size = self.samples_per_packet
        start = self._next * size
        packet[_HEADER.size :] = self._payload[start : start + size]
        try:
            sock.sendto(packet, dest)
        except OSError:
            self.send_errors += 1
            self._marker = True
            return
        self._marker = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.packets_sent += 1
        stats = self.side.stats
        stats.packets_out += 1
        stats.bytes_out += len(packet)

    def _finish(self, completed: bool) -> None:
        if not self.done.done():
            self._release()
            self.done.set_result(completed)

    def _on_done(self, done: asyncio.Future[bool]) -> None:
        """A ``done`` cancelled from outside ends the playback like :meth:`stop`."""
        self._release()

    def _release(self) -> None:
        """Cancel the timer and hand the stream back to the relay (once)."""
        if self.finished_at is not None:
            return
        self.finished_at = self._loop.time()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.side.playback is self:
            self.side.playback = None
            self.side.set_announcing(False)


def play(
    side: MediaSide,
    pcm: npt.NDArray[np.int16],
    payload_type: int,
    *,
    ptime_ms: int = 20,
    loop: asyncio.AbstractEventLoop | None = None,
    ssrc: int | None = None,
) -> Playback:
    """Start playing ``pcm`` (8 kHz mono int16) toward ``side``'s party as G.711.

    ``payload_type`` is 0 (PCMU) or 8 (PCMA); ``ptime_ms`` the audio per
    packet (RFC 3551 4.5.14 default 20). The first packet leaves before this
    returns. A playback already running on ``side`` is stopped first. Raises
    ValueError for other payload types, empty or non-int16 audio, a ptime
    outside 1-200 ms, or an SSRC that is not 32-bit; call it on the loop.
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError("a notice is a 1-D int16 array of 8 kHz samples")
    if len(pcm) == 0:
        raise ValueError("a notice needs at least one sample")
    if not isinstance(ptime_ms, int) or not 1 <= ptime_ms <= 200:
        raise ValueError(f"ptime must be 1-200 ms, got {ptime_ms}")
    if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
        raise ValueError(f"SSRC is 32-bit unsigned, got {ssrc}")
    samples_per_packet = ptime_ms * _SAMPLES_PER_MS
    padded = np.zeros(-(-len(pcm) // samples_per_packet) * samples_per_packet, dtype=np.int16)
    padded[: len(pcm)] = pcm
    payload = g711.encode(padded, payload_type)
    running_loop = loop if loop is not None else asyncio.get_running_loop()
    previous = side.playback
    if previous is not None:
        previous.stop()
    playback = Playback(
        side,
        payload,
        payload_type,
        samples_per_packet,
        running_loop,
        secrets.randbits(32) if ssrc is None else ssrc,
    )
    playback._start()
    return playback
