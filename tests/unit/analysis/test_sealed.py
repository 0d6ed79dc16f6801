"""Sealed recordings: AES-256-GCM chunks, range reads, tamper and truncation refused, rotation."""

from __future__ import annotations

import base64
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsp.wav import encode_wav, read_wav
from gateway.analysis import sealed
from gateway.analysis.sealed import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    TAG_BYTES,
    Keyring,
    SealedError,
    SealedHeader,
    SealedReader,
    TamperedError,
    UnknownKeyError,
    decrypt_file,
    encrypt_file,
    encrypt_stream,
    open_sealed,
    plaintext_size,
    read_range,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
CHUNK = 1000  # small chunks: many borders in a small file


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"2025a": KEY_A}, "2025a")


def random_bytes(count: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()


def seal(tmp_path: Path, data: bytes, keyring: Keyring, chunk_size: int = CHUNK) -> Path:
    src = tmp_path / "plain.bin"
    src.write_bytes(data)
    dst = tmp_path / "plain.bin.sealed"
    assert encrypt_file(src, dst, keyring, chunk_size=chunk_size) == len(data)
    return dst


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10_007])
def test_round_trip(tmp_path: Path, keyring: Keyring, size: int) -> None:
    data = random_bytes(size)
    path = seal(tmp_path, data, keyring)
    chunks = max(1, -(-size // CHUNK))
    header = len(MAGIC) + 2 + len("2025a") + 4 + 16 + 7
    assert path.stat().st_size == header + size + chunks * TAG_BYTES
    assert plaintext_size(path, keyring) == size
    with open_sealed(path, keyring) as reader:
        assert reader.read_all() == data
        assert reader.key_id == "2025a"
        assert reader.chunks == chunks
    out = tmp_path / "out.bin"
    assert decrypt_file(path, out, keyring) == size
    assert out.read_bytes() == data


def test_a_sealed_wav_is_not_readable_and_decrypts_to_the_same_recording(
    tmp_path: Path, keyring: Keyring
) -> None:
    stereo = np.random.default_rng(1).integers(-20000, 20000, (8000 * 3, 2), dtype=np.int16)
    wav = encode_wav(stereo, 8000)
    path = seal(tmp_path, wav, keyring, DEFAULT_CHUNK_SIZE)
    raw = path.read_bytes()
    assert b"RIFF" not in raw and b"WAVE" not in raw
    assert wav[1000:1100] not in raw
    with open_sealed(path, keyring) as reader:
        samples, rate = read_wav(reader.read_all())
        assert rate == 8000
        np.testing.assert_array_equal(samples, stereo)
        # streaming: the pieces are at most a chunk and add up to the file
        pieces = list(reader.iter_range(0))
    assert max(len(p) for p in pieces) <= DEFAULT_CHUNK_SIZE
    assert b"".join(pieces) == wav


def test_the_same_file_sealed_twice_differs(tmp_path: Path, keyring: Keyring) -> None:
    data = random_bytes(5000)
    one = seal(tmp_path, data, keyring).read_bytes()
    two = seal(tmp_path, data, keyring).read_bytes()
    assert one != two  # fresh salt and nonce prefix per file
    assert one[:13] == two[:13]  # same magic, version, key id


def test_encrypt_stream_takes_any_reader(keyring: Keyring, tmp_path: Path) -> None:
    data = random_bytes(4321)
    target = io.BytesIO()
    assert encrypt_stream(TrickleReader(data), target, keyring, chunk_size=CHUNK) == len(data)
    path = tmp_path / "s"
    path.write_bytes(target.getvalue())
    assert read_range(path, keyring, 0) == data


class TrickleReader(io.RawIOBase):
    """Gives at most 7 octets a read, as a pipe may."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        take = 7 if size < 0 else min(size, 7)
        piece = self.data[self.position : self.position + take]
        self.position += len(piece)
        return piece


# ---------------------------------------------------------------------- ranges


def test_ranges_across_chunk_borders(tmp_path: Path, keyring: Keyring) -> None:
    data = random_bytes(5 * CHUNK + 123)
    path = seal(tmp_path, data, keyring)
    with open_sealed(path, keyring) as reader:
        for start, end in [
            (0, 1),
            (CHUNK - 1, CHUNK + 1),  # one octet each side of a border
            (CHUNK, 2 * CHUNK),  # exactly one chunk
            (999, 4001),  # several chunks
            (5 * CHUNK, 5 * CHUNK + 123),  # the final part chunk
            (5 * CHUNK + 100, 10**9),  # clipped at the end
            (300, 300),  # empty
            (4000, 10),  # end before start: empty
        ]:
            assert reader.read_range(start, end) == data[start:end], (start, end)
        with pytest.raises(ValueError):
            reader.read_range(-1, 10)


def test_a_range_decrypts_only_the_chunks_covering_it(
    tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random_bytes(50 * CHUNK)
    path = seal(tmp_path, data, keyring)
    nonces: list[bytes] = []
    original = AESGCM.decrypt

    def counting(self: AESGCM, nonce: bytes, payload: bytes, aad: bytes | None) -> bytes:
        nonces.append(nonce)
        return original(self, nonce, payload, aad)

    monkeypatch.setattr(AESGCM, "decrypt", counting)
    assert read_range(path, keyring, 20 * CHUNK + 10, 22 * CHUNK + 5) == data[20010:22005]
    indices = sorted(struct.unpack(">I", n[7:11])[0] for n in nonces)
    assert indices == [20, 21, 22, 49]  # the covering chunks, and the final one on opening


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 6000),
    chunk_size=st.sampled_from([1, 16, 100, 999, 1024, 7000]),
    bounds=st.tuples(st.integers(0, 6500), st.integers(0, 6500)),
)
def test_any_range_reads_what_the_plaintext_holds(
    tmp_path: Path, size: int, chunk_size: int, bounds: tuple[int, int]
) -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    data = random_bytes(size, seed=size)
    path = seal(tmp_path, data, keyring, chunk_size)
    start, end = bounds
    with open_sealed(path, keyring) as reader:
        assert reader.size == size
        assert reader.read_range(start, end) == data[start:end]
        assert b"".join(reader.iter_range(start)) == data[start:]


# ---------------------------------------------------------------------- tampering


def test_every_flipped_bit_is_refused(tmp_path: Path, keyring: Keyring) -> None:
    data = random_bytes(2 * CHUNK + 10)
    path = seal(tmp_path, data, keyring)
    original = path.read_bytes()
    header = SealedHeader.read(io.BytesIO(original)).size
    rng = np.random.default_rng(3)
    # every header octet, and octets of each chunk: ciphertext and tag
    positions = list(range(header)) + rng.integers(header, len(original), 60).tolist()
    for position in positions:
        changed = bytearray(original)
        changed[position] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(changed))
        with pytest.raises(SealedError), open_sealed(path, keyring) as reader:
            reader.read_all()


def test_a_tampered_chunk_names_itself(tmp_path: Path, keyring: Keyring) -> None:
    data = random_bytes(3 * CHUNK)
    path = seal(tmp_path, data, keyring)
    raw = bytearray(path.read_bytes())
    header = SealedHeader.read(io.BytesIO(bytes(raw))).size
    raw[header + (CHUNK + TAG_BYTES) + 5] ^= 0x80  # inside chunk 1
    path.write_bytes(bytes(raw))
    with open_sealed(path, keyring) as reader:  # the final chunk is intact
        assert reader.read_range(0, CHUNK) == data[:CHUNK]
        with pytest.raises(TamperedError, match="chunk 1 of 3"):
            reader.read_range(CHUNK, CHUNK + 1)
    with pytest.raises(TamperedError):
        decrypt_file(path, tmp_path / "out", keyring)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.part").exists()


def test_swapped_chunks_are_refused(tmp_path: Path, keyring: Keyring) -> None:
    data = random_bytes(3 * CHUNK)
    path = seal(tmp_path, data, keyring)
    raw = path.read_bytes()
    header = SealedHeader.read(io.BytesIO(raw)).size
    stride = CHUNK + TAG_BYTES
    first, second = raw[header : header + stride], raw[header + stride : header + 2 * stride]
    path.write_bytes(raw[:header] + second + first + raw[header + 2 * stride :])
    with open_sealed(path, keyring) as reader, pytest.raises(TamperedError):
        reader.read_range(0, 1)


def test_a_chunk_from_another_file_is_refused(tmp_path: Path, keyring: Keyring) -> None:
    one = seal(tmp_path, random_bytes(3 * CHUNK, seed=1), keyring)
    raw_one = one.read_bytes()
    two = tmp_path / "two.sealed"
    src = tmp_path / "two.bin"
    src.write_bytes(random_bytes(3 * CHUNK, seed=2))
    encrypt_file(src, two, keyring, chunk_size=CHUNK)
    raw_two = two.read_bytes()
    header = SealedHeader.read(io.BytesIO(raw_one)).size
    stride = CHUNK + TAG_BYTES
    spliced = raw_one[: header + stride] + raw_two[header + stride : header + 2 * stride]
    one.write_bytes(spliced + raw_one[header + 2 * stride :])
    with open_sealed(one, keyring) as reader, pytest.raises(TamperedError):
        reader.read_range(CHUNK, CHUNK + 1)


# ---------------------------------------------------------------------- truncation


@pytest.mark.parametrize("chunks_kept", [1, 2, 3])
def test_a_file_cut_at_a_chunk_border_is_refused(
    tmp_path: Path, keyring: Keyring, chunks_kept: int
) -> None:
    path = seal(tmp_path, random_bytes(4 * CHUNK + 500), keyring)
    raw = path.read_bytes()
    header = SealedHeader.read(io.BytesIO(raw)).size
    path.write_bytes(raw[: header + chunks_kept * (CHUNK + TAG_BYTES)])
    with pytest.raises(TamperedError, match="failed authentication"):
        open_sealed(path, keyring)
    with pytest.raises(TamperedError):
        plaintext_size(path, keyring)


def test_a_file_whose_size_is_a_multiple_of_the_chunk_cut_by_its_last_chunk(
    tmp_path: Path, keyring: Keyring
) -> None:
    path = seal(tmp_path, random_bytes(3 * CHUNK), keyring)
    raw = path.read_bytes()
    path.write_bytes(raw[: -(CHUNK + TAG_BYTES)])
    with pytest.raises(TamperedError):
        open_sealed(path, keyring)


@pytest.mark.parametrize("cut", [1, TAG_BYTES - 1, TAG_BYTES, TAG_BYTES + 1, 400])
def test_a_file_cut_inside_a_chunk_is_refused(tmp_path: Path, keyring: Keyring, cut: int) -> None:
    path = seal(tmp_path, random_bytes(2 * CHUNK + 500), keyring)
    raw = path.read_bytes()
    path.write_bytes(raw[:-cut])
    with pytest.raises(TamperedError):
        plaintext_size(path, keyring)


def test_the_body_removed_or_extended_is_refused(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path, random_bytes(CHUNK), keyring)
    raw = path.read_bytes()
    header = SealedHeader.read(io.BytesIO(raw)).size
    for changed in (raw[:header], raw + b"\x00", raw + raw[header:], raw[: header + 3]):
        path.write_bytes(changed)
        with pytest.raises(TamperedError):
            plaintext_size(path, keyring)
    path.write_bytes(raw[:10])
    with pytest.raises(SealedError):
        plaintext_size(path, keyring)


def test_an_empty_file_sealed_cannot_lose_its_only_chunk(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path, b"", keyring)
    assert plaintext_size(path, keyring) == 0
    raw = path.read_bytes()
    path.write_bytes(raw[:-TAG_BYTES])
    with pytest.raises(TamperedError):
        plaintext_size(path, keyring)


def test_what_is_not_a_sealed_file_is_said(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(encode_wav(np.zeros(80, dtype=np.int16), 8000))
    with pytest.raises(SealedError, match="not a sealed recording"):
        open_sealed(path, keyring)
    sealed_path = seal(tmp_path, b"abc", keyring)
    raw = bytearray(sealed_path.read_bytes())
    raw[len(MAGIC)] = 2
    sealed_path.write_bytes(bytes(raw))
    with pytest.raises(SealedError, match="version 2"):
        open_sealed(sealed_path, keyring)


# ---------------------------------------------------------------------- keys


def test_rotation_keeps_old_files_readable(tmp_path: Path) -> None:
    old_ring = Keyring({"2025a": KEY_A}, "2025a")
    (tmp_path / "old").mkdir()
    old_file = seal(tmp_path / "old", b"old call", old_ring)
    new_ring = old_ring.rotated("2026a", KEY_B)
    assert new_ring.current == "2026a"
    assert old_ring.current == "2025a"  # the old keyring is unchanged
    (tmp_path / "new").mkdir()
    new_file = seal(tmp_path / "new", b"new call", new_ring)
    with open_sealed(new_file, new_ring) as reader:
        assert reader.key_id == "2026a"
        assert reader.read_all() == b"new call"
    with open_sealed(old_file, new_ring) as reader:
        assert reader.key_id == "2025a"
        assert reader.read_all() == b"old call"
    with pytest.raises(UnknownKeyError, match="2026a"):
        open_sealed(new_file, old_ring)
    with pytest.raises(SealedError, match="already"):
        new_ring.rotated("2025a", KEY_B)


def test_unknown_key_id_is_a_clear_error(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path, b"data", keyring)
    other = Keyring({"2030x": KEY_B}, "2030x")
    with pytest.raises(UnknownKeyError) as raised:
        read_range(path, other, 0, 4)
    message = str(raised.value)
    assert "'2025a'" in message and "2030x" in message
    assert isinstance(raised.value, SealedError)


def test_the_right_id_with_the_wrong_key_is_refused(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path, b"data", keyring)
    impostor = Keyring({"2025a": KEY_B}, "2025a")
    with pytest.raises(TamperedError):
        open_sealed(path, impostor)


def test_keyring_from_base64_and_from_the_environment() -> None:
    a, b = base64.b64encode(KEY_A).decode(), base64.b64encode(KEY_B).decode()
    ring = Keyring.from_base64({"one": a})
    assert (ring.current, ring.key("one")) == ("one", KEY_A)
    env = {sealed.ENV_KEYS: f"one:{a}, two:{b}", sealed.ENV_CURRENT_KEY: "two"}
    ring = Keyring.from_env(env)
    assert ring.current == "two"
    assert dict(ring.keys) == {"one": KEY_A, "two": KEY_B}
    assert KEY_A.hex() not in repr(ring) and a not in repr(ring)
    generated = Keyring.generate_key()
    assert len(base64.b64decode(generated)) == 32
    assert Keyring.from_base64({"g": generated}).current == "g"


@pytest.mark.parametrize(
    ("keys", "current", "reason"),
    [
        ({}, None, "no key"),
        (
            {"a": base64.b64encode(KEY_A).decode(), "b": base64.b64encode(KEY_B).decode()},
            None,
            "name the current key",
        ),
        ({"a": base64.b64encode(KEY_A).decode()}, "b", "not in the keyring"),
        ({"a": base64.b64encode(KEY_A[:16]).decode()}, None, "16 octets"),
        ({"a": "not base64!"}, None, "base64"),
        ({"bad id": base64.b64encode(KEY_A).decode()}, None, "key id"),
    ],
)
def test_keyring_errors_say_what_is_wrong(
    keys: dict[str, str], current: str | None, reason: str
) -> None:
    with pytest.raises(SealedError, match=reason):
        Keyring.from_base64(keys, current)


def test_environment_without_keys_is_an_error() -> None:
    with pytest.raises(SealedError, match=sealed.ENV_KEYS):
        Keyring.from_env({})
    with pytest.raises(SealedError, match="id:base64"):
        Keyring.parse("justakey")


def test_a_failed_seal_leaves_no_file(tmp_path: Path, keyring: Keyring) -> None:
    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "missing.wav", tmp_path / "out.sealed", keyring)
    assert os.listdir(tmp_path) == []
    with pytest.raises(SealedError, match="chunk size"):
        encrypt_stream(io.BytesIO(b"x"), io.BytesIO(), keyring, chunk_size=0)


def test_a_closed_reader_refuses_to_read(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path, random_bytes(3 * CHUNK), keyring)
    reader = SealedReader(path, keyring)
    reader.close()
    with pytest.raises(SealedError, match="closed"):
        reader.read_range(0, 10)
