"""G.711 mu-law and A-law companding (ITU-T G.711, 11/1988) by table lookup.

Decoding is one 256-entry table per law, encoding one 65,536-entry table per
law indexed by the 16-bit sample's bit pattern. Both are built once, at
import, by running G.711's segment algorithm over every code and every
sample with NumPy:

- A-law (G.711 Tables 1a/1b): 13-bit magnitudes in 8 segments; segment 0
  and 1 share a step of 2 (in 13-bit units), every further segment doubles
  it. Even bits of the code are inverted on the line (XOR 0x55); the sign
  bit is 1 for positive samples.
- mu-law (G.711 Tables 2a/2b): 14-bit magnitudes biased by 33, 8 segments
  of 16 steps each, step 2 in segment 0 doubling per segment. All bits of
  the code are inverted on the line (XOR 0xFF); the sign bit is 1 for
  positive samples.

Linear samples are 16-bit: the 13-bit (A-law) or 14-bit (mu-law) G.711
values scaled to the int16 range, as the classic Sun reference coder (and
Python's former ``audioop``) does. Encoding truncates the 16-bit sample to
13/14 bits first (an arithmetic shift), which puts G.711's decision values
where the tables put them. Decoded values are the tables' output values
(the middle of each quantisation interval).

RTP payload types 0 (PCMU, mu-law) and 8 (PCMA, A-law) are the static
assignments of RFC 3551 section 6 (Table 4); one octet is one sample at
8,000 Hz (RFC 3551 section 4.5.14).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE_BYTE",
    "PAYLOAD_TYPE_PCMA",
    "PAYLOAD_TYPE_PCMU",
    "SAMPLE_RATE",
    "ULAW_SILENCE_BYTE",
    "G711Error",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "silence_payload",
    "ulaw_decode",
    "ulaw_encode",
]

SAMPLE_RATE: Final = 8000
"""G.711's sampling rate in Hz (RFC 3551 section 4.5.14: PCMU/PCMA clock rate 8,000)."""

PAYLOAD_TYPE_PCMU: Final = 0
"""Static RTP payload type of G.711 mu-law (RFC 3551 section 6, Table 4)."""

PAYLOAD_TYPE_PCMA: Final = 8
"""Static RTP payload type of G.711 A-law (RFC 3551 section 6, Table 4)."""

ULAW_SILENCE_BYTE: Final = 0xFF
"""The mu-law code of a zero sample (positive zero; all bits inverted on the line)."""

ALAW_SILENCE_BYTE: Final = 0xD5
"""The A-law code of the smallest positive sample (decodes to +8), A-law's idle code."""

_ULAW_BIAS: Final = 0x84  # 33 in 14-bit units, scaled to 16 bits (G.711 Table 2a note)
_ULAW_CLIP: Final = 8159  # largest 14-bit magnitude mu-law represents (G.711 Table 2a)


class G711Error(ValueError):
    """Input that is not G.711 codes or 16-bit linear samples (the message says why)."""


def _build_ulaw_decode_table() -> npt.NDArray[np.int16]:
    """Every mu-law code's output value (G.711 Table 2a/2b), scaled to 16 bits."""
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(inverted & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode_table() -> npt.NDArray[np.int16]:
    """Every A-law code's output value (G.711 Table 1a/1b), scaled to 16 bits."""
    toggled = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (toggled >> 4) & 0x07
    magnitude = ((toggled & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(toggled & 0x80, magnitude, -magnitude).astype(np.int16)


def _every_int16_by_bit_pattern() -> npt.NDArray[np.int32]:
    """The 65,536 int16 values, ordered so entry ``i`` is the sample whose bits read ``i``."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _segment(magnitude: npt.NDArray[np.int32], first_end: int) -> npt.NDArray[np.int32]:
    """G.711 segment number of ``magnitude``: segment ``s`` ends at ``first_end << s``.

    Values past the last segment get 8 (the caller clips them to the largest code).
    """
    ends = first_end * (1 << np.arange(8, dtype=np.int32)) + ((1 << np.arange(8)) - 1)
    return np.searchsorted(ends, magnitude, side="left").astype(np.int32)


def _build_ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """The mu-law code of every int16 sample, indexed by the sample's bit pattern."""
    sample14 = _every_int16_by_bit_pattern() >> 2
    negative = sample14 < 0
    magnitude = np.minimum(np.where(negative, -sample14, sample14), _ULAW_CLIP)
    biased = magnitude + (_ULAW_BIAS >> 2)
    segment = _segment(biased, 0x3F)  # segment ends 0x3F, 0x7F, ..., 0x1FFF
    step_bits = (biased >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | step_bits)
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode_table() -> npt.NDArray[np.uint8]:
    """The A-law code of every int16 sample, indexed by the sample's bit pattern."""
    sample13 = _every_int16_by_bit_pattern() >> 3
    negative = sample13 < 0
    magnitude = np.where(negative, -sample13 - 1, sample13)
    segment = _segment(magnitude, 0x1F)  # segment ends 0x1F, 0x3F, ..., 0xFFF
    shift = np.where(segment < 2, 1, segment)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> shift) & 0x0F))
    mask = np.where(negative, 0x55, 0xD5)
    return (code ^ mask).astype(np.uint8)


_ULAW_TO_LINEAR: Final = _build_ulaw_decode_table()
_ALAW_TO_LINEAR: Final = _build_alaw_decode_table()
_LINEAR_TO_ULAW: Final = _build_ulaw_encode_table()
_LINEAR_TO_ALAW: Final = _build_alaw_encode_table()
for _table in (_ULAW_TO_LINEAR, _ALAW_TO_LINEAR, _LINEAR_TO_ULAW, _LINEAR_TO_ALAW):
    _table.setflags(write=False)


def _codes(codes: npt.NDArray[np.uint8] | bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    if not isinstance(codes, np.ndarray):
        raise G711Error(f"G.711 codes must be bytes or a uint8 array, got {type(codes).__name__}")
    if codes.dtype != np.uint8:
        raise G711Error(f"G.711 codes must be a uint8 array, got dtype {codes.dtype}")
    return codes


def _samples(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if not isinstance(pcm, np.ndarray):
        raise G711Error(f"linear samples must be an int16 array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise G711Error(f"linear samples must be an int16 array, got dtype {pcm.dtype}")
    return pcm.view(np.uint16)


def ulaw_decode(codes: npt.NDArray[np.uint8] | bytes | bytearray) -> npt.NDArray[np.int16]:
    """16-bit linear samples of mu-law ``codes`` (G.711 Table 2); same shape as the input."""
    return _ULAW_TO_LINEAR.take(_codes(codes))


def alaw_decode(codes: npt.NDArray[np.uint8] | bytes | bytearray) -> npt.NDArray[np.int16]:
    """16-bit linear samples of A-law ``codes`` (G.711 Table 1); same shape as the input."""
    return _ALAW_TO_LINEAR.take(_codes(codes))


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """mu-law codes of int16 samples (G.711 Table 2, truncating); same shape as the input."""
    return _LINEAR_TO_ULAW.take(_samples(pcm))


def alaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """A-law codes of int16 samples (G.711 Table 1, truncating); same shape as the input."""
    return _LINEAR_TO_ALAW.take(_samples(pcm))


def _law(payload_type: int) -> str:
    if payload_type == PAYLOAD_TYPE_PCMU:
        return "ulaw"
    if payload_type == PAYLOAD_TYPE_PCMA:
        return "alaw"
    raise G711Error(
        f"RTP payload type {payload_type} is not G.711 "
        f"(PCMU is {PAYLOAD_TYPE_PCMU}, PCMA is {PAYLOAD_TYPE_PCMA})"
    )


def decode(payload: bytes | bytearray | memoryview, payload_type: int) -> npt.NDArray[np.int16]:
    """Linear samples of an RTP payload of static type 0 (PCMU) or 8 (PCMA) (RFC 3551 §4.5.14).

    Raises G711Error for any other payload type.
    """
    table = _ULAW_TO_LINEAR if _law(payload_type) == "ulaw" else _ALAW_TO_LINEAR
    return table.take(_codes(payload))


def encode(pcm: npt.NDArray[np.int16], payload_type: int) -> bytes:
    """The RTP payload of type 0 (PCMU) or 8 (PCMA) carrying the int16 samples ``pcm``.

    Raises G711Error for any other payload type or for samples that are not int16.
    """
    table = _LINEAR_TO_ULAW if _law(payload_type) == "ulaw" else _LINEAR_TO_ALAW
    return table.take(_samples(pcm)).tobytes()


def silence_payload(payload_type: int, samples: int) -> bytes:
    """``samples`` octets of G.711 silence for payload type 0 (0xFF) or 8 (0xD5)."""
    if samples < 0:
        raise G711Error(f"a payload cannot hold {samples} samples")
    fill = ULAW_SILENCE_BYTE if _law(payload_type) == "ulaw" else ALAW_SILENCE_BYTE
    return bytes([fill]) * samples
