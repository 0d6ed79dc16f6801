"""The backend of tenants that want talk-time cues but no transcript: it hears no words."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.analysis.transcribe.base import Word, check_audio

__all__ = ["NullTranscriber"]


class NullTranscriber:
    """Returns no words for any audio (the audio is still checked, so misuse shows)."""

    name = "none"

    def __init__(self, *, language: str = "en") -> None:
        self.language = language

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int, party: str) -> list[Word]:
        check_audio(pcm, sample_rate)
        return []

    def close(self) -> None:
        """Nothing to release."""
