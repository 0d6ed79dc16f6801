"""Benchmark of voice activity and talk-time cues over a long stereo call, in times real time.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_vad
    /work/main/.venv/bin/python -m tests.bench.bench_vad --minutes 60 --repeat 3
    /work/main/.venv/bin/python -m tests.bench --only bench_vad

Method
------
The process pins itself to one CPU (``--cpu``, default the last usable one),
so every figure is one core's. The call is a stereo 8 kHz 16-bit recording
of ``--minutes`` minutes laid out as :mod:`gateway.analysis.recorder` writes
one (caller left, callee right): turns of espeak-ng sentences (synthetic
voiced speech from :mod:`tests.unit.dsp.signals` when espeak-ng is missing),
each turn 0.3-1.5 s after the other party's, one turn in five started over
the end of the other party's, with hiss at -60 dBFS on both channels. "x
real time" is seconds of call (both channels) per second of wall time: how
many finished calls of that length one core analyses in the time one of
them lasts. Each figure is the best of ``--repeat`` timed runs
(``time.perf_counter``) after one untimed warm-up.

Stages timed: the WebRTC detector's frame decisions on both channels
(:func:`dsp.vad.frame_decisions`, 10, 20 and 30 ms frames), the smoothing
into segments (:func:`dsp.vad.segments_from_decisions`), the cues from the
segments (:func:`gateway.analysis.cues.cues_from_segments`), and the whole
of :func:`gateway.analysis.cues.cues_from_wav` on the file's bytes (WAV
parsing, both channels' detection and smoothing, cues), the figure the
target is for.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dsp.vad import VadConfig, frame_decisions, segments_from_decisions
from dsp.wav import encode_wav
from gateway.analysis.cues import cues_from_segments, cues_from_wav
from tests.bench.bench_dsp import best_time, pin_to_one_cpu
from tests.bench.common import format_table, machine_lines, print_title
from tests.unit.dsp import signals

RATE = 8000
TARGET_X = 500.0
SENTENCES = (
    "Hello, I am calling about my invoice from last month.",
    "Of course, let me pull up your account, one moment please.",
    "I can see the invoice here, it was sent on the third of March.",
    "The total was forty two dollars and fifty cents.",
    "Sorry, but that amount is wrong, I cancelled the service.",
    "I understand, I will pass this to our billing team today.",
    "Thank you, is there anything else I can help you with?",
    "No, that is all, goodbye.",
)


def utterances(directory: Path) -> tuple[list[npt.NDArray[np.int16]], str]:
    """The sentences as 8 kHz int16 audio at -9 dBFS, and what made them."""
    if signals.espeak_available():
        voices = ("en", "en-us+f3")
        made = [
            signals.espeak_speech(text, voices[i % 2], directory)
            for i, text in enumerate(SENTENCES)
        ]
        source = "espeak-ng sentences"
    else:
        made = [signals.voiced_speech(3.0, seed=i) for i in range(len(SENTENCES))]
        source = "synthetic voiced speech (espeak-ng is not installed)"
    return [signals.scale_to_dbfs(pcm, -9.0) for pcm in made], source


def conversation(minutes: float, parts: list[npt.NDArray[np.int16]]) -> npt.NDArray[np.int16]:
    """A stereo call of alternating turns, some overlapping, over low hiss."""
    rng = np.random.default_rng(7)
    count = round(minutes * 60 * RATE)
    out = np.zeros((count, 2), dtype=np.float64)
    position, channel = RATE // 2, 0
    while True:
        pcm = parts[int(rng.integers(len(parts)))]
        end = position + len(pcm)
        if end > count:
            break
        out[position:end, channel] += pcm
        channel ^= 1
        if rng.random() < 0.2:
            position = end - int(rng.uniform(0.3, 1.2) * RATE)  # the next turn starts over this
        else:
            position = end + int(rng.uniform(0.3, 1.5) * RATE)
    noise = np.random.default_rng(8).standard_normal((count, 2)) * 30.0
    return np.clip(np.rint(out + noise), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class Result:
    stage: str
    detail: str
    call_s: float
    seconds: float

    @property
    def realtime(self) -> float:
        return self.call_s / self.seconds

    def row(self) -> list[str]:
        return [
            self.stage,
            f"{self.seconds * 1e3:,.1f}",
            f"{self.realtime:,.0f}",
            self.detail,
        ]


def measure(stereo: npt.NDArray[np.int16], repeat: int) -> list[Result]:
    call_s = len(stereo) / RATE
    channels = [np.ascontiguousarray(stereo[:, c]) for c in range(2)]
    results: list[Result] = []
    for frame_ms in (10, 20, 30):
        config = VadConfig(frame_ms=frame_ms)
        elapsed = best_time(
            lambda c=config: [frame_decisions(x, RATE, c) for x in channels], repeat
        )
        results.append(
            Result(
                "frame decisions", f"webrtcvad, {frame_ms} ms frames, 2 channels", call_s, elapsed
            )
        )
    config = VadConfig()
    decisions = [frame_decisions(x, RATE, config) for x in channels]
    elapsed = best_time(lambda: [segments_from_decisions(d, config) for d in decisions], repeat)
    results.append(Result("smoothing", "hangover and minimum length, 2 channels", call_s, elapsed))
    caller, callee = (segments_from_decisions(d, config) for d in decisions)
    elapsed = best_time(lambda: cues_from_segments(caller, callee, call_s), repeat)
    segments = len(caller) + len(callee)
    results.append(Result("cues", f"from {segments} segments", call_s, elapsed))
    data = encode_wav(stereo, RATE)
    elapsed = best_time(lambda: cues_from_wav(data), repeat)
    results.append(Result("VAD + cues", "cues_from_wav on the WAV's bytes, 30 ms", call_s, elapsed))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the call")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args(argv)
    if args.minutes < 0.5 or args.repeat < 1:
        parser.error("--minutes must be >= 0.5, --repeat >= 1")

    cpu = pin_to_one_cpu(args.cpu)
    with tempfile.TemporaryDirectory(prefix="bench-vad-") as directory:
        parts, source = utterances(Path(directory))
    stereo = conversation(args.minutes, parts)
    print_title("Voice activity and talk-time cues, x real time on one core")
    for line in machine_lines():
        print(line)
    print(
        f"pinned to CPU {cpu}; NumPy {np.__version__}; call {args.minutes:g} min stereo at "
        f"{RATE} Hz ({source})"
    )
    print(__doc__.split("Method\n------\n", 1)[1].rstrip())
    print()

    results = measure(stereo, args.repeat)
    print(format_table(["stage", "ms", "x real time", "what"], [r.row() for r in results]))
    cues = cues_from_wav(encode_wav(stereo, RATE))
    print()
    print(
        f"the call's cues: talk {cues.caller.talk_s:.0f} s caller, {cues.callee.talk_s:.0f} s "
        f"callee; overlap {cues.overlap_s:.0f} s; silence {100 * cues.silence_share:.0f} %; "
        f"{len(cues.interruptions)} interruptions"
    )
    whole = results[-1].realtime
    verdict = "MET" if whole >= TARGET_X else "NOT met"
    print(f"target {verdict}: VAD + cues at {whole:,.0f}x real time (target >= {TARGET_X:,.0f}x)")
    return 0 if whole >= TARGET_X else 1


if __name__ == "__main__":
    raise SystemExit(main())
