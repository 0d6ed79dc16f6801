"""In-band DTMF detection on 8 kHz audio with Goertzel filters, vectorised over frames.

What a receiver must do: ITU-T Q.24 tabulates the DTMF receiver limits of
the administrations; the figures followed here are the North American ones
(Bellcore), as the receiver notes of spandsp and Asterisk also state them:

- frequency: operate within +-1.5 % of the nominal frequencies (ITU-T Q.23),
  do not operate beyond +-3.5 %;
- twist: operate with the low-group tone up to 8 dB stronger than the
  high-group tone ("normal" twist, as a line's high-frequency loss makes
  it) and up to 4 dB weaker ("reverse" twist);
- duration: operate on tones of 40 ms or more; tones of 20-25 ms are not
  digits; a 40 ms pause separates two digits, a short break in a held tone
  does not;
- level: operate down to about -25 dBm0 per tone, some -28 dBFS in G.711
  (a 0 dBFS sine is +3.17 dBm0 in mu-law);
- noise: operate at a 15 dB signal-to-noise ratio; do not answer speech
  ("talk-off").

Method
------
Audio is cut into half-blocks of 51 samples (6.375 ms). A frame is two
adjacent half-blocks (102 samples, 12.75 ms, the block length spandsp uses),
so frames overlap by half and start every 51 samples. One matrix product of
all half-blocks against 51-sample reference sinusoids gives each frame's
Goertzel output (its DFT coefficient) at the 8 DTMF frequencies as the sum of
its two halves' parts: every frame of a buffer at once, with no loop over
samples or frames. That screens the frames (tests 3 and 1, loosely); the few
that pass (none in silence, a few percent of loud speech) are examined
further as a batch, by one product with 102-sample references: a
Hann-windowed frame at the 8 fundamentals, and the second harmonics.

A frame is a hit for the digit of its strongest row tone and strongest
column tone when every test passes:

1. level: each tone's amplitude (Hann window) is at least ``min_level_dbfs``;
2. twist: the tones' level difference is within the twist limits plus
   1.5 dB (single frames are noisy; the press's average is held to the
   limits themselves, see below);
3. relative peak: each tone (rectangular window, 78 Hz resolution) is at
   least ``min_relative_peak_db`` above the other tones of its group;
4. second harmonics: the amplitude at twice each tone's frequency, less
   what the two tones leak into that bin, is ``max_harmonic_db`` below the
   tone (voiced speech is rich in harmonics, a DTMF generator is not);
5. frequency: each tone's frequency, measured from the phase advance of
   the Hann-windowed coefficient between the frame 51 samples earlier and
   this one, is within ``frequency_tolerance`` plus 0.5 % of nominal;
6. tone share: a least-squares fit of two sinusoids at the two measured
   frequencies explains at least ``min_tone_share_db`` of the frame's
   energy (-0.6 dB: 87 %). This is the main talk-off test; it also fails the
   frames that straddle a tone's start or end, which gives presses their
   timing. It runs only on frames that pass tests 1-5.

Consecutive hits of one digit form a candidate. It becomes a key press at
the first hit where (a) it has ``confirm_frames`` hits: the number of frames
that fit inside a tone of ``min_duration_s`` whatever its alignment, 4 for
40 ms; (b) its phase advances agree, ``|sum z| / sum |z| >=
min_phase_coherence`` for each tone: a steady tone, not a harmonic of a
moving pitch; (c) its average frequencies (from the summed phase advances)
are within ``frequency_tolerance`` (2 %, between Q.24's 1.5 % and 3.5 %);
and (d) its average twist, from the fitted amplitudes, is within
``max_normal_twist_db`` and ``max_reverse_twist_db``. The press ends
once ``release_frames`` consecutive frames are not hits of its digit: the
frames inside a pause of ``min_pause_s`` plus one, 5 for 40 ms.

Measured on clean tones at any alignment, the defaults make a press of
every tone of 36 ms or more and of no tone of 28 ms or less; they bridge
breaks of 16 ms or less in a held tone and separate digits by pauses of
24 ms or more. The defaults' limits are Q.24's plus 0.5 dB of twist, which
keeps 8 dB / 4 dB twist detected at 15 dB signal-to-noise ratio.

Times are sample indices from the start of the stream. A press's
``start_sample`` is the start of its first hit frame and ``end_sample`` the
end of its last: within about one half-block (6.4 ms) of the tone's edges.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from dsp.tones import DTMF_COLUMN_HZ, DTMF_DIGITS, DTMF_ROW_HZ, FULL_SCALE

__all__ = [
    "FRAME_SAMPLES",
    "HOP_SAMPLES",
    "SAMPLE_RATE",
    "DtmfConfig",
    "DtmfDetector",
    "DtmfError",
    "DtmfEvent",
    "DtmfMasker",
    "detect_dtmf",
    "dtmf_mask",
    "feed_many",
]

SAMPLE_RATE: Final = 8000
"""The only rate the detector runs at (G.711's)."""

HOP_SAMPLES: Final = 51
"""Half-block length: frames start every 51 samples (6.375 ms)."""

FRAME_SAMPLES: Final = 2 * HOP_SAMPLES
"""Frame length: 102 samples (12.75 ms), two half-blocks."""

_FUNDAMENTALS_HZ: Final = np.array(DTMF_ROW_HZ + DTMF_COLUMN_HZ)
_HARMONICS_HZ: Final = 2.0 * _FUNDAMENTALS_HZ
_FRAME_TWIST_ALLOWANCE_DB: Final = 1.5  # single frames' twist may exceed the limits by this
_FRAME_FREQUENCY_ALLOWANCE: Final = 0.005  # and their frequency error by this
_SCREEN_MARGIN_DB: Final = 6.0  # the level screen's allowance for window differences
_MAX_CORRECTION: Final = 0.035  # leakage is not corrected for beyond this frequency error
_RADIANS_TO_HZ: Final = SAMPLE_RATE / (2.0 * np.pi * HOP_SAMPLES)
_HANN_SUM: Final = FRAME_SAMPLES / 2.0  # sum of the 102-sample Hann window
_NO_DIGIT: Final = -1


class DtmfError(ValueError):
    """Audio or settings the detector cannot work with (the message says why)."""


@dataclass(frozen=True)
class DtmfEvent:
    """One key press: ``digit`` from ``start_sample`` to ``end_sample`` (exclusive).

    ``end_sample`` is None while the key is held (the event a streaming
    detector emits when it confirms the press).
    """

    digit: str
    start_sample: int
    end_sample: int | None = None

    @property
    def ended(self) -> bool:
        """Whether this event reports the key's release."""
        return self.end_sample is not None


@dataclass(frozen=True)
class DtmfConfig:
    """Receiver limits; the defaults follow ITU-T Q.24 (see the module's notes).

    - ``min_level_dbfs``: each tone's level floor (sine peak re full scale);
      -36 dBFS is 8 dB below Q.24's -25 dBm0.
    - ``max_normal_twist_db`` / ``max_reverse_twist_db``: how much stronger the
      low / the high tone may be, on a press's average (Q.24: 8 / 4 dB; 0.5 dB
      more for measurement noise).
    - ``min_relative_peak_db``: each tone's margin over its group's others.
    - ``max_harmonic_db``: second-harmonic level re the tone.
    - ``frequency_tolerance``: a press's frequency error, each tone (single
      frames: 0.5 % more).
    - ``min_tone_share_db``: the two tones' share of a frame's energy.
    - ``min_phase_coherence``: agreement of a candidate's phase advances.
    - ``min_duration_s`` / ``min_pause_s``: shortest tone that must make a
      press, shortest pause that must separate two.
    """

    min_level_dbfs: float = -36.0
    max_normal_twist_db: float = 8.5
    max_reverse_twist_db: float = 4.5
    min_relative_peak_db: float = 6.0
    max_harmonic_db: float = -12.0
    frequency_tolerance: float = 0.02
    min_tone_share_db: float = -0.6
    min_phase_coherence: float = 0.97
    min_duration_s: float = 0.040
    min_pause_s: float = 0.040

    def __post_init__(self) -> None:
        for name in ("max_normal_twist_db", "max_reverse_twist_db", "min_relative_peak_db"):
            if not getattr(self, name) >= 0:
                raise DtmfError(f"{name} must be >= 0 dB, got {getattr(self, name)}")
        for name in ("min_level_dbfs", "max_harmonic_db", "min_tone_share_db"):
            if not getattr(self, name) <= 0:
                raise DtmfError(f"{name} must be <= 0 dB, got {getattr(self, name)}")
        if not 0 < self.frequency_tolerance <= _MAX_CORRECTION - _FRAME_FREQUENCY_ALLOWANCE:
            raise DtmfError(
                f"frequency_tolerance must be in (0, "
                f"{_MAX_CORRECTION - _FRAME_FREQUENCY_ALLOWANCE}], got {self.frequency_tolerance}"
            )
        if not 0 <= self.min_phase_coherence <= 1:
            raise DtmfError(
                f"min_phase_coherence must be in [0, 1], got {self.min_phase_coherence}"
            )
        for name in ("min_duration_s", "min_pause_s"):
            seconds = getattr(self, name)
            if not FRAME_SAMPLES + HOP_SAMPLES <= seconds * SAMPLE_RATE <= SAMPLE_RATE:
                raise DtmfError(f"{name} must be between 19.2 ms and 1 s, got {seconds} s")

    @property
    def confirm_frames(self) -> int:
        """Hits that make a press: the frames inside any tone of ``min_duration_s``."""
        return _frames_inside(self.min_duration_s)

    @property
    def release_frames(self) -> int:
        """Misses that end a press: the frames inside any pause of ``min_pause_s``, plus one
        (a pause also fails the frames that straddle its edges)."""
        return _frames_inside(self.min_pause_s) + 1


def _frames_inside(seconds: float) -> int:
    """Frames that lie wholly inside ``seconds`` of audio, however the frame grid falls."""
    return (round(seconds * SAMPLE_RATE) - FRAME_SAMPLES) // HOP_SAMPLES


@dataclass(frozen=True)
class _Thresholds:
    """A config's limits as amplitude and energy ratios."""

    min_amplitude: float
    screen_power: float  # |Goertzel output|^2 below which a frame is not examined
    relative_peak_power: float
    frame_normal_twist: float  # amplitude ratios, single frames
    frame_reverse_twist: float
    normal_twist: float  # energy ratios, a press's average
    reverse_twist: float
    harmonic: float
    frame_frequency_tolerance: float  # single frames
    frequency_tolerance: float  # a press's average
    tone_share: float
    coherence: float
    confirm_frames: int
    release_frames: int

    @classmethod
    def of(cls, config: DtmfConfig) -> _Thresholds:
        def amplitude(db: float) -> float:
            return float(10.0 ** (db / 20.0))

        return cls(
            min_amplitude=FULL_SCALE * amplitude(config.min_level_dbfs),
            screen_power=(
                FULL_SCALE
                * amplitude(config.min_level_dbfs - _SCREEN_MARGIN_DB)
                * FRAME_SAMPLES
                / 2.0
            )
            ** 2,
            relative_peak_power=amplitude(config.min_relative_peak_db) ** 2,
            frame_normal_twist=amplitude(config.max_normal_twist_db + _FRAME_TWIST_ALLOWANCE_DB),
            frame_reverse_twist=amplitude(config.max_reverse_twist_db + _FRAME_TWIST_ALLOWANCE_DB),
            normal_twist=amplitude(config.max_normal_twist_db) ** 2,
            reverse_twist=amplitude(config.max_reverse_twist_db) ** 2,
            harmonic=amplitude(config.max_harmonic_db),
            frame_frequency_tolerance=config.frequency_tolerance + _FRAME_FREQUENCY_ALLOWANCE,
            frequency_tolerance=config.frequency_tolerance,
            tone_share=amplitude(config.min_tone_share_db) ** 2,
            coherence=config.min_phase_coherence,
            confirm_frames=config.confirm_frames,
            release_frames=config.release_frames,
        )


_DEFAULT_CONFIG: Final = DtmfConfig()
"""One instance shared by every detector made with the defaults (it is frozen)."""
_DEFAULT_LIMITS: Final = _Thresholds.of(_DEFAULT_CONFIG)


# ---------------------------------------------------------------------- measurement


def _half_block_reference() -> npt.NDArray[np.float64]:
    """The 51 x 32 matrix every half-block is multiplied by: cos and sin of the 8 DTMF
    frequencies with phases from the half-block's first sample (columns 0-15, its part
    of a frame it starts) and from 51 samples earlier (columns 16-31, its part of a
    frame it ends). A frame's Goertzel output is the sum of its two halves' parts."""
    n = np.arange(HOP_SAMPLES, dtype=np.float64)[:, None]
    first = 2.0 * np.pi * _FUNDAMENTALS_HZ / SAMPLE_RATE * n
    second = 2.0 * np.pi * _FUNDAMENTALS_HZ / SAMPLE_RATE * (n + HOP_SAMPLES)
    return np.hstack([np.cos(first), np.sin(first), np.cos(second), np.sin(second)])


def _frame_reference() -> npt.NDArray[np.float64]:
    """The 102 x 48 matrix an examined frame is multiplied by: cos and sin of the 8
    fundamentals under a Hann window (columns 0-15), of the 8 second harmonics
    (16-31) and of the 8 fundamentals (32-47), rectangular."""
    n = np.arange(FRAME_SAMPLES, dtype=np.float64)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / FRAME_SAMPLES)
    fundamentals = 2.0 * np.pi * _FUNDAMENTALS_HZ / SAMPLE_RATE * n
    harmonics = 2.0 * np.pi * _HARMONICS_HZ / SAMPLE_RATE * n
    return np.hstack(
        [
            window * np.cos(fundamentals),
            window * np.sin(fundamentals),
            np.cos(harmonics),
            np.sin(harmonics),
            np.cos(fundamentals),
            np.sin(fundamentals),
        ]
    )


_HALF_BLOCK_REFERENCE_T: Final = np.ascontiguousarray(_half_block_reference().T)
_FRAME_REFERENCE: Final = _frame_reference()
_HOP_SHIFT: Final = np.exp(-2j * np.pi * _FUNDAMENTALS_HZ / SAMPLE_RATE * HOP_SAMPLES)


def _complex(products: npt.NDArray[np.float64], first: int) -> npt.NDArray[np.complex128]:
    """DFT coefficients (k x 8) from cos and sin products in columns first..first+16."""
    return products[:, first : first + 8] - 1j * products[:, first + 8 : first + 16]


def _dirichlet(offset_hz: npt.NDArray[np.float64]) -> npt.NDArray[np.complex128]:
    """Sum over a 102-sample frame of exp(j 2 pi offset n / fs): what a unit complex tone
    ``offset_hz`` away from a bin adds to that bin's frame coefficient."""
    half_turn = np.pi * offset_hz / SAMPLE_RATE
    denominator = np.sin(half_turn)
    tiny = np.abs(denominator) < 1e-12
    magnitude = np.sin(FRAME_SAMPLES * half_turn) / np.where(tiny, 1.0, denominator)
    magnitude = np.where(tiny, float(FRAME_SAMPLES), magnitude)
    return magnitude * np.exp(1j * (FRAME_SAMPLES - 1) * half_turn)


def _relative_error(
    phase_advance: npt.NDArray[np.complex128], nominal_hz: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Frequency error, relative to nominal, of a phase advance over one hop; infinite where
    there is no phase to measure (digital silence before the frame)."""
    measurable = np.abs(phase_advance) > 0
    error = np.angle(np.where(measurable, phase_advance, 1.0)) * _RADIANS_TO_HZ / nominal_hz
    return np.where(measurable, error, np.inf)


@dataclass(frozen=True)
class _Hits:
    """Each frame's classification and what a candidate press accumulates of it."""

    digit: npt.NDArray[np.int8]  # DTMF_DIGITS index, or -1
    row_phase: npt.NDArray[np.complex128]  # phase-advance products (0 where no hit)
    column_phase: npt.NDArray[np.complex128]
    row_power: npt.NDArray[np.float64]  # fitted squared amplitudes (0 where no hit)
    column_power: npt.NDArray[np.float64]

    def slice(self, first: int, count: int) -> _Hits:
        """Frames ``first`` .. ``first + count - 1`` (views, not copies)."""
        end = first + count
        return _Hits(
            self.digit[first:end],
            self.row_phase[first:end],
            self.column_phase[first:end],
            self.row_power[first:end],
            self.column_power[first:end],
        )

    @classmethod
    def none(cls, count: int) -> _Hits:
        return cls(
            digit=np.full(count, _NO_DIGIT, dtype=np.int8),
            row_phase=np.zeros(count, dtype=np.complex128),
            column_phase=np.zeros(count, dtype=np.complex128),
            row_power=np.zeros(count),
            column_power=np.zeros(count),
        )


def _screen(
    samples: npt.NDArray[np.float64], limits: _Thresholds
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The frames of the half-blocks ``samples`` (M x 51) that pass the relative-peak test
    (3) and a loose level test, and every frame's rectangular power at the 8 tones
    (8 x (M - 1): one row per tone, which keeps each step a pass over contiguous memory)."""
    products = _HALF_BLOCK_REFERENCE_T @ samples.T  # 32 x M
    sums = products[:16, :-1] + products[16:, 1:]  # each frame's cos and sin sums
    sums *= sums
    power = sums[:8] + sums[8:]  # |Goertzel output|^2
    passed = np.ones(power.shape[1], dtype=bool)
    for group in (power[:4], power[4:]):
        strongest = np.maximum(np.maximum(group[0], group[1]), np.maximum(group[2], group[3]))
        # the strongest is at least relative_peak_power times each other tone of its group
        # exactly when at most one tone (itself) exceeds strongest / relative_peak_power
        above = (group * limits.relative_peak_power > strongest).sum(axis=0)
        passed &= (strongest >= limits.screen_power) & (above <= 1)
    return np.flatnonzero(passed), power


def _harmonic_residue(examined: _Examined) -> npt.NDArray[np.float64]:
    """Amplitude (k x 2) at twice each of the two tones' frequencies, less what the two
    tones leak into those bins. Each tone's complex amplitude is its bin's coefficient
    over the Dirichlet kernel at its measured frequency error."""
    products = examined.frames @ _FRAME_REFERENCE[:, 16:]
    rows = np.arange(len(products))[:, None]
    harmonics = _complex(products, 0)[rows, examined.tones]  # k x 2
    fundamentals = _complex(products, 16)[rows, examined.tones]
    nominal = _FUNDAMENTALS_HZ[examined.tones]
    offsets = np.clip(examined.errors, -_MAX_CORRECTION, _MAX_CORRECTION) * nominal
    amplitudes = fundamentals / _dirichlet(offsets)
    # leak[k, h, t]: what tone t adds to harmonic bin h
    distance = (nominal + offsets)[:, None, :] - _HARMONICS_HZ[examined.tones][:, :, None]
    leakage = (amplitudes[:, None, :] * _dirichlet(distance)).sum(axis=2)
    return np.abs(harmonics - leakage) * (2.0 / FRAME_SAMPLES)


def _two_tone_fit(
    frames: npt.NDArray[np.float64], tone_hz: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Least-squares fit of ``frames`` (k x 102) by two sinusoids with free amplitude and
    phase at the frequencies ``tone_hz`` (k x 2).

    Returns the fit's energy (k) and the two tones' squared amplitudes (k x 2).
    """
    # e^(j w n) for n = 0..101 as the running product of e^(j w): a third of the time of cos
    # and sin of every angle, within 1e-14 of them over one frame
    powers = np.empty((len(frames), 2, FRAME_SAMPLES), dtype=np.complex128)
    powers[:, :, 0] = 1.0
    powers[:, :, 1:] = np.exp(1j * (2.0 * np.pi / SAMPLE_RATE) * tone_hz)[:, :, None]
    np.cumprod(powers, axis=2, out=powers)
    basis = np.concatenate([powers.real, powers.imag], axis=1)  # k x 4 x 102: cos, cos, sin, sin
    gram = basis @ basis.transpose(0, 2, 1)
    projection = basis @ frames[:, :, None]
    weights = np.linalg.solve(gram, projection)[:, :, 0]  # cos row, cos col, sin row, sin col
    energy = np.einsum("ij,ij->i", projection[:, :, 0], weights)
    return energy, weights[:, :2] ** 2 + weights[:, 2:] ** 2


@dataclass(frozen=True)
class _Examined:
    """Screened frames under examination, one entry each."""

    index: npt.NDArray[np.intp]  # frame numbers in the call
    frames: npt.NDArray[np.float64]  # k x 102 samples
    tones: npt.NDArray[np.intp]  # k x 2: the row tone (0-3) and the column tone (4-7)
    rect: npt.NDArray[np.float64]  # k x 2: their amplitudes, rectangular window
    phases: npt.NDArray[np.complex128]  # k x 2: their phase advances over the last hop
    errors: npt.NDArray[np.float64]  # k x 2: their relative frequency errors

    def keep(self, passed: npt.NDArray[np.bool_]) -> _Examined:
        return _Examined(
            self.index[passed],
            self.frames[passed],
            self.tones[passed],
            self.rect[passed],
            self.phases[passed],
            self.errors[passed],
        )


def _examine(
    extended: npt.NDArray[np.float64],
    index: npt.NDArray[np.intp],
    power: npt.NDArray[np.float64],
    limits: _Thresholds,
    hits: _Hits,
) -> None:
    """Tests 1, 2 and 5, then 4, then 6 on the screened frames ``index``, each on the
    frames that passed the ones before; hits go into ``hits``.

    ``extended`` is the half-blocks with the one before them first, so frame i is
    rows i+1 and i+2 and the frame 51 samples earlier rows i and i+1.
    """
    count = len(index)
    frames = np.concatenate([extended[index + 1], extended[index + 2]], axis=1)
    earlier = np.concatenate([extended[index], extended[index + 1]], axis=1)
    hann = _complex(np.vstack([frames, earlier]) @ _FRAME_REFERENCE[:, :16], 0)
    rows = np.arange(count)[:, None]
    tones = np.stack([power[:, :4].argmax(axis=1), power[:, 4:].argmax(axis=1) + 4], axis=1)
    now, before = hann[:count][rows, tones], hann[count:][rows, tones]
    phases = now * np.conj(before) * _HOP_SHIFT[tones]
    errors = _relative_error(phases, _FUNDAMENTALS_HZ[tones])
    level = np.abs(now) * (2.0 / _HANN_SUM)
    row, column = level[:, 0], level[:, 1]
    passed = (
        (row >= limits.min_amplitude)
        & (column >= limits.min_amplitude)
        & (column * limits.frame_normal_twist >= row)
        & (row * limits.frame_reverse_twist >= column)
        & (np.abs(errors) <= limits.frame_frequency_tolerance).all(axis=1)
    )
    if not passed.any():
        return
    rect = np.sqrt(power[rows, tones]) * (2.0 / FRAME_SAMPLES)
    examined = _Examined(index, frames, tones, rect, phases, errors).keep(passed)

    harmonics = _harmonic_residue(examined)
    examined = examined.keep((harmonics <= examined.rect * limits.harmonic).all(axis=1))
    if len(examined.index) == 0:
        return

    tone_hz = _FUNDAMENTALS_HZ[examined.tones] * (1.0 + examined.errors)
    energy, powers = _two_tone_fit(examined.frames, tone_hz)
    frame_energy = np.einsum("ij,ij->i", examined.frames, examined.frames)
    share = energy >= frame_energy * limits.tone_share
    examined, powers = examined.keep(share), powers[share]
    frame = examined.index
    hits.digit[frame] = examined.tones[:, 0] * 4 + (examined.tones[:, 1] - 4)
    hits.row_phase[frame] = examined.phases[:, 0]
    hits.column_phase[frame] = examined.phases[:, 1]
    hits.row_power[frame] = powers[:, 0]
    hits.column_power[frame] = powers[:, 1]


# ---------------------------------------------------------------------- presses


@dataclass
class _Candidate:
    """Consecutive hits of one digit, not yet a press."""

    digit: int
    start_sample: int
    hits: int = 0
    row_phase: complex = 0j  # sum of the hits' phase-advance products
    column_phase: complex = 0j
    row_weight: float = 0.0  # sum of their magnitudes
    column_weight: float = 0.0
    row_power: float = 0.0  # sum of the fitted squared amplitudes
    column_power: float = 0.0


@dataclass
class _Key:
    """A confirmed press whose key may still be held."""

    digit: int
    start_sample: int
    end_sample: int
    misses: int = 0


def _check_pcm(pcm: npt.NDArray[np.int16]) -> None:
    if not isinstance(pcm, np.ndarray):
        raise DtmfError(f"audio must be an int16 array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise DtmfError(f"audio must be an int16 array, got dtype {pcm.dtype}")
    if pcm.ndim != 1:
        raise DtmfError(f"audio must be one-dimensional, got shape {pcm.shape}")


@dataclass
class DtmfDetector:
    """Streaming DTMF receiver over 8 kHz int16 audio.

    :meth:`feed` takes audio in chunks of any size and returns the events
    they complete: a press's first event (``end_sample`` None) when the
    press is confirmed, and its second (same digit and start, ``end_sample``
    set) when the key is released. :meth:`flush` ends the stream and
    releases a key still held. Chunking does not change the events.
    """

    sample_rate: int = SAMPLE_RATE
    config: DtmfConfig = field(default_factory=lambda: _DEFAULT_CONFIG)
    _limits: _Thresholds = field(init=False, repr=False)
    _pending: npt.NDArray[np.int16] = field(init=False, repr=False)
    _first_frame: int = field(init=False, default=0, repr=False)
    _block_before: npt.NDArray[np.int16] = field(init=False, repr=False)
    _candidate: _Candidate | None = field(init=False, default=None, repr=False)
    _key: _Key | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise DtmfError(
                f"DTMF detection runs on {SAMPLE_RATE} Hz audio, got {self.sample_rate} Hz"
            )
        self._limits = (
            _DEFAULT_LIMITS if self.config is _DEFAULT_CONFIG else _Thresholds.of(self.config)
        )
        self._restart()

    def _restart(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        self._block_before = np.zeros(HOP_SAMPLES, dtype=np.int16)
        self._first_frame = 0
        self._candidate = None

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[DtmfEvent]:
        """Analyse the next ``pcm`` samples of the stream; the events they complete, in order."""
        return feed_many([self], [pcm])[0]

    def _take(self, pcm: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
        """The whole half-blocks of the stream so far not yet analysed, after the one before
        them, as pieces to stack (nothing when there is not a frame's worth); the rest of
        ``pcm`` waits for the next feed."""
        _check_pcm(pcm)
        buffered = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        half_count = len(buffered) // HOP_SAMPLES
        if half_count < 2:
            self._pending = buffered.copy()
            return []
        whole = buffered[: half_count * HOP_SAMPLES]
        pieces = [self._block_before, whole]
        self._block_before = whole[-2 * HOP_SAMPLES : -HOP_SAMPLES].copy()
        self._pending = buffered[(half_count - 1) * HOP_SAMPLES :].copy()
        return pieces

    def _step(self, hits: _Hits | None, frame_count: int) -> list[DtmfEvent]:
        """Run the press state machine over the next ``frame_count`` frames."""
        events = self._advance(hits, frame_count)
        self._first_frame += frame_count
        return events

    def flush(self) -> list[DtmfEvent]:
        """End of stream: the release of a key still held. Samples short of a frame are
        dropped, and the next :meth:`feed` starts a new stream at sample 0."""
        events = [self._release()] if self._key is not None else []
        self._restart()
        return events

    def _release(self) -> DtmfEvent:
        key = self._key
        if key is None:
            raise RuntimeError("no key is held")
        self._key = None
        return DtmfEvent(DTMF_DIGITS[key.digit], key.start_sample, key.end_sample)

    def _advance(self, hits: _Hits | None, frame_count: int) -> list[DtmfEvent]:
        """Run the press state machine over the runs of equally classified frames."""
        events: list[DtmfEvent] = []
        if hits is None:  # no hit at all
            self._candidate = None
            self._miss(frame_count, events)
            return events
        digits = hits.digit
        changes = np.flatnonzero(digits[1:] != digits[:-1]) + 1
        for begin, end in itertools.pairwise([0, *changes.tolist(), len(digits)]):
            self._run(int(digits[begin]), begin, end, hits, events)
        return events

    def _miss(self, count: int, events: list[DtmfEvent]) -> None:
        key = self._key
        if key is not None:
            key.misses += count
            if key.misses >= self._limits.release_frames:
                events.append(self._release())

    def _run(self, digit: int, begin: int, end: int, hits: _Hits, events: list[DtmfEvent]) -> None:
        """Frames ``begin:end`` of ``hits``, all classified ``digit``."""
        length = end - begin
        end_sample = (self._first_frame + end - 1) * HOP_SAMPLES + FRAME_SAMPLES
        if digit == _NO_DIGIT:
            self._candidate = None
            self._miss(length, events)
            return
        key = self._key
        if key is not None and key.digit == digit:
            key.misses = 0
            key.end_sample = end_sample
            self._candidate = None
            return
        candidate = self._candidate
        if candidate is None or candidate.digit != digit:
            candidate = _Candidate(digit, (self._first_frame + begin) * HOP_SAMPLES)
            self._candidate = candidate
        if self._confirm(candidate, hits, begin, end):
            if self._key is not None:
                events.append(self._release())
            self._candidate = None
            self._key = _Key(digit, candidate.start_sample, end_sample)
            events.append(DtmfEvent(DTMF_DIGITS[digit], candidate.start_sample))
        else:
            self._miss(length, events)

    def _confirm(self, candidate: _Candidate, hits: _Hits, begin: int, end: int) -> bool:
        """Add hits ``begin:end`` to ``candidate``; whether it is a press by their end."""
        limits = self._limits
        row = hits.row_phase[begin:end]
        column = hits.column_phase[begin:end]
        row_sum = candidate.row_phase + np.cumsum(row)
        column_sum = candidate.column_phase + np.cumsum(column)
        row_weight = candidate.row_weight + np.cumsum(np.abs(row))
        column_weight = candidate.column_weight + np.cumsum(np.abs(column))
        row_power = candidate.row_power + np.cumsum(hits.row_power[begin:end])
        column_power = candidate.column_power + np.cumsum(hits.column_power[begin:end])
        count = candidate.hits + np.arange(1, end - begin + 1)
        row_error = np.angle(row_sum) * _RADIANS_TO_HZ / DTMF_ROW_HZ[candidate.digit // 4]
        column_error = np.angle(column_sum) * _RADIANS_TO_HZ / DTMF_COLUMN_HZ[candidate.digit % 4]
        confirmed = (
            (count >= limits.confirm_frames)
            & (np.abs(row_error) <= limits.frequency_tolerance)
            & (np.abs(column_error) <= limits.frequency_tolerance)
            & (np.abs(row_sum) >= row_weight * limits.coherence)
            & (np.abs(column_sum) >= column_weight * limits.coherence)
            & (row_power <= column_power * limits.normal_twist)
            & (column_power <= row_power * limits.reverse_twist)
        )
        candidate.hits = int(count[-1])
        candidate.row_phase = complex(row_sum[-1])
        candidate.column_phase = complex(column_sum[-1])
        candidate.row_weight = float(row_weight[-1])
        candidate.column_weight = float(column_weight[-1])
        candidate.row_power = float(row_power[-1])
        candidate.column_power = float(column_power[-1])
        return bool(confirmed.any())


def feed_many(
    detectors: Sequence[DtmfDetector], chunks: Sequence[npt.NDArray[np.int16]]
) -> list[list[DtmfEvent]]:
    """Feed each detector its chunk, ``detectors[i].feed(chunks[i])``, with one screen for all.

    Every stream's half-blocks are stacked into one matrix and screened by
    one product, and the frames that pass are examined together, so many
    streams (the calls of a gateway) cost one pass rather than a pass each;
    only a stream with hits runs the press state machine over them. The
    events per detector are the ones :meth:`DtmfDetector.feed` would return.
    The detectors must share one configuration.
    """
    if len(detectors) != len(chunks):
        raise DtmfError(f"{len(detectors)} detectors but {len(chunks)} chunks of audio")
    results: list[list[DtmfEvent]] = [[] for _ in detectors]
    if not detectors:
        return results
    config = detectors[0].config
    pieces: list[npt.NDArray[np.int16]] = []
    spans: list[tuple[int, int, int]] = []  # detector, first row, rows (the one before first)
    rows = 0
    for number, (detector, pcm) in enumerate(zip(detectors, chunks, strict=True)):
        if detector.config is not config and detector.config != config:
            raise DtmfError("detectors fed together must share one configuration")
        taken = detector._take(pcm)
        if taken:
            count = (len(taken[0]) + len(taken[1])) // HOP_SAMPLES
            pieces += taken
            spans.append((number, rows, count))
            rows += count
    if not spans:
        return results
    limits = detectors[0]._limits
    stacked = np.concatenate(pieces).reshape(rows, HOP_SAMPLES).astype(np.float64)
    screened, power = _screen(stacked, limits)
    # frame r pairs rows r and r + 1: a stream's frames are rows first + 1 .. first + count - 2
    # (the frames that straddle two streams are screened too, and dropped here)
    firsts = np.array([first for _, first, _ in spans])
    counts = np.array([count for _, _, count in spans])
    span_of = np.searchsorted(firsts, screened, side="right") - 1
    inside = (screened > firsts[span_of]) & (screened < firsts[span_of] + counts[span_of] - 1)
    kept, kept_span = screened[inside], span_of[inside]
    hits = None
    if kept.size:
        # one examination for every stream: frame r is _examine's index r - 1 (its rows r and
        # r + 1, the frame before it rows r - 1 and r); a stream's frames are then hits
        # first .. first + count - 3
        hits = _Hits.none(rows)
        _examine(stacked, kept - 1, power[:, kept].T, limits, hits)
        heard = set(kept_span[hits.digit[kept - 1] != _NO_DIGIT].tolist())
    else:
        heard = set()
    for span_number, (number, first, count) in enumerate(spans):
        frame_count = count - 2
        stream_hits = None
        if hits is not None and span_number in heard:
            stream_hits = hits.slice(first, frame_count)
        results[number] = detectors[number]._step(stream_hits, frame_count)
    return results


def detect_dtmf(pcm: npt.NDArray[np.int16], *, config: DtmfConfig | None = None) -> list[DtmfEvent]:
    """Every key press in a whole buffer of 8 kHz audio, once each, with its end set."""
    detector = DtmfDetector(config=config or DtmfConfig())
    events = detector.feed(pcm) + detector.flush()
    return [event for event in events if event.ended]


# ---------------------------------------------------------------------- masking


def _guard_samples(guard_s: float) -> int:
    if not math.isfinite(guard_s) or not 0 <= guard_s <= 1:
        raise DtmfError(f"guard must be between 0 and 1 s, got {guard_s}")
    return round(guard_s * SAMPLE_RATE)


def _silence_spans(
    pcm: npt.NDArray[np.int16], spans: list[tuple[int, int]], offset: int = 0
) -> npt.NDArray[np.int16]:
    """A copy of ``pcm`` (whose first sample is stream sample ``offset``) with spans zeroed."""
    masked = pcm.copy()
    for start, stop in spans:
        low = max(start - offset, 0)
        high = min(stop - offset, len(masked))
        if low < high:
            masked[low:high] = 0
    return masked


def dtmf_mask(
    pcm: npt.NDArray[np.int16], *, guard_s: float = 0.02, config: DtmfConfig | None = None
) -> tuple[npt.NDArray[np.int16], list[DtmfEvent]]:
    """``pcm`` with every press, widened by ``guard_s`` on each side, set to silence (0).

    Returns the masked copy and the presses. The guard covers the tone's
    edges, which the detector's frames do not count.
    """
    _check_pcm(pcm)
    guard = _guard_samples(guard_s)
    events = detect_dtmf(pcm, config=config)
    spans = [
        (event.start_sample - guard, (event.end_sample or len(pcm)) + guard) for event in events
    ]
    return _silence_spans(pcm, spans), events


@dataclass
class DtmfMasker:
    """Streaming :func:`dtmf_mask`: audio out is audio in ``delay_s`` later, presses silenced.

    A press is known only once confirmed, some 40 ms after its tone starts,
    so output lags input by ``delay_s``, which must cover that and
    ``guard_s``. While a key is held everything from its start (less the
    guard) is silenced; once it is released, up to its end plus the guard.
    With the default 100 ms delay, a press confirmed up to 40 ms later than
    the earliest possible is still silenced from its first sample. The
    first ``delay_s`` of output is silence.
    """

    delay_s: float = 0.1
    guard_s: float = 0.02
    config: DtmfConfig = field(default_factory=DtmfConfig)
    _detector: DtmfDetector = field(init=False, repr=False)
    _guard: int = field(init=False, repr=False)
    _held: npt.NDArray[np.int16] = field(init=False, repr=False)
    _emitted: int = field(init=False, repr=False)  # stream index of the next sample out
    _presses: list[DtmfEvent] = field(init=False, default_factory=list, repr=False)
    _unfinished: int = field(init=False, default=0, repr=False)  # first press still masking

    def __post_init__(self) -> None:
        self._guard = _guard_samples(self.guard_s)
        delay = round(self.delay_s * SAMPLE_RATE) if math.isfinite(self.delay_s) else -1
        needed = self._guard + (self.config.confirm_frames + 1) * HOP_SAMPLES
        if delay < needed:
            raise DtmfError(
                f"delay {self.delay_s} s is shorter than the time a press takes to confirm "
                f"plus the guard ({needed / SAMPLE_RATE:.4f} s)"
            )
        self._detector = DtmfDetector(config=self.config)
        self._held = np.zeros(delay, dtype=np.int16)
        self._emitted = -delay

    @property
    def presses(self) -> list[DtmfEvent]:
        """Every press seen so far, in order; ``end_sample`` None while its key is held."""
        return list(self._presses)

    def feed(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Take ``len(pcm)`` samples in, give as many out: ``delay_s`` late, presses silenced."""
        _check_pcm(pcm)
        self._note(self._detector.feed(pcm))
        self._held = np.concatenate([self._held, pcm])
        return self._take(len(pcm))

    def flush(self) -> npt.NDArray[np.int16]:
        """End of stream: every sample still held, presses silenced."""
        self._note(self._detector.flush())
        return self._take(len(self._held))

    def _note(self, events: list[DtmfEvent]) -> None:
        for event in events:
            if event.ended and self._presses and not self._presses[-1].ended:
                self._presses[-1] = event
            else:
                self._presses.append(event)

    def _take(self, count: int) -> npt.NDArray[np.int16]:
        out, self._held = self._held[:count], self._held[count:]
        first = self._emitted
        self._emitted += len(out)
        spans = []
        for press in self._presses[self._unfinished :]:
            start = press.start_sample - self._guard
            stop = self._emitted if press.end_sample is None else press.end_sample + self._guard
            spans.append((start, stop))
        while self._unfinished < len(self._presses):
            end = self._presses[self._unfinished].end_sample
            if end is None or end + self._guard > self._emitted:
                break
            self._unfinished += 1
        return _silence_spans(out, spans, offset=first)
