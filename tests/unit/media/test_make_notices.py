"""scripts/make_notices.py: espeak-ng speech turned into 8 kHz notices at -3 dBFS."""

from __future__ import annotations

import importlib.util
import math
import shutil
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gateway.media.notice import load_notice

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "make_notices.py"


@pytest.fixture(scope="module")
def make_notices() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_notices", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_telephone_pcm_resamples_and_sets_the_peak(make_notices: ModuleType) -> None:
    rate = 22050
    t = np.arange(rate) / rate
    speech_like = 0.1 * np.sin(2 * np.pi * 500 * t) + 0.05 * np.sin(2 * np.pi * 1500 * t)
    pcm = make_notices.telephone_pcm(speech_like, rate)
    assert pcm.dtype == np.int16
    assert len(pcm) == 8000
    peak_dbfs = 20 * math.log10(int(np.abs(pcm.astype(np.int32)).max()) / 32767)
    assert peak_dbfs == pytest.approx(-3.0, abs=0.01)


def test_silence_is_refused(make_notices: ModuleType) -> None:
    with pytest.raises(ValueError, match="silent"):
        make_notices.telephone_pcm(np.zeros(1000), 22050)


def test_writes_one_language(
    make_notices: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shutil.which("espeak-ng"), "espeak-ng is needed (Debian package espeak-ng)"
    assert make_notices.main(["--out", str(tmp_path), "--lang", "en"]) == 0
    written = sorted(path.name for path in (tmp_path / "en").iterdir())
    assert written == ["notice.wav", "opt_in.wav", "opt_out.wav"]
    assert not (tmp_path / "de").exists()
    output = capsys.readouterr().out
    for name in written:
        path = tmp_path / "en" / name
        assert str(path) in output
        with wave.open(str(path), "rb") as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
                8000,
                1,
                2,
            )
        assert 3.0 < load_notice(path).duration_s < 15.0


def test_committed_notices_are_what_the_script_makes(
    make_notices: ModuleType, tmp_path: Path
) -> None:
    """Made again, the German notices last as long as the committed ones (within 0.5 s,
    room for another espeak-ng release): the committed files are these texts."""
    make_notices.main(["--out", str(tmp_path), "--lang", "de"])
    for kind in ("notice", "opt_out", "opt_in"):
        made = load_notice(tmp_path / "de" / f"{kind}.wav")
        committed = load_notice(make_notices.OUT_DIR / "de" / f"{kind}.wav")
        assert made.duration_s == pytest.approx(committed.duration_s, abs=0.5)
