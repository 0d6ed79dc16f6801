"""Offline English transcription with CMU PocketSphinx 5 and the model its wheel ships.

The ``pocketsphinx`` wheel carries the US English continuous model
(``en-us``: a phonetically tied mixture acoustic model trained on 16 kHz
speech, feature front end 25 mel filters from 130 to 6,800 Hz), the CMU
pronouncing dictionary and a generic trigram language model, so nothing is
fetched at run time.

Telephone audio is 8 kHz (G.711, RFC 3551 section 4.5.14). Two ways to put it
before a 16 kHz model were measured on espeak-ng speech sent through G.711:
decoding at ``samprate=8000`` with the
filter bank cut to 3,500 Hz recovered no card digit and garbled the plain
sentences, because the cepstra of a narrower filter bank are not the ones
the model was trained on; upsampling to 16 kHz with :func:`dsp.resample.resample`
and keeping the model's own front end did clearly better. Audio at any
rate other than 16 kHz is therefore brought to 16 kHz first.

Each stretch of speech found by :func:`dsp.vad.speech_segments` (merged across
short pauses, padded, cut at ``max_utterance_s``) is decoded as one
utterance, so a long call neither grows one search without bound nor cuts a
word at a fixed block boundary. Word times come from the decoder's
segmentation (frames of 10 ms: ``frate`` 100), offset by the utterance's
start. Tokens that are not words are dropped: the sentence markers ``<s>``,
``</s>``, silence ``<sil>`` and the noise fillers in brackets (``[NOISE]``,
``++BREATH++``); alternate-pronunciation suffixes (``two(2)``) are removed.
Numbers come out as words (``four one one one``), as the dictionary spells
them, which is what the transcript redactor reads. The generic model alone
hears few of them on telephone audio, so by default (``digit_pass=True``)
each utterance is decoded a second time with a digit-run model and its
digit runs replace the generic words at the same time
(:mod:`gateway.analysis.transcribe.digits` gives the measurements).

Confidence is the segment's posterior probability as the decoder reports it,
clipped to [0, 1]; the default search does not compute posteriors and
reports 1.0.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dsp.resample import resample
from dsp.vad import VadConfig, speech_segments
from gateway.analysis.transcribe.base import TranscriptionError, Word, check_audio
from gateway.analysis.transcribe.digits import digit_lm_path, merge_digit_runs

__all__ = ["DECODE_RATE", "PocketsphinxTranscriber", "clean_token"]

DECODE_RATE: Final = 16000
"""Rate the shipped model was trained at; other rates are resampled to it."""

FRAME_S: Final = 0.01
"""Seconds per decoder frame (PocketSphinx's default frame rate of 100 per second)."""

_ALTERNATE: Final = re.compile(r"\(\d+\)$")
_VAD_RATE: Final = 8000


def clean_token(token: str) -> str | None:
    """The word of a decoder token, or None for markers, silence and fillers."""
    if not token or token.startswith(("<", "[", "++")) or token.endswith("++"):
        return None
    word = _ALTERNATE.sub("", token)
    return word.lower() or None


class PocketsphinxTranscriber:
    """PocketSphinx over each stretch of speech of one party's audio.

    ``options`` are passed to :class:`pocketsphinx.Decoder` as configuration
    (``lm=``, ``dict=``, ``jsgf=``, ``kws=``, ``hmm=``, ``lw=``, ...), which is
    how a tenant brings its own language model or grammar. One decoder is
    created lazily and used by one call at a time (a lock serialises it).
    """

    name = "pocketsphinx"

    def __init__(
        self,
        *,
        language: str = "en",
        pause_s: float = 0.6,
        padding_s: float = 0.3,
        max_utterance_s: float = 30.0,
        digit_pass: bool = True,
        **options: Any,
    ) -> None:
        if not language.lower().startswith("en"):
            raise ValueError(f"the shipped PocketSphinx model is English, not {language!r}")
        if pause_s < 0 or padding_s < 0 or max_utterance_s <= 0:
            raise ValueError("pause and padding must not be negative, utterances must have length")
        self.language = language
        self._pause_s = pause_s
        self._padding_s = padding_s
        self._max_utterance_s = max_utterance_s
        self._options = {"loglevel": "FATAL", **options}
        self._digit_pass = digit_pass
        self._decoder: Any = None
        self._digit_decoder: Any = None
        self._lock = threading.Lock()

    def _make_decoder(self, **overrides: Any) -> Any:
        try:
            import pocketsphinx
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise TranscriptionError(f"pocketsphinx is not installed: {error}") from None
        try:
            return pocketsphinx.Decoder(**{**self._options, **overrides})
        except (RuntimeError, ValueError, KeyError) as error:
            raise TranscriptionError(f"pocketsphinx failed to start: {error}") from None

    def _get_decoder(self) -> Any:
        if self._decoder is None:
            self._decoder = self._make_decoder()
        return self._decoder

    def _get_digit_decoder(self) -> Any:
        if self._digit_decoder is None:
            self._digit_decoder = self._make_decoder(lm=str(digit_lm_path()))
        return self._digit_decoder

    def utterances(self, pcm: npt.NDArray[np.int16], sample_rate: int) -> Iterator[tuple[int, int]]:
        """(first, end) sample indices of the stretches of ``pcm`` to decode, in order."""
        vad_pcm = pcm
        if sample_rate != _VAD_RATE:
            vad_pcm = _to_int16(resample(pcm, sample_rate, _VAD_RATE))
        spans: list[list[float]] = []
        for segment in speech_segments(vad_pcm, _VAD_RATE, VadConfig()):
            if spans and segment.start_s - spans[-1][1] <= self._pause_s:
                spans[-1][1] = segment.end_s
            else:
                spans.append([segment.start_s, segment.end_s])
        total = len(pcm)
        for start_s, end_s in spans:
            start_s = max(0.0, start_s - self._padding_s)
            end_s = end_s + self._padding_s
            while start_s < end_s:
                stop_s = min(end_s, start_s + self._max_utterance_s)
                first, end = round(start_s * sample_rate), min(total, round(stop_s * sample_rate))
                if end > first:
                    yield first, end
                start_s = stop_s

    def _decode(self, decoder: Any, pcm: npt.NDArray[np.int16], offset_s: float) -> list[Word]:
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        decoder.end_utt()
        logmath = decoder.logmath
        words: list[Word] = []
        for segment in decoder.seg():
            text = clean_token(segment.word)
            if text is None:
                continue
            start = offset_s + segment.start_frame * FRAME_S
            end = offset_s + (segment.end_frame + 1) * FRAME_S
            confidence = min(1.0, max(0.0, float(logmath.exp(segment.prob))))
            words.append(Word(text, round(start, 3), round(end, 3), confidence))
        return words

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int, party: str) -> list[Word]:
        """The words of ``pcm``, times in seconds from its start."""
        pcm = check_audio(pcm, sample_rate)
        words: list[Word] = []
        with self._lock:
            decoder = self._get_decoder()
            for first, end in self.utterances(pcm, sample_rate):
                chunk = pcm[first:end]
                if sample_rate != DECODE_RATE:
                    chunk = _to_int16(resample(chunk, sample_rate, DECODE_RATE))
                offset_s = first / sample_rate
                try:
                    heard = self._decode(decoder, chunk, offset_s)
                    if self._digit_pass:
                        digits = self._decode(self._get_digit_decoder(), chunk, offset_s)
                        heard = merge_digit_runs(heard, digits)
                    words.extend(heard)
                except RuntimeError as error:
                    raise TranscriptionError(f"pocketsphinx failed: {error}") from None
        return words

    def close(self) -> None:
        """Drop the decoder (it holds the model, some tens of MB)."""
        with self._lock:
            self._decoder = None
            self._digit_decoder = None


def _to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
