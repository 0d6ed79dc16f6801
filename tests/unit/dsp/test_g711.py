"""G.711 companding: bit-exact against ``audioop`` for every code and every sample."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp import g711

EVERY_CODE = bytes(range(256))
EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int16)
LAWS = ["ulaw", "alaw"]


def decoder(law: str) -> Callable[..., np.ndarray]:
    return g711.ulaw_decode if law == "ulaw" else g711.alaw_decode


def encoder(law: str) -> Callable[..., np.ndarray]:
    return g711.ulaw_encode if law == "ulaw" else g711.alaw_encode


def levels(law: str) -> np.ndarray:
    """The law's reconstruction levels, sorted and distinct."""
    return np.unique(decoder(law)(EVERY_CODE).astype(np.int32))


# ---------------------------------------------------------------- against audioop


@pytest.mark.parametrize("law", LAWS)
def test_decoding_every_code_matches_audioop(audioop: ModuleType, law: str) -> None:
    reference = getattr(audioop, f"{law}2lin")(EVERY_CODE, 2)
    expected = np.frombuffer(reference, dtype="<i2")
    assert np.array_equal(decoder(law)(EVERY_CODE), expected)


@pytest.mark.parametrize("law", LAWS)
def test_encoding_every_sample_matches_audioop(audioop: ModuleType, law: str) -> None:
    reference = getattr(audioop, f"lin2{law}")(EVERY_SAMPLE.astype("<i2").tobytes(), 2)
    expected = np.frombuffer(reference, dtype=np.uint8)
    assert np.array_equal(encoder(law)(EVERY_SAMPLE), expected)


@pytest.mark.parametrize(("payload_type", "law"), [(0, "ulaw"), (8, "alaw")])
def test_payload_helpers_match_audioop(audioop: ModuleType, payload_type: int, law: str) -> None:
    payload = bytes(np.random.default_rng(payload_type).integers(0, 256, 160, dtype=np.uint8))
    expected = np.frombuffer(getattr(audioop, f"{law}2lin")(payload, 2), dtype="<i2")
    assert np.array_equal(g711.decode(payload, payload_type), expected)
    pcm = expected.astype(np.int16)
    assert g711.encode(pcm, payload_type) == getattr(audioop, f"lin2{law}")(pcm.tobytes(), 2)


# ---------------------------------------------------------------- G.711 tables


def test_mu_law_extremes_are_the_g711_table_values() -> None:
    # G.711 Table 2: the largest decoder output is 8031 (14-bit), 32124 in 16 bits;
    # code 0x80 is the largest positive, 0x00 the largest negative, 0xFF and 0x7F zero
    decoded = g711.ulaw_decode(bytes([0x80, 0x00, 0xFF, 0x7F, 0xFE]))
    assert decoded.tolist() == [8031 * 4, -8031 * 4, 0, 0, 2 * 4]


def test_a_law_extremes_are_the_g711_table_values() -> None:
    # G.711 Table 1: the largest decoder output is 4032 (13-bit), 32256 in 16 bits; the
    # smallest magnitude is 1 (8 in 16 bits); even bits are inverted on the line
    decoded = g711.alaw_decode(bytes([0xAA, 0x2A, 0xD5, 0x55]))
    assert decoded.tolist() == [4032 * 8, -4032 * 8, 8, -8]


def test_silence_bytes_are_the_codes_of_zero() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert g711.ulaw_encode(zero)[0] == g711.ULAW_SILENCE_BYTE == 0xFF
    assert g711.alaw_encode(zero)[0] == g711.ALAW_SILENCE_BYTE == 0xD5
    assert g711.ulaw_decode(bytes([g711.ULAW_SILENCE_BYTE]))[0] == 0
    assert abs(int(g711.alaw_decode(bytes([g711.ALAW_SILENCE_BYTE]))[0])) == 8


def test_silence_payload() -> None:
    assert g711.silence_payload(g711.PAYLOAD_TYPE_PCMU, 160) == b"\xff" * 160
    assert g711.silence_payload(g711.PAYLOAD_TYPE_PCMA, 3) == b"\xd5\xd5\xd5"
    assert g711.silence_payload(0, 0) == b""


@pytest.mark.parametrize("law", LAWS)
def test_every_code_round_trips_to_its_level(law: str) -> None:
    decoded = decoder(law)(EVERY_CODE)
    assert np.array_equal(decoder(law)(encoder(law)(decoded)), decoded)


@pytest.mark.parametrize("law", LAWS)
def test_companding_is_monotonic_over_every_sample(law: str) -> None:
    decoded = decoder(law)(encoder(law)(EVERY_SAMPLE)).astype(np.int32)
    assert (np.diff(decoded) >= 0).all()


@pytest.mark.parametrize("law", LAWS)
@given(data=st.data())
def test_round_trip_lands_on_a_level_bracketing_the_sample(law: str, data: st.DataObject) -> None:
    pcm = data.draw(hnp.arrays(np.int16, st.integers(0, 64)))
    decoded = decoder(law)(encoder(law)(pcm)).astype(np.int32)
    table = levels(law)
    samples = pcm.astype(np.int32)
    above = np.searchsorted(table, samples, side="right")
    below_level = table[np.clip(above - 1, 0, len(table) - 1)]
    above_level = table[np.clip(above, 0, len(table) - 1)]
    assert ((decoded == below_level) | (decoded == above_level)).all()
    # and the error is bounded by the quantisation step: 1/16 of the magnitude, or
    # the clipping at full scale
    assert (np.abs(decoded - samples) <= np.abs(samples) // 16 + 16).all()


@pytest.mark.parametrize("law", LAWS)
@given(
    codes=hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9), elements=st.integers(0, 255)
    )
)
def test_shape_and_dtype_are_kept(law: str, codes: np.ndarray) -> None:
    decoded = decoder(law)(codes)
    assert decoded.shape == codes.shape and decoded.dtype == np.int16
    encoded = encoder(law)(decoded)
    assert encoded.shape == codes.shape and encoded.dtype == np.uint8


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize("law", LAWS)
def test_decoders_take_bytes_like_objects(law: str) -> None:
    expected = decoder(law)(np.frombuffer(EVERY_CODE, dtype=np.uint8))
    for payload in (EVERY_CODE, bytearray(EVERY_CODE), memoryview(EVERY_CODE)):
        assert np.array_equal(decoder(law)(payload), expected)


@pytest.mark.parametrize("law", LAWS)
def test_wrong_sample_types_are_refused_with_a_reason(law: str) -> None:
    with pytest.raises(g711.G711Error, match="int16"):
        encoder(law)(np.zeros(4, dtype=np.float64))
    with pytest.raises(g711.G711Error, match="int16"):
        encoder(law)([0, 1, 2])
    with pytest.raises(g711.G711Error, match="uint8"):
        decoder(law)(np.zeros(4, dtype=np.int16))
    with pytest.raises(g711.G711Error, match="bytes"):
        decoder(law)("ff")


def test_other_payload_types_are_refused() -> None:
    with pytest.raises(g711.G711Error, match="payload type 18"):
        g711.decode(b"\x00", 18)
    with pytest.raises(g711.G711Error, match="payload type 9"):
        g711.encode(np.zeros(1, dtype=np.int16), 9)
    with pytest.raises(g711.G711Error, match="-1 samples"):
        g711.silence_payload(0, -1)
