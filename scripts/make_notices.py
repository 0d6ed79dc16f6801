#!/usr/bin/env python3
"""Write the default recording notices, config/notices/<lang>/<kind>.wav, with espeak-ng.

    python scripts/make_notices.py                     all languages into config/notices
    python scripts/make_notices.py --out DIR --lang de  one language into DIR

Each notice is spoken by espeak-ng (Debian package espeak-ng) into a WAV
file of its own rate, then read with dsp.wav, mixed to mono, resampled to
8,000 Hz (G.711's rate, RFC 3551 4.5.14) with dsp.resample, its peak set to
-3 dBFS, and written as 16-bit PCM with dsp.wav. Any WAV file can replace
the result; the gateway converts whatever it is given at start-up.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsp.resample import resample  # noqa: E402
from dsp.wav import read_wav, to_float, write_wav  # noqa: E402

OUT_DIR: Final = ROOT / "config" / "notices"
SAMPLE_RATE: Final = 8000
PEAK_DBFS: Final = -3.0
WORDS_PER_MINUTE: Final = 170

VOICES: Final = {"en": "en-us", "de": "de"}
"""espeak-ng voice of each language."""

_NOTICE_EN: Final = (
    "This call may be recorded for quality and training purposes. "
    "By staying on the line you agree to the recording."
)
_NOTICE_DE: Final = (
    "Dieses Gespräch kann zur Qualitätssicherung und zu Schulungszwecken aufgezeichnet werden. "
    "Wenn Sie in der Leitung bleiben, stimmen Sie der Aufzeichnung zu."
)

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "notice": _NOTICE_EN,
        "opt_out": _NOTICE_EN + " If you do not want this call recorded, press 9 now.",
        "opt_in": (
            "This call can be recorded for quality and training. "
            "To agree to the recording, press 1. "
            "If you do not press 1, the call will not be recorded."
        ),
    },
    "de": {
        "notice": _NOTICE_DE,
        "opt_out": (
            _NOTICE_DE + " Wenn Sie nicht möchten, dass dieses Gespräch aufgezeichnet wird,"
            " drücken Sie jetzt die 9."
        ),
        "opt_in": (
            "Dieses Gespräch kann zur Qualitätssicherung und zu Schulungszwecken "
            "aufgezeichnet werden. Um der Aufzeichnung zuzustimmen, drücken Sie die 1. "
            "Wenn Sie nicht die 1 drücken, wird das Gespräch nicht aufgezeichnet."
        ),
    },
}
"""The notice texts by language and kind (notice, opt_out, opt_in)."""


def speak(text: str, voice: str, espeak: str) -> tuple[npt.NDArray[np.float64], int]:
    """``text`` spoken by espeak-ng's ``voice``: mono float samples and their rate."""
    with tempfile.TemporaryDirectory() as scratch:
        wav_path = Path(scratch) / "speech.wav"
        subprocess.run(
            [espeak, "-v", voice, "-s", str(WORDS_PER_MINUTE), "-w", str(wav_path), "--", text],
            check=True,
            capture_output=True,
        )
        samples, rate = read_wav(wav_path.read_bytes())
    return to_float(samples).mean(axis=1), rate


def telephone_pcm(
    mono: npt.NDArray[np.float64], rate: int, peak_dbfs: float = PEAK_DBFS
) -> npt.NDArray[np.int16]:
    """Float samples at ``rate`` as 8 kHz int16 with their peak at ``peak_dbfs``."""
    at_8k = resample(mono, rate, SAMPLE_RATE)
    peak = float(np.max(np.abs(at_8k))) if len(at_8k) else 0.0
    if peak == 0.0:
        raise ValueError("the speech is silent: nothing to normalise")
    target = 32767.0 * 10.0 ** (peak_dbfs / 20.0)
    return np.rint(at_8k * (target / peak)).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory to write into")
    parser.add_argument(
        "--lang",
        action="append",
        choices=sorted(TEXTS),
        help="language to write (repeatable; default: all)",
    )
    parser.add_argument("--espeak", default="espeak-ng", help="the espeak-ng program")
    args = parser.parse_args(argv)
    espeak = shutil.which(args.espeak)
    if espeak is None:
        print(f"{args.espeak} not found: install espeak-ng", file=sys.stderr)
        return 1
    for lang in args.lang or sorted(TEXTS):
        for kind, text in TEXTS[lang].items():
            mono, rate = speak(text, VOICES[lang], espeak)
            pcm = telephone_pcm(mono, rate)
            path = args.out / lang / f"{kind}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, pcm, SAMPLE_RATE)
            print(f"{path}: {len(pcm) / SAMPLE_RATE:.2f} s, {VOICES[lang]} voice from {rate} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
