"""Loading notice audio: the committed default notices and WAV files made here."""

from __future__ import annotations

import hashlib
import math
import re
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from dsp import g711
from dsp.wav import write_wav
from gateway.media.notice import MAX_NOTICE_SECONDS, NoticeAudio, NoticeError, load_notice

NOTICES = Path(__file__).resolve().parents[3] / "config" / "notices"
DEFAULT_NOTICES = [
    NOTICES / lang / f"{kind}.wav"
    for lang in ("en", "de")
    for kind in ("notice", "opt_out", "opt_in")
]


def wav_file(path: Path, tag: int, channels: int, rate: int, bits: int, frames: bytes) -> Path:
    """A WAVE file with the given format tag, written chunk by chunk."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * block, block, bits, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames + b"\x00" * (len(frames) % 2)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("path", DEFAULT_NOTICES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_default_notices_load(path: Path) -> None:
    with wave.open(str(path), "rb") as reader:  # stored as the player sends it: 8 kHz mono 16-bit
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (8000, 1, 2)
    notice = load_notice(path)
    assert notice.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert notice.source == str(path)
    assert notice.pcm.dtype == np.int16
    assert notice.pcm.ndim == 1
    assert 3.0 < notice.duration_s < 15.0
    peak_dbfs = 20 * math.log10(int(np.abs(notice.pcm.astype(np.int32)).max()) / 32767)
    assert -3.5 < peak_dbfs < -2.5
    assert float(np.sqrt(np.mean(notice.pcm.astype(np.float64) ** 2))) > 1000  # speech, not silence


def test_opt_out_notice_is_the_notice_and_more() -> None:
    for lang in ("en", "de"):
        notice = load_notice(NOTICES / lang / "notice.wav")
        opt_out = load_notice(NOTICES / lang / "opt_out.wav")
        assert opt_out.duration_s > notice.duration_s + 1.5
        assert opt_out.sha256 != notice.sha256


def test_8khz_int16_file_loads_unchanged(tmp_path: Path) -> None:
    pcm = np.random.default_rng(3).integers(-32768, 32768, size=4000).astype(np.int16)
    path = tmp_path / "exact.wav"
    write_wav(path, pcm, 8000)
    notice = load_notice(path)
    assert np.array_equal(notice.pcm, pcm)
    assert notice.duration_s == 0.5


def test_float_stereo_at_44_1_khz_is_mixed_and_resampled(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(rate) / rate  # one second
    left = 0.6 * np.sin(2 * np.pi * 1000 * t)
    right = 0.2 * np.sin(2 * np.pi * 1000 * t)
    frames = np.stack([left, right], axis=1).astype("<f4").tobytes()
    path = wav_file(tmp_path / "stereo.wav", 3, 2, rate, 32, frames)
    notice = load_notice(path)
    assert len(notice.pcm) == 8000
    assert notice.duration_s == 1.0
    middle = notice.pcm[2000:6000].astype(np.float64)
    expected = 0.4 * 32768 * np.sin(2 * np.pi * 1000 * np.arange(2000, 6000) / 8000)
    assert np.max(np.abs(middle - expected)) < 0.01 * 32768


def test_full_scale_float_is_clipped_not_wrapped(tmp_path: Path) -> None:
    frames = np.array([1.5, -1.5, 1.0, -1.0] * 100, dtype="<f4").tobytes()
    notice = load_notice(wav_file(tmp_path / "loud.wav", 3, 1, 8000, 32, frames))
    assert notice.pcm[:4].tolist() == [32767, -32768, 32767, -32768]


def test_mu_law_file(tmp_path: Path) -> None:
    codes = np.random.default_rng(5).integers(0, 256, size=8000).astype(np.uint8)
    path = wav_file(tmp_path / "ulaw.wav", 7, 1, 8000, 8, codes.tobytes())
    notice = load_notice(path)
    assert np.array_equal(notice.pcm, g711.ulaw_decode(codes))
    assert notice.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    with pytest.raises(NoticeError, match=re.escape(f"{path}: no such file")):
        load_notice(path)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(NoticeError, match="cannot read"):
        load_notice(tmp_path)


def test_not_a_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "notice.txt"
    path.write_text("This call may be recorded.\n")
    with pytest.raises(NoticeError, match=re.escape(f"{path}: unreadable WAV: not a RIFF file")):
        load_notice(path)


def test_empty_audio(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16), 8000)
    with pytest.raises(NoticeError, match="empty audio"):
        load_notice(path)


def test_longer_than_the_limit(tmp_path: Path) -> None:
    rate = 1000  # a low rate keeps the file small
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(int((MAX_NOTICE_SECONDS + 1) * rate), dtype=np.int16), rate)
    with pytest.raises(NoticeError, match=re.escape("121.0 s is longer than 120 s")):
        load_notice(path)


def test_notice_error_is_a_value_error_and_audio_is_frozen() -> None:
    assert issubclass(NoticeError, ValueError)
    notice = load_notice(DEFAULT_NOTICES[0])
    with pytest.raises(AttributeError):
        notice.sha256 = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        notice.pcm[0] = 1
    assert isinstance(notice, NoticeAudio)
