"""Recording-notice audio: a WAV file read once, at start-up, as 8 kHz mono int16.

Any WAVE file :mod:`dsp.wav` reads will do (PCM, float, A-law, mu-law, at
any rate, any number of channels): its channels are mixed to mono (their
mean), it is resampled to G.711's 8,000 Hz (RFC 3551 4.5.14) and converted
to int16 with clipping, so the announcement player only encodes and sends.
The SHA-256 of the file's bytes identifies the notice version a party heard
in the call's consent record.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from dsp import g711
from dsp.resample import resample
from dsp.wav import WavError, read_wav, to_float

__all__ = ["MAX_NOTICE_SECONDS", "NoticeAudio", "NoticeError", "load_notice"]

MAX_NOTICE_SECONDS: Final = 120.0
"""Longest notice accepted; a longer file is almost certainly the wrong one."""

SAMPLE_RATE: Final = g711.SAMPLE_RATE


class NoticeError(ValueError):
    """A notice file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class NoticeAudio:
    """A notice ready to play: 8 kHz mono int16 samples, the file's hash and path."""

    pcm: npt.NDArray[np.int16]
    sha256: str
    source: str

    @property
    def duration_s(self) -> float:
        """Length of the notice in seconds."""
        return len(self.pcm) / SAMPLE_RATE


def load_notice(path: str | os.PathLike[str]) -> NoticeAudio:
    """Read the WAV file at ``path`` into a :class:`NoticeAudio`.

    Raises :class:`NoticeError` when the file is missing or unreadable, is
    not a WAVE file :mod:`dsp.wav` decodes, holds no audio, or lasts more
    than :data:`MAX_NOTICE_SECONDS`.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise NoticeError(f"notice {source}: no such file") from None
    except OSError as exc:
        raise NoticeError(f"notice {source}: cannot read it: {exc.strerror or exc}") from None
    try:
        samples, rate = read_wav(data)
    except WavError as exc:
        raise NoticeError(f"notice {source}: unreadable WAV: {exc}") from None
    frames = len(samples)  # the first axis: frames (dsp.wav)
    if frames == 0:
        raise NoticeError(f"notice {source}: empty audio (no samples)")
    if frames / rate > MAX_NOTICE_SECONDS:
        raise NoticeError(
            f"notice {source}: {frames / rate:.1f} s is longer than {MAX_NOTICE_SECONDS:g} s"
        )
    mono = to_float(samples).mean(axis=1)
    np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    at_8k = resample(mono, rate, SAMPLE_RATE) * 32768.0
    pcm = np.clip(np.rint(at_8k), -32768, 32767).astype(np.int16)
    pcm.setflags(write=False)
    return NoticeAudio(pcm=pcm, sha256=hashlib.sha256(data).hexdigest(), source=source)
