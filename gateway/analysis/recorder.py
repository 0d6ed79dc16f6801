"""The per-call recording file: time-aligned stereo WAV, written behind a latency window.

:class:`StereoRecorder` is a capture sink: it writes what it is given and
decides nothing. It does no consent logic; the capture gate in front of it
(:mod:`gateway.media.capture`) decides what reaches it, and audio that was
never admitted never arrives here.

File format: a RIFF file of form type ``WAVE`` with a ``fmt `` chunk of
format tag 1 (WAVE_FORMAT_PCM) and a ``data`` chunk (Microsoft/IBM,
"Multimedia Programming Interface and Data Specifications 1.0", 1991,
section 3, WAVE form; the canonical 44-octet header). Samples are 16-bit
signed little-endian, 8,000 Hz, interleaved frame by frame, channel 0
(caller) first, i.e. left, then channel 1 (callee), right. The RIFF and
data chunk sizes are 32-bit, so a file holds at most 4 GiB of audio; at
8 kHz stereo 16-bit that is 32,000 octets a second, 115 MB an hour, about
37 hours, far beyond any call, so no RF64 is written.

Timeline: every write names the absolute sample position (from the
recording's start) where its samples belong, so the two channels stay
aligned and time with no audio on a channel (a pause, lost packets, a party
that says nothing) is silence of its true length. Writes may come out of
order; nothing is written to the file until it is older than ``latency_s``
(:meth:`StereoRecorder.flush_due`, which writes once at least
:data:`FLUSH_MIN_S` is due: few, larger file writes), and a write whose place is already in
the file is dropped and counted in ``late_samples``. When two writes cover
the same positions of a channel, the later write wins (the most recent
audio placed there is kept, as on a tape).

The file is created at the first write that places audio, as
``<final_path>.part`` next to the final path, and renamed into place
(:func:`os.replace`, atomic within a directory) only after its header is
complete and its data is on disk (fsync); a call that never captured audio
leaves no file, and a reader never sees a partial recording under the final
name. :meth:`StereoRecorder.abort` removes the partial file of a recording
that must not be kept.

Pending audio is one NumPy block of interleaved frames (rows are positions,
columns channels), so a write is one strided slice assignment, a flush is
one file write of a contiguous slice, and the block is compacted or grown
only when the window reaches its end (amortised, no growing concatenation).

A recorder is used by one owner (the event loop's media path) and is not
thread-safe. :meth:`StereoRecorder.close` fsyncs and hashes the whole file,
which can take a fraction of a second for a long call; its owner may run it
in a worker thread once nothing writes to the recorder any more.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_LATENCY_S",
    "PART_SUFFIX",
    "WAV_HEADER_BYTES",
    "RecordingInfo",
    "StereoRecorder",
    "wav_header",
]

DEFAULT_LATENCY_S: Final = 0.5
"""How long audio stays open to out-of-order writes before it is written to the file."""

FLUSH_MIN_S: Final = 0.25
"""The least audio :meth:`StereoRecorder.flush_due` writes at once (half the latency window
when that is shorter): a file write for every tick of every call would cost the event loop
more than the audio it moves."""

PART_SUFFIX: Final = ".part"
"""Suffix of the file a recording is written to until it is complete."""

WAV_HEADER_BYTES: Final = 44
"""The canonical RIFF/WAVE header: RIFF chunk header, 16-octet ``fmt `` chunk, data header."""

SAMPLE_BYTES: Final = 2
"""16-bit PCM."""

_WAVE_FORMAT_PCM: Final = 1
_RIFF_SIZE_OFFSET: Final = 4
_DATA_SIZE_OFFSET: Final = 40
_MAX_CHUNK_SIZE: Final = 0xFFFFFFFF
_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_CHUNK_SIZE: Final = struct.Struct("<I")
_MIN_CAPACITY: Final = 4096
_ZERO_BYTES: Final = bytes(1 << 16)
_FRAME_DTYPE: Final = np.dtype("<i2")


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The 44-octet RIFF/WAVE header of 16-bit PCM with ``data_bytes`` of samples."""
    block_align = channels * SAMPLE_BYTES
    return _HEADER.pack(
        b"RIFF",
        min(WAV_HEADER_BYTES - 8 + data_bytes, _MAX_CHUNK_SIZE),
        b"WAVE",
        b"fmt ",
        16,
        _WAVE_FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        8 * SAMPLE_BYTES,
        b"data",
        min(data_bytes, _MAX_CHUNK_SIZE),
    )


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """A completed recording: where it is, what it holds, and its SHA-256."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    bytes: int
    sha256: str
    late_samples: int


class StereoRecorder:
    """One call's recording: channels of 16-bit PCM placed by absolute sample position.

    ``late_samples`` counts samples dropped because their place was already
    written to the file.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_end",
        "_file",
        "_flush_min",
        "_info",
        "_origin",
        "_started",
        "_written",
        "block_align",
        "channels",
        "final_path",
        "late_samples",
        "latency_s",
        "part_path",
        "sample_rate",
    )

    def __init__(
        self,
        final_path: Path,
        *,
        sample_rate: int = 8000,
        channels: int = 2,
        latency_s: float = DEFAULT_LATENCY_S,
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(f"bad format: {sample_rate} Hz, {channels} channels")
        if latency_s < 0:
            raise ValueError(f"latency must not be negative, got {latency_s}")
        self.final_path = Path(final_path)
        self.part_path = self.final_path.with_name(self.final_path.name + PART_SUFFIX)
        self.sample_rate = sample_rate
        self.channels = channels
        self.latency_s = latency_s
        self._flush_min = round(min(FLUSH_MIN_S, latency_s / 2) * sample_rate)
        self.block_align = channels * SAMPLE_BYTES
        self.late_samples = 0
        self._file: BinaryIO | None = None
        self._buffer: npt.NDArray[np.int16] | None = None
        self._origin = 0
        """Position of the buffer's first row; positions from ``_written`` up to it are silence."""
        self._end = 0
        """One past the furthest position any write placed audio at."""
        self._written = 0
        """Frames in the file: every position before it is final."""
        self._started = False
        self._closed = False
        self._info: RecordingInfo | None = None

    @property
    def started(self) -> bool:
        """Whether the recording's file exists (audio was written, and it was not aborted)."""
        return self._started

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` ended the recording."""
        return self._closed

    @property
    def written_frames(self) -> int:
        """Frames written to the file so far (every position before this is final)."""
        return self._written

    def write(self, channel: int, start: int, pcm: npt.NDArray[np.int16]) -> None:
        """Place int16 samples ``pcm`` of ``channel`` at absolute sample position ``start``.

        Channel 0 is the caller (left), 1 the callee (right). Samples whose
        place is already in the file are dropped and counted in
        ``late_samples``. Raises ValueError after :meth:`close` or
        :meth:`abort`, and for a bad channel or samples that are not a 1-D
        int16 array.
        """
        if self._closed:
            raise ValueError("write to a closed recorder")
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"samples must be a 1-D int16 array, got {pcm.dtype} {pcm.shape}")
        if not 0 <= channel < self.channels:
            raise ValueError(f"channel {channel} is not in 0..{self.channels - 1}")
        count = pcm.shape[0]
        written = self._written
        if start < written:
            late = min(count, written - start)
            self.late_samples += late
            pcm = pcm[late:]
            count -= late
            start = written
        if count == 0:
            return
        end = start + count
        buffer = self._buffer
        if buffer is None:
            buffer = self._open()
        row = start - self._origin
        if row < 0 or end - self._origin > buffer.shape[0]:
            buffer = self._make_room(start, end)
            row = start - self._origin
        buffer[row : row + count, channel] = pcm
        if end > self._end:
            self._end = end

    def flush(self, upto: int) -> None:
        """Write every frame before position ``upto`` not written yet; no audio is silence.

        Does nothing before the first write (the recording has not started)
        or after the recording ended.
        """
        file = self._file
        written = self._written
        if file is None or upto <= written:
            return
        buffer = self._buffer
        assert buffer is not None
        origin = self._origin
        silence_end = min(upto, origin)
        if silence_end > written:
            self._write_silence(file, silence_end - written)
            written = silence_end
        if upto > written:
            first = written - origin
            last = min(upto - origin, buffer.shape[0])
            if last > first:
                rows = buffer[first:last]
                file.write(rows.data)
                holding_audio = min(last, self._end - origin)
                if holding_audio > first:
                    buffer[first:holding_audio] = 0
                written = origin + last
            if upto > written:
                self._write_silence(file, upto - written)
        self._written = upto
        if upto >= self._end:
            self._origin = upto  # nothing pending: the whole buffer is zero again

    def flush_due(self, now_s: float) -> None:
        """Flush everything older than the latency window once at least :data:`FLUSH_MIN_S`
        of it is due; ``now_s`` is since the start."""
        upto = round((now_s - self.latency_s) * self.sample_rate)
        if upto - self._written >= self._flush_min:
            self.flush(upto)

    def close(self) -> RecordingInfo | None:
        """Finish the file and rename it into place; None when nothing was ever written.

        Writes everything pending (up to the furthest sample placed on any
        channel), completes the header's sizes, fsyncs, and renames
        ``<final_path>.part`` to ``final_path`` (os.replace). Closing again
        returns the same answer.
        """
        if self._closed:
            return self._info
        file = self._file
        if file is None:
            self._closed = True
            return None
        try:
            self.flush(self._end)
            data_bytes = self._written * self.block_align
            file.seek(_RIFF_SIZE_OFFSET)
            file.write(_CHUNK_SIZE.pack(min(WAV_HEADER_BYTES - 8 + data_bytes, _MAX_CHUNK_SIZE)))
            file.seek(_DATA_SIZE_OFFSET)
            file.write(_CHUNK_SIZE.pack(min(data_bytes, _MAX_CHUNK_SIZE)))
            file.flush()
            os.fsync(file.fileno())
        finally:
            self._closed = True
            self._file = None
            self._buffer = None
            file.close()
        with self.part_path.open("rb") as done:
            digest = hashlib.file_digest(done, "sha256").hexdigest()
        os.replace(self.part_path, self.final_path)
        _fsync_directory(self.final_path.parent)
        self._info = RecordingInfo(
            path=self.final_path,
            sample_rate=self.sample_rate,
            channels=self.channels,
            frames=self._written,
            duration_s=self._written / self.sample_rate,
            bytes=WAV_HEADER_BYTES + data_bytes,
            sha256=digest,
            late_samples=self.late_samples,
        )
        return self._info

    def abort(self) -> None:
        """End the recording without keeping it: the partial file is removed.

        A recording already closed (renamed into place) is left alone: its
        file belongs to whoever took its :class:`RecordingInfo`.
        """
        self._closed = True
        self._buffer = None
        file = self._file
        self._file = None
        if file is not None:
            file.close()
        if self._started and self._info is None:
            self.part_path.unlink(missing_ok=True)
            self._started = False

    def _open(self) -> npt.NDArray[np.int16]:
        """Create ``<final_path>.part`` with a placeholder header, and the pending buffer."""
        self.part_path.parent.mkdir(parents=True, exist_ok=True)
        file = self.part_path.open("wb")
        try:
            file.write(wav_header(self.sample_rate, self.channels, 0))
        except BaseException:
            file.close()
            self.part_path.unlink(missing_ok=True)
            raise
        self._file = file
        self._started = True
        # what is pending is at most the window and one flush; twice that leaves room to
        # slide a while before the pending audio is moved back to the start
        window = round(self.latency_s * self.sample_rate) + self._flush_min
        capacity = max(2 * window, _MIN_CAPACITY)
        self._buffer = np.zeros((capacity, self.channels), dtype=_FRAME_DTYPE)
        self._origin = self._written
        return self._buffer

    def _make_room(self, start: int, end: int) -> npt.NDArray[np.int16]:
        """Move or grow the buffer so rows cover positions ``[start, end)`` and what is pending.

        Pending audio is at positions ``[max(_written, _origin), _end)``;
        every other row is zero, before and after.
        """
        buffer = self._buffer
        assert buffer is not None
        origin = self._origin
        pending_from = max(self._written, origin)
        has_pending = self._end > pending_from
        new_origin = min(start, pending_from) if has_pending else start
        span = max(end, self._end) - new_origin
        capacity = buffer.shape[0]
        if span > capacity:
            fresh = np.zeros(
                (_power_of_two_at_least(max(span, 2 * capacity)), self.channels),
                dtype=_FRAME_DTYPE,
            )
            if has_pending:
                fresh[pending_from - new_origin : self._end - new_origin] = buffer[
                    pending_from - origin : self._end - origin
                ]
            self._buffer = buffer = fresh
        elif has_pending and new_origin != origin:
            source = slice(pending_from - origin, self._end - origin)
            pending = buffer[source].copy()
            buffer[source] = 0
            buffer[pending_from - new_origin : self._end - new_origin] = pending
        self._origin = new_origin
        return buffer

    def _write_silence(self, file: BinaryIO, frames: int) -> None:
        remaining = frames * self.block_align
        zeros = memoryview(_ZERO_BYTES)
        while remaining > 0:
            chunk = min(remaining, len(_ZERO_BYTES))
            file.write(zeros[:chunk])
            remaining -= chunk


def _power_of_two_at_least(value: int) -> int:
    return 1 << max(value - 1, 0).bit_length()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: the directory entry is fsynced)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
