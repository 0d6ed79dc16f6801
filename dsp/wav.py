"""RIFF/WAVE files: reading the common encodings, writing 16-bit PCM.

The container is RIFF (Microsoft/IBM "Multimedia Programming Interface and
Data Specifications 1.0", 1991): a ``RIFF`` header naming the form ``WAVE``,
then chunks of a four-octet id, a little-endian 32-bit size and the data,
each padded to an even length (a chunk of odd size is followed by one pad
octet that its size does not count). A WAVE form holds a ``fmt `` chunk
(WAVEFORMATEX: format tag, channels, sample rate, byte rate, block align,
bits per sample) and a ``data`` chunk of interleaved frames; every other
chunk (``LIST``, ``fact``, ``cue ``, ...) is skipped.

Format tags read (RFC 2361 Appendix A lists the registry):

- 1 ``WAVE_FORMAT_PCM``: integer samples of 8 bits (unsigned, offset 128),
  16, 24 or 32 bits (signed two's complement, little-endian);
- 3 ``WAVE_FORMAT_IEEE_FLOAT``: 32- or 64-bit IEEE 754 floats;
- 6 ``WAVE_FORMAT_ALAW`` and 7 ``WAVE_FORMAT_MULAW``: 8-bit G.711 codes,
  decoded with :mod:`dsp.g711`;
- 0xFFFE ``WAVE_FORMAT_EXTENSIBLE``: one of the above named by the first two
  octets of its sub-format GUID (``xxxx0000-0000-0010-8000-00aa00389b71``).

Samples come back as an array of shape ``(frames, channels)``: int16 for
16-bit PCM, A-law and mu-law (exact values), float64 scaled to [-1.0, 1.0)
for every other encoding. :func:`to_float` brings either onto the float
scale. A ``data`` chunk whose size runs past the end of the file (a stream
written before its length was known) is read up to the last whole frame.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from dsp import g711

__all__ = [
    "FORMAT_ALAW",
    "FORMAT_EXTENSIBLE",
    "FORMAT_IEEE_FLOAT",
    "FORMAT_MULAW",
    "FORMAT_PCM",
    "WavError",
    "encode_wav",
    "read_wav",
    "to_float",
    "write_wav",
]

FORMAT_PCM: Final = 0x0001
FORMAT_IEEE_FLOAT: Final = 0x0003
FORMAT_ALAW: Final = 0x0006
FORMAT_MULAW: Final = 0x0007
FORMAT_EXTENSIBLE: Final = 0xFFFE

_KNOWN_UNSUPPORTED: Final = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0022: "TrueSpeech",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG",
    0x0055: "MPEG Layer-3",
    0x0064: "G.726 ADPCM",
    0x0065: "G.722 ADPCM",
    0x00FF: "AAC",
    0x1610: "HE-AAC",
    0x674F: "Ogg Vorbis",
    0xF1AC: "FLAC",
}
"""Names of common tags this module does not decode, for error messages."""

_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
"""Octets 2-15 of every WAVE_FORMAT_EXTENSIBLE sub-format GUID (KSDATAFORMAT_SUBTYPE_*)."""

_CHUNK_HEADER: Final = struct.Struct("<4sI")
_FMT_BASE: Final = struct.Struct("<HHIIHH")
_FMT_EXTENSIBLE: Final = struct.Struct("<HHI16s")
_PCM_WIDTHS: Final = (8, 16, 24, 32)
_FLOAT_WIDTHS: Final = (32, 64)

Samples = npt.NDArray[np.int16] | npt.NDArray[np.float64]
"""Decoded audio, shape (frames, channels): int16, or float64 on the scale [-1.0, 1.0)."""


class WavError(ValueError):
    """Bytes that are not a WAVE file this module reads, or audio it cannot write."""


def _tag_name(tag: int) -> str:
    name = _KNOWN_UNSUPPORTED.get(tag)
    return f"unsupported format tag {tag} ({name})" if name else f"unsupported format tag {tag}"


def _chunks(data: bytes) -> dict[bytes, memoryview]:
    """The first chunk of each id in a RIFF WAVE form; a truncated last chunk keeps its octets."""
    if len(data) < 12:
        raise WavError(f"not a RIFF file: {len(data)} octets is shorter than a RIFF header")
    if data[:4] != b"RIFF":
        if data[:4] in (b"RIFX", b"RF64", b"BW64"):
            kind = data[:4].decode("ascii")
            raise WavError(f"not a RIFF file: {kind} (big-endian or 64-bit WAVE) is not read")
        raise WavError("not a RIFF file: it does not start with 'RIFF'")
    if data[8:12] != b"WAVE":
        raise WavError(f"not a WAVE file: the RIFF form is {bytes(data[8:12])!r}, not 'WAVE'")
    view = memoryview(data)
    chunks: dict[bytes, memoryview] = {}
    offset = 12
    while offset + _CHUNK_HEADER.size <= len(data):
        chunk_id, size = _CHUNK_HEADER.unpack_from(data, offset)
        start = offset + _CHUNK_HEADER.size
        chunks.setdefault(chunk_id, view[start : start + size])
        offset = start + size + (size & 1)
    return chunks


def _format(fmt: memoryview) -> tuple[int, int, int, int, int]:
    """(format tag, channels, sample rate, block align, bits per sample) of a fmt chunk."""
    if len(fmt) < _FMT_BASE.size:
        raise WavError(f"fmt chunk of {len(fmt)} octets is shorter than the 16 it needs")
    tag, channels, rate, _byte_rate, block_align, bits = _FMT_BASE.unpack_from(fmt)
    if tag == FORMAT_EXTENSIBLE:
        if len(fmt) < _FMT_BASE.size + _FMT_EXTENSIBLE.size:
            raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk is too short for its sub-format")
        _cb_size, _valid_bits, _mask, guid = _FMT_EXTENSIBLE.unpack_from(fmt, _FMT_BASE.size)
        if guid[2:] != _GUID_TAIL:
            raise WavError(f"WAVE_FORMAT_EXTENSIBLE sub-format {guid.hex()} is not supported")
        tag = int.from_bytes(guid[:2], "little")
        if tag == FORMAT_EXTENSIBLE:
            raise WavError("WAVE_FORMAT_EXTENSIBLE names itself as its sub-format")
    if channels < 1:
        raise WavError("fmt chunk declares 0 channels")
    if rate < 1:
        raise WavError("fmt chunk declares a sample rate of 0")
    return tag, channels, rate, block_align, bits


def _check_width(tag: int, bits: int) -> None:
    if tag == FORMAT_PCM and bits not in _PCM_WIDTHS:
        raise WavError(f"PCM samples of {bits} bits are not supported (8, 16, 24 or 32)")
    if tag == FORMAT_IEEE_FLOAT and bits not in _FLOAT_WIDTHS:
        raise WavError(f"IEEE float samples of {bits} bits are not supported (32 or 64)")
    if tag in (FORMAT_ALAW, FORMAT_MULAW) and bits != 8:
        raise WavError(f"G.711 samples must be 8 bits, the fmt chunk says {bits}")
    if tag not in (FORMAT_PCM, FORMAT_IEEE_FLOAT, FORMAT_ALAW, FORMAT_MULAW):
        raise WavError(_tag_name(tag))


def _decode(raw: memoryview, tag: int, bits: int) -> Samples:
    """Samples of ``raw`` (whole frames), flat; int16 or float64 as the module docstring says."""
    if tag == FORMAT_ALAW:
        return g711.alaw_decode(np.frombuffer(raw, dtype=np.uint8))
    if tag == FORMAT_MULAW:
        return g711.ulaw_decode(np.frombuffer(raw, dtype=np.uint8))
    if tag == FORMAT_IEEE_FLOAT:
        return np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    if bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if bits == 8:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if bits == 24:
        octets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = octets[:, 0] | (octets[:, 1] << 8) | (octets[:, 2] << 16)
        value = (value << 8) >> 8  # sign-extend the 24-bit two's complement value
        return value.astype(np.float64) / float(1 << 23)
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)


def read_wav(data: bytes) -> tuple[Samples, int]:
    """Decode the bytes of a WAVE file into ``(samples, sample_rate)``.

    ``samples`` has shape ``(frames, channels)``; see the module docstring
    for its dtype. Raises :class:`WavError` saying what is wrong: not RIFF,
    not WAVE, no fmt or data chunk, an unsupported encoding, a malformed fmt.
    """
    chunks = _chunks(data)
    fmt = chunks.get(b"fmt ")
    if fmt is None:
        raise WavError("no fmt chunk")
    tag, channels, rate, block_align, bits = _format(fmt)
    _check_width(tag, bits)
    frame_size = channels * (bits // 8)
    if block_align != frame_size:
        raise WavError(
            f"block align {block_align} does not match {channels} channels of {bits} bits"
        )
    raw = chunks.get(b"data")
    if raw is None:
        raise WavError("no data chunk")
    frames = len(raw) // frame_size
    samples = _decode(raw[: frames * frame_size], tag, bits)
    return samples.reshape(frames, channels), rate


def to_float(samples: Samples) -> npt.NDArray[np.float64]:
    """``samples`` on the float scale: int16 divided by 32,768, floats as they are."""
    if samples.dtype == np.int16:
        return samples.astype(np.float64) / 32768.0
    return np.asarray(samples, dtype=np.float64)


def encode_wav(pcm: npt.NDArray[np.int16], sample_rate: int) -> bytes:
    """A 16-bit PCM WAVE file holding ``pcm`` of shape (frames,) or (frames, channels)."""
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise WavError("WAVE output takes an int16 array")
    if pcm.ndim not in (1, 2) or (pcm.ndim == 2 and pcm.shape[1] < 1):
        raise WavError(f"WAVE output takes shape (frames,) or (frames, channels), got {pcm.shape}")
    if not isinstance(sample_rate, int) or not 0 < sample_rate <= 0xFFFFFFFF:
        raise WavError(f"sample rate must be a positive integer, got {sample_rate!r}")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    body = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
    block_align = 2 * channels
    fmt = _FMT_BASE.pack(
        FORMAT_PCM, channels, sample_rate, sample_rate * block_align, block_align, 16
    )
    riff_size = 4 + _CHUNK_HEADER.size + len(fmt) + _CHUNK_HEADER.size + len(body)
    if riff_size > 0xFFFFFFFF:
        raise WavError("audio too long for a RIFF file (4 GiB)")
    return b"".join(
        (
            _CHUNK_HEADER.pack(b"RIFF", riff_size),
            b"WAVE",
            _CHUNK_HEADER.pack(b"fmt ", len(fmt)),
            fmt,
            _CHUNK_HEADER.pack(b"data", len(body)),
            body,
        )
    )


def write_wav(
    target: str | os.PathLike[str] | BinaryIO, pcm: npt.NDArray[np.int16], sample_rate: int
) -> None:
    """Write ``pcm`` as a 16-bit PCM WAVE file to a path or a binary file object."""
    data = encode_wav(pcm, sample_rate)
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as file:
            file.write(data)
    else:
        target.write(data)
