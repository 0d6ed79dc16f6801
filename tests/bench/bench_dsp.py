"""Benchmark of the DSP kernels: G.711 decode/encode and DTMF detection, in times real time.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_dsp
    /work/main/.venv/bin/python -m tests.bench.bench_dsp --seconds 10 --repeat 3

Method
------
The process pins itself to one CPU (``--cpu``, default the last usable one),
so every figure is one core's, whatever threads NumPy's BLAS starts. Audio is
8 kHz: one second is 8,000 samples (8,000 G.711 octets). "x real time" is
samples processed per second of CPU-bound wall time divided by 8,000: how
many one-way call streams one core keeps up with. Each figure is the best of
``--repeat`` timed runs (``time.perf_counter``) after one untimed warm-up.

G.711 (:mod:`dsp.g711`): decoding and encoding ``--seconds`` of audio
(random codes; a speech-like signal for encoding), once as one buffer and
once as 20 ms RTP payloads (160 samples, one call per payload, as the media
path sees them). The reference is ``audioop`` (C, standard library up to
Python 3.12) doing the same conversions in the same run: ``ulaw2lin`` /
``lin2ulaw`` and ``alaw2lin`` / ``lin2alaw`` on bytes.

DTMF (:mod:`dsp.dtmf`): ``--seconds`` of speech-like audio with a DTMF digit
every two seconds, run through :func:`dsp.dtmf.detect_dtmf` as one buffer and
through a :class:`dsp.dtmf.DtmfDetector` fed 20 ms chunks; and, as the
capture gate listens to many calls at once, :data:`STREAMS` two-second pieces
of a longer programme (one digit each) as as many streams, fed together in
400 ms chunks by :func:`dsp.dtmf.feed_many` (us/call: per stream and chunk).
The digits found are checked. ``audioop`` has no DTMF detector, so the reference is the
textbook one: a pure-Python Goertzel recurrence per sample over 102-sample
blocks at the 8 DTMF frequencies, with a level, twist and relative-peak test
per block (fewer tests than the vectorised detector runs).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from dsp import g711, tones
from dsp.dtmf import DtmfDetector, detect_dtmf, feed_many
from tests.bench.common import format_table, machine_lines, print_title
from tests.unit.dsp import signals

RATE = 8000
PACKET_SAMPLES = 160  # 20 ms of G.711
STREAMS = 64
"""Streams fed together in the many-streams case (the capture queue's size)."""
STREAM_CHUNK_SAMPLES = 3200  # 400 ms: the capture gate's batch


@dataclass(frozen=True)
class Result:
    """One timed operation."""

    operation: str
    method: str
    block: str
    samples: int
    seconds: float
    calls: int

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def realtime(self) -> float:
        return self.samples_per_s / RATE

    def row(self) -> list[str]:
        return [
            self.operation,
            self.method,
            self.block,
            f"{self.samples_per_s / 1e6:,.2f}",
            f"{self.realtime:,.0f}",
            f"{self.seconds / self.calls * 1e6:,.2f}",
        ]


def best_time(work: Callable[[], object], repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` runs of ``work`` after one warm-up."""
    work()
    best = math.inf
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ModuleNotFoundError:
            return None


# ---------------------------------------------------------------------- G.711


@dataclass(frozen=True)
class G711Audio:
    """The same audio as G.711 codes and as 16-bit samples, whole and in 20 ms payloads."""

    codes: bytes
    pcm: np.ndarray
    pcm_bytes: bytes

    @classmethod
    def make(cls, seconds: float) -> G711Audio:
        count = round(seconds * RATE)
        codes = bytes(np.random.default_rng(0).integers(0, 256, count, dtype=np.uint8))
        pcm = signals.scale_to_dbfs(signals.voiced_speech(seconds, seed=1), -6.0)[:count]
        return cls(codes, pcm, pcm.astype("<i2").tobytes())

    def code_packets(self) -> list[bytes]:
        return [self.codes[i : i + PACKET_SAMPLES] for i in range(0, len(self.codes), 160)]

    def pcm_packets(self) -> list[np.ndarray]:
        return [self.pcm[i : i + PACKET_SAMPLES] for i in range(0, len(self.pcm), 160)]

    def byte_packets(self) -> list[bytes]:
        step = 2 * PACKET_SAMPLES
        return [self.pcm_bytes[i : i + step] for i in range(0, len(self.pcm_bytes), step)]


Case = tuple[str, str, str, Callable[[], object], int]


def dsp_cases(law: str, audio: G711Audio) -> list[Case]:
    """dsp.g711's decode and encode of ``law``, on the whole buffer and per payload."""
    decode = g711.ulaw_decode if law == "ulaw" else g711.alaw_decode
    encode = g711.ulaw_encode if law == "ulaw" else g711.alaw_encode
    codes, pcm = audio.codes, audio.pcm
    code_packets, pcm_packets = audio.code_packets(), audio.pcm_packets()
    return [
        ("decode", "dsp.g711 table", "buffer", lambda: decode(codes), 1),
        ("decode", "dsp.g711 table", "20 ms", lambda: [decode(p) for p in code_packets], 0),
        ("encode", "dsp.g711 table", "buffer", lambda: encode(pcm), 1),
        ("encode", "dsp.g711 table", "20 ms", lambda: [encode(p) for p in pcm_packets], 0),
    ]


def audioop_cases(law: str, audio: G711Audio, audioop: ModuleType) -> list[Case]:
    """audioop's conversions of ``law`` on the same audio, as bytes."""
    to_linear = getattr(audioop, f"{law}2lin")
    to_law = getattr(audioop, f"lin2{law}")
    codes, pcm_bytes = audio.codes, audio.pcm_bytes
    code_packets, byte_packets = audio.code_packets(), audio.byte_packets()
    decoder, encoder = f"audioop.{law}2lin", f"audioop.lin2{law}"
    return [
        ("decode", decoder, "buffer", lambda: to_linear(codes, 2), 1),
        ("decode", decoder, "20 ms", lambda: [to_linear(p, 2) for p in code_packets], 0),
        ("encode", encoder, "buffer", lambda: to_law(pcm_bytes, 2), 1),
        ("encode", encoder, "20 ms", lambda: [to_law(p, 2) for p in byte_packets], 0),
    ]


def g711_results(seconds: float, repeat: int, audioop: ModuleType | None) -> list[Result]:
    audio = G711Audio.make(seconds)
    count = len(audio.codes)
    packets = len(audio.code_packets())
    results: list[Result] = []
    for law in ("ulaw", "alaw"):
        cases = dsp_cases(law, audio)
        if audioop is not None:
            cases += audioop_cases(law, audio, audioop)
        for operation, method, block, work, calls in sorted(cases, key=lambda c: (c[0], c[2])):
            elapsed = best_time(work, repeat)
            results.append(
                Result(f"{law} {operation}", method, block, count, elapsed, calls or packets)
            )
    return results


# ---------------------------------------------------------------------- DTMF

_ROWS = tones.DTMF_ROW_HZ
_COLUMNS = tones.DTMF_COLUMN_HZ
_NAIVE_COEFFICIENTS = [2.0 * math.cos(2.0 * math.pi * f / RATE) for f in _ROWS + _COLUMNS]


def naive_goertzel_dtmf(samples: list[int]) -> list[str]:
    """The textbook detector: one Goertzel recurrence per sample and frequency, per
    102-sample block; a digit when two consecutive blocks agree."""
    digits: list[str] = []
    previous = ""
    reported = ""
    threshold = (102 * 500.0) ** 2  # about -36 dBFS per tone
    for start in range(0, len(samples) - 101, 102):
        block = samples[start : start + 102]
        powers = []
        for coefficient in _NAIVE_COEFFICIENTS:
            s1 = s2 = 0.0
            for x in block:
                s1, s2 = x + coefficient * s1 - s2, s1
            powers.append(s1 * s1 + s2 * s2 - coefficient * s1 * s2)
        rows, columns = powers[:4], powers[4:]
        row = max(range(4), key=rows.__getitem__)
        column = max(range(4), key=columns.__getitem__)
        hit = ""
        if (
            rows[row] >= threshold
            and columns[column] >= threshold
            and columns[column] * 6.3 > rows[row]  # 8 dB normal twist
            and rows[row] * 2.5 > columns[column]  # 4 dB reverse twist
            and all(rows[i] * 6.3 < rows[row] for i in range(4) if i != row)
            and all(columns[i] * 6.3 < columns[column] for i in range(4) if i != column)
        ):
            hit = tones.DTMF_KEYPAD[row][column]
        if hit and hit == previous and hit != reported:
            digits.append(hit)
        reported = hit if hit == previous else (reported if hit else "")
        previous = hit
    return digits


def dtmf_programme(seconds: float) -> tuple[np.ndarray, str]:
    """Speech-like audio with one digit every two seconds, and the digits."""
    speech = signals.scale_to_dbfs(signals.voiced_speech(seconds, seed=2), -9.0)
    pcm = speech.copy()
    dialled = ""
    for index, start in enumerate(range(RATE, len(pcm) - RATE // 2, 2 * RATE)):
        digit = tones.DTMF_DIGITS[index % 16]
        tone = tones.dtmf_tone(digit, 0.1, amplitude_dbfs=-12.0)
        pcm[start - 400 : start + len(tone) + 400] = 0
        pcm[start : start + len(tone)] = tone
        dialled += digit
    return pcm, dialled


def dtmf_results(seconds: float, repeat: int, naive_seconds: float) -> list[Result]:
    pcm, dialled = dtmf_programme(seconds)
    count = len(pcm)

    def batch() -> str:
        return "".join(event.digit for event in detect_dtmf(pcm))

    def streamed() -> str:
        detector = DtmfDetector()
        found = []
        for start in range(0, count, PACKET_SAMPLES):
            found += detector.feed(pcm[start : start + PACKET_SAMPLES])
        found += detector.flush()
        return "".join(event.digit for event in found if not event.ended)

    for name, work in (("batch", batch), ("streamed", streamed)):
        if work() != dialled:
            raise SystemExit(f"DTMF {name} found {work()!r}, expected {dialled!r}")
    many_pcm, many_dialled = dtmf_programme(STREAMS * 2.0)
    pieces = many_pcm[: STREAMS * 2 * RATE].reshape(STREAMS, 2 * RATE)

    def together() -> str:
        detectors = [DtmfDetector() for _ in range(STREAMS)]
        found: list[list[str]] = [[] for _ in range(STREAMS)]
        for start in range(0, 2 * RATE, STREAM_CHUNK_SAMPLES):
            chunks = [piece[start : start + STREAM_CHUNK_SAMPLES] for piece in pieces]
            for number, events in enumerate(feed_many(detectors, chunks)):
                found[number] += [event.digit for event in events if not event.ended]
        return "".join("".join(digits) for digits in found)

    if together() != many_dialled:
        raise SystemExit(f"DTMF feed_many found {together()!r}, expected {many_dialled!r}")
    naive_pcm, naive_dialled = dtmf_programme(naive_seconds)
    naive_samples = naive_pcm.astype(int).tolist()
    naive_found = "".join(naive_goertzel_dtmf(naive_samples))
    results = [
        Result("dtmf detect", "dsp.dtmf vectorised", "buffer", count, best_time(batch, repeat), 1),
        Result(
            "dtmf detect",
            "dsp.dtmf vectorised",
            "20 ms",
            count,
            best_time(streamed, repeat),
            count // PACKET_SAMPLES,
        ),
        Result(
            "dtmf detect",
            "dsp.dtmf feed_many",
            f"{STREAMS}x400 ms",
            pieces.size,
            best_time(together, repeat),
            STREAMS * (2 * RATE // STREAM_CHUNK_SAMPLES),
        ),
        Result(
            "dtmf detect",
            "pure-Python Goertzel",
            "buffer",
            len(naive_samples),
            best_time(lambda: naive_goertzel_dtmf(naive_samples), max(1, repeat // 2)),
            1,
        ),
    ]
    if naive_found != naive_dialled:
        print(f"note: the pure-Python reference found {naive_found!r} of {naive_dialled!r}")
    return results


# ---------------------------------------------------------------------- main


def pin_to_one_cpu(cpu: int | None) -> int:
    usable = sorted(os.sched_getaffinity(0))
    chosen = usable[-1] if cpu is None else cpu
    if chosen not in usable:
        raise SystemExit(f"CPU {chosen} is not usable here (usable: {usable})")
    os.sched_setaffinity(0, {chosen})
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per measurement")
    parser.add_argument("--naive-seconds", type=float, default=10.0, help="audio for the reference")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is kept")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args(argv)
    if args.seconds < 4 or args.naive_seconds < 4 or args.repeat < 1:
        parser.error("--seconds and --naive-seconds must be >= 4, --repeat >= 1")

    cpu = pin_to_one_cpu(args.cpu)
    audioop = load_audioop()
    print_title("DSP kernels: G.711 and DTMF, x real time on one core")
    for line in machine_lines():
        print(line)
    print(f"pinned to CPU {cpu}; NumPy {np.__version__}; audio {args.seconds:g} s at {RATE} Hz")
    if audioop is None:
        print("audioop is not available on this Python: no G.711 reference figures")
    print(__doc__.split("Method\n------\n", 1)[1].rstrip())
    print()

    results = g711_results(args.seconds, args.repeat, audioop)
    results += dtmf_results(args.seconds, args.repeat, args.naive_seconds)
    headers = ["operation", "method", "block", "Msamples/s", "x real time", "us/call"]
    print(format_table(headers, [result.row() for result in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
