"""Voice activity: 16-bit audio cut into frames, a speech decision per frame, speech segments.

The per-frame decision is the WebRTC voice activity detector (the
``webrtcvad`` module of the ``webrtcvad-wheels`` distribution, a binding of
WebRTC's ``common_audio/vad``: a Gaussian mixture model of speech and noise
over six sub-band log energies, with an adaptive noise model). Its C
interface (``WebRtcVad_Process``) takes one frame of 10, 20 or 30 ms of
16-bit mono PCM at 8, 16, 32 or 48 kHz and answers speech or not; it is
given 30 ms frames by default, the longest, which is both the most reliable
and the fewest calls. Its aggressiveness (0-3) trades missed speech for
fewer false alarms: 0 flags the most frames as speech, 3 the fewest.

The model tells speech from noise by level and spectral shape, and adapts
to steady noise only within limits: white noise at -30 dBFS RMS is called
speech at aggressiveness 2 (at -36 dBFS and below it is not), so a line far
noisier than a telephone line's usual -60 to -50 dBFS reads as talk.

Framing is one reshape of the audio into rows of a frame each (the trailing
part frame, shorter than a frame, is not examined), and the detector reads
the rows straight from the array's buffer, so no frame is copied.

Per-frame decisions flicker: inside a word a frame of low energy is called
silence, a click is called speech. :func:`smooth` turns them into speech
segments with two rules, in this order:

1. hangover: a pause of at most ``hangover_ms`` between two runs of speech
   frames is bridged (speech is held through the short silences between
   words and syllables, as the hangover of a speech codec's VAD holds a
   talkspurt open: ITU-T G.729 Annex B, 3GPP TS 26.094 for AMR);
   a segment still ends where its last speech frame ends, so the hold does
   not lengthen talk time unless speech resumes within it;
2. minimum segment length: a segment shorter than ``min_speech_ms`` after
   bridging is dropped (a cough, a click, a burst of noise).

Times are seconds from the start of the audio; a segment is ``[start, end)``
on the frame grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import webrtcvad

__all__ = [
    "FRAME_MS",
    "SAMPLE_RATES",
    "Segment",
    "VadConfig",
    "VadError",
    "frame_decisions",
    "frames",
    "segments_from_decisions",
    "smooth",
    "speech_segments",
]

FRAME_MS: Final = (10, 20, 30)
"""Frame lengths the WebRTC detector takes (WebRtcVad_ValidRateAndFrameLength)."""

SAMPLE_RATES: Final = (8000, 16000, 32000, 48000)
"""Sample rates the WebRTC detector takes."""


class VadError(ValueError):
    """Audio or settings the voice activity detector cannot work with (the message says why)."""


@dataclass(frozen=True, slots=True)
class VadConfig:
    """How speech is decided per frame and smoothed into segments (see the module docstring)."""

    frame_ms: int = 30
    aggressiveness: int = 2
    """WebRTC mode 0-3; 2 ("aggressive") keeps line noise out and misses little speech."""
    hangover_ms: int = 300
    """Longest pause inside a segment; roughly the pause between words of fluent speech."""
    min_speech_ms: int = 120
    """Shortest segment kept; shorter than any spoken syllable with its vowel."""

    def __post_init__(self) -> None:
        if self.frame_ms not in FRAME_MS:
            raise VadError(f"frame_ms must be one of {FRAME_MS}, got {self.frame_ms}")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise VadError(f"aggressiveness must be 0-3, got {self.aggressiveness}")
        if self.hangover_ms < 0 or self.min_speech_ms < 0:
            raise VadError("hangover_ms and min_speech_ms must not be negative")


@dataclass(frozen=True, slots=True, order=True)
class Segment:
    """Speech from ``start_s`` to ``end_s`` (seconds from the start of the audio)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _frame_samples(sample_rate: int, frame_ms: int) -> int:
    if sample_rate not in SAMPLE_RATES:
        raise VadError(f"sample rate must be one of {SAMPLE_RATES} Hz, got {sample_rate}")
    if frame_ms not in FRAME_MS:
        raise VadError(f"frame_ms must be one of {FRAME_MS}, got {frame_ms}")
    return sample_rate * frame_ms // 1000


def frames(
    pcm: npt.NDArray[np.int16], sample_rate: int = 8000, frame_ms: int = 30
) -> npt.NDArray[np.int16]:
    """``pcm`` (1-D int16) as rows of one frame each, shape ``(count, samples per frame)``.

    The rows are a C-contiguous view of the audio when it is contiguous (a
    copy otherwise); the trailing part frame is left out.
    """
    size = _frame_samples(sample_rate, frame_ms)
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise VadError("voice activity takes a 1-D int16 array")
    count = len(pcm) // size
    return np.ascontiguousarray(pcm[: count * size]).reshape(count, size)


def frame_decisions(
    pcm: npt.NDArray[np.int16], sample_rate: int = 8000, config: VadConfig | None = None
) -> npt.NDArray[np.bool_]:
    """Whether each whole frame of ``pcm`` is speech, by a fresh WebRTC detector.

    One detector runs over the whole signal in order, so its noise model
    adapts as it would on a live stream.
    """
    config = config or VadConfig()
    rows = frames(pcm, sample_rate, config.frame_ms)
    detector = webrtcvad.Vad(config.aggressiveness)
    is_speech = detector.is_speech
    buffer = memoryview(rows).cast("B")
    step = rows.shape[1] * 2
    decided = [
        is_speech(buffer[offset : offset + step], sample_rate)
        for offset in range(0, len(buffer), step)
    ]
    return np.array(decided, dtype=np.bool_)


def smooth(
    decisions: npt.NDArray[np.bool_], config: VadConfig | None = None
) -> npt.NDArray[np.int64]:
    """Speech segments of per-frame ``decisions`` as ``[start, end)`` frame indices, shape (n, 2).

    Applies the hangover and minimum segment length of ``config`` (module
    docstring), in whole frames: a pause is bridged when it lasts at most
    ``hangover_ms``, a segment is kept when it lasts at least
    ``min_speech_ms``.
    """
    config = config or VadConfig()
    voiced = np.asarray(decisions, dtype=np.bool_)
    if voiced.ndim != 1:
        raise VadError("decisions must be 1-D")
    edges = np.diff(voiced.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    hangover = config.hangover_ms // config.frame_ms
    pauses = starts[1:] - ends[:-1]
    opens = np.concatenate(([True], pauses > hangover))  # run starts a new segment
    closes = np.concatenate((pauses > hangover, [True]))  # run ends its segment
    segments = np.stack((starts[opens], ends[closes]), axis=1).astype(np.int64)
    shortest = -(-config.min_speech_ms // config.frame_ms)
    return segments[segments[:, 1] - segments[:, 0] >= shortest]


def segments_from_decisions(
    decisions: npt.NDArray[np.bool_], config: VadConfig | None = None
) -> tuple[Segment, ...]:
    """:func:`smooth` of ``decisions`` as :class:`Segment` in seconds."""
    config = config or VadConfig()
    frame_s = config.frame_ms / 1000.0
    return tuple(
        Segment(round(int(start) * frame_s, 6), round(int(end) * frame_s, 6))
        for start, end in smooth(decisions, config)
    )


def speech_segments(
    pcm: npt.NDArray[np.int16], sample_rate: int = 8000, config: VadConfig | None = None
) -> tuple[Segment, ...]:
    """Speech segments of mono int16 audio ``pcm``: frame decisions, then :func:`smooth`."""
    config = config or VadConfig()
    return segments_from_decisions(frame_decisions(pcm, sample_rate, config), config)
