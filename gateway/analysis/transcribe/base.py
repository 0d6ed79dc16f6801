"""What every transcriber gives back: words with times and a confidence, per party.

A call is transcribed one party at a time: the recorder keeps each party on
its own channel (:mod:`gateway.analysis.recorder`), so who said a word is
known from the channel, not guessed by diarisation. A backend takes one
channel's mono 16-bit audio and returns its words in time order, times in
seconds from the start of that audio; :class:`Transcript` is the pipeline's
record of one channel's result.

Backends are synchronous and CPU- or network-bound: the post-call pipeline
runs them in a worker thread or process, never on the event loop. A failure
is a :class:`TranscriptionError` whose message the pipeline stores as the
reason the transcript is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "Transcriber",
    "Transcript",
    "TranscriptionError",
    "Word",
    "check_audio",
    "words_in_order",
]


class TranscriptionError(RuntimeError):
    """A transcription that failed; the message says why, for the call's record."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word: its text (lower case), where it lies in the audio, how sure it is.

    ``start_s`` and ``end_s`` are seconds from the start of the audio passed
    to the transcriber; ``confidence`` is in [0.0, 1.0] (a backend that has
    no measure says 1.0).
    """

    text: str
    start_s: float
    end_s: float
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("a word has text")
        if not 0.0 <= self.start_s <= self.end_s:
            raise ValueError(f"word times must satisfy 0 <= start <= end: {self!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must lie in [0, 1]: {self!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": round(self.start_s, 3),
            "end": round(self.end_s, 3),
            "confidence": round(self.confidence, 3),
        }


@dataclass(frozen=True, slots=True)
class Transcript:
    """The words of one party of a call, as one backend heard them."""

    party: str
    words: tuple[Word, ...] = field(default_factory=tuple)
    language: str = "en"
    backend: str = "none"

    @property
    def text(self) -> str:
        """The words joined by spaces."""
        return " ".join(word.text for word in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "language": self.language,
            "backend": self.backend,
            "words": [word.to_dict() for word in self.words],
        }


@runtime_checkable
class Transcriber(Protocol):
    """A speech-to-text backend: one party's mono audio in, its words in time order out."""

    name: str
    """Short name of the backend, recorded with every transcript (``pocketsphinx``, ...)."""

    language: str
    """Language the backend transcribes, as a BCP 47 tag (``en``)."""

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int, party: str) -> list[Word]:
        """The words spoken in ``pcm`` (mono int16 at ``sample_rate`` Hz) by ``party``.

        Raises :class:`TranscriptionError` when the backend fails.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (decoders, connections); idempotent."""
        ...


def check_audio(pcm: npt.NDArray[np.int16], sample_rate: int) -> npt.NDArray[np.int16]:
    """``pcm`` as a 1-D int16 array, or :class:`TranscriptionError` saying what is wrong."""
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TranscriptionError("transcribers take int16 samples")
    if pcm.ndim == 2 and pcm.shape[1] == 1:
        pcm = pcm[:, 0]
    if pcm.ndim != 1:
        raise TranscriptionError(f"transcribers take mono audio, got shape {pcm.shape}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise TranscriptionError(f"sample rate must be a positive integer, got {sample_rate!r}")
    return pcm


def words_in_order(words: Sequence[Word]) -> list[Word]:
    """``words`` sorted by start time (stable for words that start together)."""
    return sorted(words, key=lambda word: word.start_s)
