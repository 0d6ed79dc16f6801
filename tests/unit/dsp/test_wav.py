"""WAVE reading and writing, checked against the standard library's ``wave`` module
and against files assembled chunk by chunk here."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dsp import g711
from dsp.wav import (
    FORMAT_ALAW,
    FORMAT_EXTENSIBLE,
    FORMAT_IEEE_FLOAT,
    FORMAT_MULAW,
    FORMAT_PCM,
    WavError,
    encode_wav,
    read_wav,
    to_float,
    write_wav,
)

GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk with its pad octet when the body is odd."""
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int, extra: bytes | None = None) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extra is not None:
        body += struct.pack("<H", len(extra)) + extra
    return body


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def stdlib_wav(frames: bytes, channels: int, width: int, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return out.getvalue()


def test_16_bit_stereo_from_the_standard_library() -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, size=(500, 2)).astype(np.int16)
    samples, rate = read_wav(stdlib_wav(pcm.astype("<i2").tobytes(), 2, 2, 44100))
    assert rate == 44100
    assert samples.dtype == np.int16
    assert np.array_equal(samples, pcm)


def test_8_bit_pcm_is_unsigned_around_128() -> None:
    data = stdlib_wav(bytes([0, 64, 128, 192, 255]), 1, 1, 8000)
    samples, _ = read_wav(data)
    assert samples.dtype == np.float64
    assert samples[:, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 127 / 128]


def test_24_bit_pcm_sign_extends() -> None:
    values = [0, 1, -1, (1 << 23) - 1, -(1 << 23), 123456, -654321]
    frames = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    samples, rate = read_wav(stdlib_wav(frames, 1, 3, 48000))
    assert rate == 48000
    assert np.array_equal(samples[:, 0] * (1 << 23), np.array(values, dtype=np.float64))


def test_32_bit_pcm() -> None:
    values = np.array([0, 1 << 30, -(1 << 31), (1 << 31) - 1], dtype="<i4")
    samples, _ = read_wav(stdlib_wav(values.tobytes(), 1, 4, 16000))
    assert np.array_equal(samples[:, 0], values / float(1 << 31))


@pytest.mark.parametrize(("bits", "dtype"), [(32, "<f4"), (64, "<f8")])
def test_ieee_float(bits: int, dtype: str) -> None:
    values = np.array([[0.0, -0.5], [0.25, 1.0], [-1.0, 0.125]], dtype=dtype)
    data = riff(
        chunk(b"fmt ", fmt_body(FORMAT_IEEE_FLOAT, 2, 22050, bits, extra=b"")),
        chunk(b"fact", struct.pack("<I", 3)),
        chunk(b"data", values.tobytes()),
    )
    samples, rate = read_wav(data)
    assert rate == 22050
    assert samples.dtype == np.float64
    assert np.array_equal(samples, values.astype(np.float64))


@pytest.mark.parametrize(
    ("tag", "encode", "decode"),
    [
        (FORMAT_MULAW, g711.ulaw_encode, g711.ulaw_decode),
        (FORMAT_ALAW, g711.alaw_encode, g711.alaw_decode),
    ],
)
def test_g711_codes_decode_to_their_table_values(
    tag: int,
    encode: Callable[[npt.NDArray[np.int16]], npt.NDArray[np.uint8]],
    decode: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.int16]],
) -> None:
    codes = np.arange(256, dtype=np.uint8)
    data = riff(
        chunk(b"fmt ", fmt_body(tag, 1, 8000, 8, extra=b"")), chunk(b"data", codes.tobytes())
    )
    samples, rate = read_wav(data)
    assert rate == 8000
    assert samples.dtype == np.int16
    assert np.array_equal(samples[:, 0], decode(codes))
    pcm = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    again, _ = read_wav(
        riff(chunk(b"fmt ", fmt_body(tag, 1, 8000, 8)), chunk(b"data", encode(pcm).tobytes()))
    )
    assert np.array_equal(again[:, 0], decode(encode(pcm)))


@pytest.mark.parametrize(
    ("subformat", "bits", "payload", "expected"),
    [
        (FORMAT_PCM, 16, np.array([1, -2, 300], dtype="<i2").tobytes(), [1, -2, 300]),
        (FORMAT_IEEE_FLOAT, 32, np.array([0.5, -0.25, 0], dtype="<f4").tobytes(), [0.5, -0.25, 0]),
        (FORMAT_MULAW, 8, bytes([0xFF, 0x7F, 0x00]), g711.ulaw_decode(bytes([0xFF, 0x7F, 0]))),
    ],
)
def test_extensible_format_uses_its_sub_format(
    subformat: int, bits: int, payload: bytes, expected: list[float]
) -> None:
    guid = struct.pack("<H", subformat) + GUID_TAIL
    extension = struct.pack("<HI", bits, 0x4) + guid  # valid bits, channel mask (front centre)
    data = riff(
        chunk(b"fmt ", fmt_body(FORMAT_EXTENSIBLE, 1, 8000, bits, extra=extension)),
        chunk(b"data", payload),
    )
    samples, rate = read_wav(data)
    assert rate == 8000
    assert samples.shape == (3, 1)
    assert np.array_equal(samples[:, 0], np.asarray(expected, dtype=samples.dtype))


def test_odd_sized_unknown_chunks_are_skipped_with_their_pad_octet() -> None:
    pcm = np.array([5, -6, 7], dtype="<i2")
    data = riff(
        chunk(b"LIST", b"INFOabc"),  # 7 octets + pad
        chunk(b"fmt ", fmt_body(FORMAT_PCM, 1, 8000, 16)),
        chunk(b"junk", b"x"),  # 1 octet + pad
        chunk(b"data", pcm.tobytes()),
        chunk(b"cue ", b"12345"),
    )
    samples, _ = read_wav(data)
    assert samples[:, 0].tolist() == [5, -6, 7]


def test_data_chunk_longer_than_the_file_reads_whole_frames() -> None:
    pcm = np.array([[1, 2], [3, 4], [5, 6]], dtype="<i2").tobytes()
    header = b"data" + struct.pack("<I", 0xFFFFFFFF)  # a stream written before its end was known
    data = riff(chunk(b"fmt ", fmt_body(FORMAT_PCM, 2, 8000, 16))) + header + pcm + b"\x07"
    samples, _ = read_wav(data)
    assert samples.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a RIFF file"),
        (b"ID3\x03" + bytes(100), "not a RIFF file"),
        (b"RIFX" + bytes(100), "RIFX"),
        (b"RIFF\x04\x00\x00\x00AVI LIST", "not a WAVE file"),
        (riff(chunk(b"data", b"\x00\x00")), "no fmt chunk"),
        (riff(chunk(b"fmt ", fmt_body(FORMAT_PCM, 1, 8000, 16))), "no data chunk"),
        (riff(chunk(b"fmt ", b"\x01\x00")), "shorter than the 16"),
        (
            riff(chunk(b"fmt ", fmt_body(0x55, 1, 8000, 0)), chunk(b"data", b"")),
            "unsupported format tag 85 (MPEG Layer-3)",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(0x1234, 1, 8000, 16)), chunk(b"data", b"")),
            "unsupported format tag 4660",
        ),
        (riff(chunk(b"fmt ", fmt_body(FORMAT_PCM, 1, 8000, 12)), chunk(b"data", b"")), "12 bits"),
        (
            riff(chunk(b"fmt ", fmt_body(FORMAT_IEEE_FLOAT, 1, 8000, 16)), chunk(b"data", b"")),
            "IEEE float samples of 16 bits",
        ),
        (riff(chunk(b"fmt ", fmt_body(FORMAT_MULAW, 1, 8000, 16)), chunk(b"data", b"")), "8 bits"),
        (
            riff(chunk(b"fmt ", fmt_body(FORMAT_PCM, 0, 8000, 16)), chunk(b"data", b"")),
            "0 channels",
        ),
        (riff(chunk(b"fmt ", fmt_body(FORMAT_PCM, 1, 0, 16)), chunk(b"data", b"")), "sample rate"),
        (
            riff(
                chunk(b"fmt ", struct.pack("<HHIIHH", FORMAT_PCM, 2, 8000, 32000, 2, 16)),
                chunk(b"data", b""),
            ),
            "block align 2",
        ),
        (
            riff(
                chunk(
                    b"fmt ",
                    fmt_body(
                        FORMAT_EXTENSIBLE, 1, 8000, 16, extra=struct.pack("<HI", 16, 4) + bytes(16)
                    ),
                ),
                chunk(b"data", b""),
            ),
            "sub-format",
        ),
        (riff(chunk(b"fmt ", fmt_body(FORMAT_EXTENSIBLE, 1, 8000, 16, extra=b""))), "too short"),
    ],
)
def test_errors_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_wav(data)


def test_wav_error_is_a_value_error() -> None:
    assert issubclass(WavError, ValueError)


def test_written_file_reads_back_in_the_standard_library(tmp_path: Path) -> None:
    pcm = np.array([[0, 1], [-32768, 32767], [100, -100]], dtype=np.int16)
    path = tmp_path / "out.wav"
    write_wav(path, pcm, 16000)
    with wave.open(str(path), "rb") as reader:
        assert reader.getnchannels() == 2
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 16000
        frames = reader.readframes(reader.getnframes())
    assert np.array_equal(np.frombuffer(frames, dtype="<i2").reshape(-1, 2), pcm)


def test_write_to_a_file_object_and_mono_shape() -> None:
    pcm = np.array([3, -3, 9], dtype=np.int16)
    out = io.BytesIO()
    write_wav(out, pcm, 8000)
    assert out.getvalue() == encode_wav(pcm, 8000)
    samples, rate = read_wav(out.getvalue())
    assert (rate, samples.shape) == (8000, (3, 1))
    assert samples[:, 0].tolist() == [3, -3, 9]


@pytest.mark.parametrize(
    ("pcm", "rate", "message"),
    [
        (np.zeros(4, dtype=np.float64), 8000, "int16"),
        (np.zeros((2, 2, 2), dtype=np.int16), 8000, "shape"),
        (np.zeros(4, dtype=np.int16), 0, "sample rate"),
        (np.zeros(4, dtype=np.int16), 8000.0, "sample rate"),
    ],
)
def test_writer_refuses_what_it_cannot_write(pcm: np.ndarray, rate: int, message: str) -> None:
    with pytest.raises(WavError, match=message):
        encode_wav(pcm, rate)


@settings(max_examples=50, deadline=None)
@given(
    pcm=arrays(np.int16, st.tuples(st.integers(0, 300), st.integers(1, 4))),
    rate=st.integers(1, 192000),
)
def test_round_trip(pcm: np.ndarray, rate: int) -> None:
    samples, read_rate = read_wav(encode_wav(pcm, rate))
    assert read_rate == rate
    assert samples.dtype == np.int16
    assert np.array_equal(samples, pcm)


def test_to_float_scales_int16_and_keeps_floats() -> None:
    assert to_float(np.array([[-32768], [16384]], dtype=np.int16)).tolist() == [[-1.0], [0.5]]
    floats = np.array([[0.3]])
    assert to_float(floats).tolist() == [[0.3]]
