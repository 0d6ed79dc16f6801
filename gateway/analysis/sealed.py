"""Recordings sealed at rest: AES-256-GCM in authenticated chunks, readable by byte range.

A sealed file is a header and then the plaintext (a WAV recording, or any
file) cut into chunks of ``chunk_size`` octets, each encrypted and
authenticated on its own, so a reader decrypts a file as a stream and
serves a byte range by decrypting only the chunks that cover it.

Layout (integers big-endian)::

    magic         8  b"CGSEALED"
    version       1  1
    key id length 1  n (1-64)
    key id        n  ASCII, names the keyring's key that sealed the file
    chunk size    4  plaintext octets per chunk (every chunk but the last)
    salt         16  random, per file
    nonce prefix  7  random, per file
    chunks           each: AES-256-GCM ciphertext of its plaintext, then the 16-octet tag

The construction is the STREAM online authenticated encryption of Hoang,
Reyhanitabar, Rogaway and Vizár ("Online Authenticated-Encryption and its
Nonce-Reuse Misuse-Resistance", CRYPTO 2015), laid out as Tink's
AES-GCM-HKDF streaming AEAD lays it out:

- each file has its own key, HKDF-SHA256 (RFC 5869) of the keyring's key
  with the file's salt, so files sealed under one keyring key never share
  a (key, nonce) pair however many there are;
- chunk ``i``'s 96-bit nonce is ``nonce prefix || i (32 bits) || last``,
  ``last`` one octet, 1 on the final chunk and 0 on every other: a fixed
  field and an invocation counter as NIST SP 800-38D 8.2.1 asks, with the
  final chunk told apart, so a file cut short at a chunk border no longer
  ends in a chunk sealed as last and is refused, and a chunk cannot move to
  another position or another file;
- every chunk authenticates the whole header as associated data, so a
  changed chunk size, salt, prefix or key id is refused too.

Every chunk holds exactly ``chunk_size`` plaintext octets except the final
one, which holds 0 to ``chunk_size`` (an empty file is one empty final
chunk), so the plaintext size follows from the file's size, and opening a
file checks it by decrypting the final chunk.

Keys: a :class:`Keyring` maps key ids to 32-octet keys (base64 in the
settings or the environment) and names one current key, which seals new
files. Rotation adds a new key and makes it current; files sealed before
stay readable while their key id is in the keyring, since each file's
header names its key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ENV_CURRENT_KEY",
    "ENV_KEYS",
    "KEY_BYTES",
    "MAGIC",
    "TAG_BYTES",
    "Keyring",
    "SealedError",
    "SealedHeader",
    "SealedReader",
    "TamperedError",
    "UnknownKeyError",
    "decrypt_file",
    "encrypt_file",
    "encrypt_stream",
    "open_sealed",
    "plaintext_size",
    "read_range",
]

MAGIC: Final = b"CGSEALED"
VERSION: Final = 1
KEY_BYTES: Final = 32
"""AES-256."""
TAG_BYTES: Final = 16
"""The full 128-bit GCM tag."""
SALT_BYTES: Final = 16
NONCE_PREFIX_BYTES: Final = 7
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
MAX_CHUNKS: Final = 1 << 32
"""The nonce's counter field is 32 bits: 256 TiB at the default chunk size."""

ENV_KEYS: Final = "CALLGATE_SEALING_KEYS"
"""Environment variable of :meth:`Keyring.from_env`: ``id:base64[,id:base64...]``."""
ENV_CURRENT_KEY: Final = "CALLGATE_SEALING_KEY_ID"
"""Environment variable naming the current key (optional when there is one key)."""

_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIXED: Final = struct.Struct(">8sBB")
_TAIL: Final = struct.Struct(f">I{SALT_BYTES}s{NONCE_PREFIX_BYTES}s")
_NONCE_TAIL: Final = struct.Struct(">IB")
_HKDF_INFO: Final = b"callgate sealed recording v1"


class SealedError(Exception):
    """A sealed file that cannot be read, or a keyring that cannot be used."""


class UnknownKeyError(SealedError):
    """The file names a key id that the keyring does not hold."""


class TamperedError(SealedError):
    """Authentication failed: the file was changed, cut short or extended, or the key is wrong."""


def _check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise SealedError(f"key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ -")
    return key_id


def _decode_key(key_id: str, text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealedError(f"key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise SealedError(f"key {key_id!r} is {len(key)} octets, AES-256 needs {KEY_BYTES}")
    return key


@dataclass(frozen=True, slots=True)
class Keyring:
    """Keys by id and the id of the current one, which seals new files."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        keys = {}
        for key_id, key in self.keys.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise SealedError(f"key {key_id!r} must be {KEY_BYTES} octets")
            keys[key_id] = key
        if self.current not in keys:
            raise SealedError(f"the current key {self.current!r} is not in the keyring")
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring(ids={sorted(self.keys)}, current={self.current!r})"

    @classmethod
    def from_base64(cls, keys: Mapping[str, str], current: str | None = None) -> Keyring:
        """A keyring of base64 keys by id; ``current`` may be left out when there is one key."""
        decoded = {
            _check_key_id(key_id): _decode_key(key_id, text) for key_id, text in keys.items()
        }
        if not decoded:
            raise SealedError("the keyring holds no key")
        if current is None:
            if len(decoded) != 1:
                raise SealedError(f"name the current key of {sorted(decoded)}")
            current = next(iter(decoded))
        return cls(decoded, current)

    @classmethod
    def parse(cls, text: str, current: str | None = None) -> Keyring:
        """A keyring from ``id:base64`` entries separated by commas or white space."""
        entries: dict[str, str] = {}
        for entry in re.split(r"[,\s]+", text.strip()):
            if not entry:
                continue
            key_id, sep, key = entry.partition(":")
            if not sep:
                raise SealedError(f"keyring entry {key_id[:8]!r}... is not id:base64")
            if key_id in entries:
                raise SealedError(f"key id {key_id!r} is given twice")
            entries[key_id] = key
        return cls.from_base64(entries, current or None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keyring of :data:`ENV_KEYS`, current key :data:`ENV_CURRENT_KEY`."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEYS)
        if not text:
            raise SealedError(f"{ENV_KEYS} is not set")
        return cls.parse(text, env.get(ENV_CURRENT_KEY) or None)

    @classmethod
    def generate_key(cls) -> str:
        """A new random key, base64, for the settings or the environment."""
        return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")

    def rotated(self, key_id: str, key: bytes | str) -> Keyring:
        """This keyring with ``key`` added under a new id as the current key.

        Files sealed under the older keys stay readable with the new keyring.
        """
        _check_key_id(key_id)
        if key_id in self.keys:
            raise SealedError(f"key id {key_id!r} is already in the keyring")
        raw = _decode_key(key_id, key) if isinstance(key, str) else key
        return Keyring({**self.keys, key_id: raw}, key_id)

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"the file was sealed with key {key_id!r}, which the keyring does not hold "
                f"(it holds {', '.join(sorted(self.keys))})"
            ) from None


@dataclass(frozen=True, slots=True)
class SealedHeader:
    """A sealed file's header (module docstring)."""

    key_id: str
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes

    def __bytes__(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return b"".join(
            (
                _FIXED.pack(MAGIC, VERSION, len(key_id)),
                key_id,
                _TAIL.pack(self.chunk_size, self.salt, self.nonce_prefix),
            )
        )

    @property
    def size(self) -> int:
        return _FIXED.size + len(self.key_id) + _TAIL.size

    @classmethod
    def read(cls, file: IO[bytes]) -> SealedHeader:
        """The header at the start of ``file`` (left positioned after it)."""
        fixed = file.read(_FIXED.size)
        if len(fixed) < _FIXED.size or fixed[: len(MAGIC)] != MAGIC:
            raise SealedError("not a sealed recording (no CGSEALED header)")
        _magic, version, id_length = _FIXED.unpack(fixed)
        if version != VERSION:
            raise SealedError(f"sealed format version {version} is not read (only {VERSION})")
        rest = file.read(id_length + _TAIL.size)
        if len(rest) < id_length + _TAIL.size:
            raise TamperedError("the sealed file ends inside its header")
        try:
            key_id = _check_key_id(rest[:id_length].decode("ascii"))
        except (UnicodeDecodeError, SealedError):
            raise TamperedError("the sealed file's key id is malformed") from None
        chunk_size, salt, prefix = _TAIL.unpack(rest[id_length:])
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise TamperedError(f"the sealed file's chunk size {chunk_size} is out of range")
        return cls(key_id, chunk_size, salt, prefix)

    def cipher(self, keyring: Keyring) -> AESGCM:
        """The file's AES-256-GCM, keyed by HKDF-SHA256 of its keyring key and salt."""
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=self.salt,
            info=_HKDF_INFO + b"\x00" + self.key_id.encode("ascii"),
        ).derive(keyring.key(self.key_id))
        return AESGCM(derived)

    def nonce(self, index: int, last: bool) -> bytes:
        return self.nonce_prefix + _NONCE_TAIL.pack(index, 1 if last else 0)


def _new_header(keyring: Keyring, chunk_size: int) -> SealedHeader:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealedError(f"chunk size must be 1 to {MAX_CHUNK_SIZE} octets, got {chunk_size}")
    return SealedHeader(
        keyring.current,
        chunk_size,
        secrets.token_bytes(SALT_BYTES),
        secrets.token_bytes(NONCE_PREFIX_BYTES),
    )


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` octets, fewer only at the end of ``source``."""
    parts = []
    remaining = size
    while remaining > 0:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def encrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    keyring: Keyring,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Seal everything ``source`` reads into ``target`` with the current key; plaintext octets.

    One chunk is read ahead, so the final chunk is known when it is sealed.
    """
    header = _new_header(keyring, chunk_size)
    aad = bytes(header)
    cipher = header.cipher(keyring)
    target.write(aad)
    total = 0
    index = 0
    chunk = _read_full(source, chunk_size)
    while True:
        following = _read_full(source, chunk_size) if len(chunk) == chunk_size else b""
        last = not following
        if index >= MAX_CHUNKS:
            raise SealedError(f"too long to seal: more than {MAX_CHUNKS} chunks")
        target.write(cipher.encrypt(header.nonce(index, last), chunk, aad))
        total += len(chunk)
        if last:
            return total
        chunk = following
        index += 1


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keyring: Keyring,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Seal the file ``src`` as ``dst`` with the keyring's current key; the plaintext size.

    ``dst`` is written as ``<dst>.part`` and renamed into place once its data
    is on disk (fsync), so a reader never sees a partial sealed file.
    """
    final = Path(dst)
    part = final.with_name(final.name + ".part")
    try:
        with open(src, "rb") as source, open(part, "wb") as target:
            size = encrypt_stream(source, target, keyring, chunk_size=chunk_size)
            target.flush()
            os.fsync(target.fileno())
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return size


def seal_in_place(path: str | os.PathLike[str], keyring: Keyring) -> Path:
    """Seal ``path`` as ``<path>.sealed`` and remove the plain file; the sealed file's path."""
    source = Path(path)
    target = source.with_name(source.name + ".sealed")
    encrypt_file(source, target, keyring)
    source.unlink(missing_ok=True)
    return target


class SealedReader:
    """A sealed file opened for reading: its plaintext by range or as a stream.

    Opening reads the header, derives the file's key and decrypts the final
    chunk, so a file sealed with an unknown key, cut short or extended is
    refused at once. Reads decrypt only the chunks they cover (the last one
    read is kept for the next read). Usable as a context manager; not
    thread-safe (one reader per thread).
    """

    def __init__(self, path: str | os.PathLike[str], keyring: Keyring) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self.header = SealedHeader.read(self._file)
            self._aad = bytes(self.header)
            self._cipher = self.header.cipher(keyring)
            self._body_start = self.header.size
            body = os.fstat(self._file.fileno()).st_size - self._body_start
            stride = self.header.chunk_size + TAG_BYTES
            self.chunks = max(1, -(-body // stride))
            tail = body - (self.chunks - 1) * stride
            if tail < TAG_BYTES:
                raise TamperedError(f"{self.path}: the sealed file ends inside a chunk's tag")
            self.size = body - self.chunks * TAG_BYTES  # plaintext octets
            self._cached: tuple[int, bytes] | None = None
            self._chunk(self.chunks - 1)  # the final chunk must be sealed as final
        except BaseException:
            self.close()
            raise

    @property
    def key_id(self) -> str:
        return self.header.key_id

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _chunk(self, index: int) -> bytes:
        """The plaintext of chunk ``index``, authenticated."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        if self._file is None:
            raise SealedError("read from a closed sealed file")
        stride = self.header.chunk_size + TAG_BYTES
        self._file.seek(self._body_start + index * stride)
        sealed = _read_full(self._file, stride)
        last = index == self.chunks - 1
        try:
            plain = self._cipher.decrypt(self.header.nonce(index, last), sealed, self._aad)
        except InvalidTag:
            raise TamperedError(
                f"{self.path}: chunk {index} of {self.chunks} failed authentication (the file "
                "was altered, cut short or extended, or its key is not the one that sealed it)"
            ) from None
        self._cached = (index, plain)
        return plain

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext octets ``[start, end)`` as pieces of at most a chunk, decrypted as they go.

        ``end`` is clipped to the plaintext size (None: to the end); a range
        that is empty after clipping yields nothing. Negative bounds are an
        error.
        """
        stop = self.size if end is None else min(end, self.size)
        if start < 0 or stop < 0:
            raise ValueError(f"range [{start}, {end}) has a negative bound")
        size = self.header.chunk_size
        position = start
        while position < stop:
            index, offset = divmod(position, size)
            piece = self._chunk(index)[offset : offset + stop - position]
            if not piece:  # a chunk shorter than its place: the file changed under the reader
                raise TamperedError(f"{self.path}: chunk {index} is shorter than its place")
            yield piece
            position += len(piece)

    def read_range(self, start: int, end: int | None = None) -> bytes:
        """Plaintext octets ``[start, end)`` (clipped as :meth:`iter_range` says)."""
        return b"".join(self.iter_range(start, end))

    def read_all(self) -> bytes:
        return self.read_range(0)


def open_sealed(path: str | os.PathLike[str], keyring: Keyring) -> SealedReader:
    """Open a sealed file for reading (see :class:`SealedReader`)."""
    return SealedReader(path, keyring)


def plaintext_size(path: str | os.PathLike[str], keyring: Keyring) -> int:
    """The plaintext size of a sealed file, checked by decrypting its final chunk."""
    with SealedReader(path, keyring) as reader:
        return reader.size


def read_range(
    path: str | os.PathLike[str], keyring: Keyring, start: int, end: int | None = None
) -> bytes:
    """Plaintext octets ``[start, end)`` of a sealed file, decrypting only the chunks covering
    them and the final chunk (which :class:`SealedReader` checks on opening)."""
    with SealedReader(path, keyring) as reader:
        return reader.read_range(start, end)


def decrypt_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], keyring: Keyring) -> int:
    """Write the plaintext of the sealed file ``src`` to ``dst``, chunk by chunk; its size.

    The plaintext goes to ``<dst>.part``, renamed into place once every
    chunk authenticated; a chunk that fails stops the copy and removes the
    part file, leaving ``dst`` as it was.
    """
    final = Path(dst)
    part = final.with_name(final.name + ".part")
    with SealedReader(src, keyring) as reader:
        try:
            with open(part, "wb") as target:
                for piece in reader.iter_range(0):
                    target.write(piece)
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return reader.size
