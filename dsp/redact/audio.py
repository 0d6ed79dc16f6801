"""Muting redacted spans in recorded audio: spans to time ranges, ranges to silence or a tone.

A span's time range is its first word's start to its last word's end, from
the ASR word timestamps, widened by a margin on both sides (timestamps are
approximate, and a digit's onset or tail must not survive); ranges that
touch or overlap are merged. The kernel then replaces every sample inside
a range, on every channel: with silence, or with a tone (the
:mod:`dsp.tones` generator, short raised-cosine ramps, so a listener hears
that something was taken out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from dsp.redact.redactor import Span
from dsp.tones import tone

__all__ = ["MuteMode", "mute_audio", "mute_ranges"]

MuteMode = Literal["silence", "tone"]
DEFAULT_MARGIN_S: Final = 0.15


def mute_ranges(
    spans: Iterable[Span], margin_s: float = DEFAULT_MARGIN_S
) -> npt.NDArray[np.float64]:
    """Sorted, merged ``(start, end)`` rows in seconds covering every span plus ``margin_s``."""
    if margin_s < 0:
        raise ValueError(f"margin must be >= 0, got {margin_s}")
    rows = np.array([(span.start, span.end) for span in spans], dtype=np.float64).reshape(-1, 2)
    if not len(rows):
        return rows
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    starts = np.maximum(rows[:, 0] - margin_s, 0.0)
    ends = rows[:, 1] + margin_s
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(rows), dtype=np.bool_)
    new[1:] = starts[1:] > reach[:-1]
    groups = np.flatnonzero(new)
    return np.column_stack([starts[groups], np.maximum.reduceat(ends, groups)])


def mute_audio(
    pcm: npt.NDArray[np.int16],
    ranges: npt.NDArray[np.float64],
    *,
    sample_rate: int = 8000,
    mode: MuteMode = "silence",
    tone_hz: float = 1000.0,
    amplitude_dbfs: float = -20.0,
    ramp_s: float = 0.005,
) -> npt.NDArray[np.int16]:
    """A copy of ``pcm`` (samples, or samples x channels) with ``ranges`` silenced or toned.

    Ranges are in seconds from the start of ``pcm``; parts outside it are ignored.
    """
    if mode not in ("silence", "tone"):
        raise ValueError(f"mode must be 'silence' or 'tone', got {mode!r}")
    out = np.array(pcm, dtype=np.int16, copy=True)
    rows = np.asarray(ranges, dtype=np.float64).reshape(-1, 2)
    bounds = np.clip(np.rint(rows * sample_rate), 0, len(out)).astype(np.int64)
    bounds = bounds[bounds[:, 1] > bounds[:, 0]]
    if not len(bounds):
        return out
    if mode == "silence":
        delta = np.zeros(len(out) + 1, dtype=np.int64)
        np.add.at(delta, bounds[:, 0], 1)
        np.add.at(delta, bounds[:, 1], -1)
        out[np.cumsum(delta[:-1]) > 0] = 0
        return out
    for begin, finish in bounds.tolist():
        count = finish - begin
        burst = tone(
            tone_hz,
            count / sample_rate,
            sample_rate=sample_rate,
            amplitude_dbfs=amplitude_dbfs,
            ramp_s=ramp_s,
        )[:count]
        segment = np.zeros(count, dtype=np.int16)
        segment[: len(burst)] = burst
        out[begin:finish] = segment if out.ndim == 1 else segment[:, None]
    return out
