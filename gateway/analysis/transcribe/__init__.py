"""Transcription of one party's audio into words with times, behind one small interface.

:mod:`.base` defines :class:`Word`, :class:`Transcript` and the
:class:`Transcriber` protocol; :func:`make_transcriber` builds a backend by
name: PocketSphinx offline (:mod:`.sphinx`), an HTTP speech service
(:mod:`.remote`), or none (:mod:`.null`).
"""

from gateway.analysis.transcribe.base import Transcriber, Transcript, TranscriptionError, Word
from gateway.analysis.transcribe.factory import KINDS, make_transcriber

__all__ = ["KINDS", "Transcriber", "Transcript", "TranscriptionError", "Word", "make_transcriber"]
