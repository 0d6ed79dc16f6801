"""The few calls of libbpf the kernel forwarder needs, through ctypes.

libbpf (Debian's ``libbpf1``, a dependency of iproute2, so on nearly every
host) loads the compiled program (``kernel_forward.bpf.o``) with its map and
BTF, and wraps the ``bpf()`` system call for map reads and writes. Programs
are attached with a BPF link of the tcx kind (Linux 6.6): the link belongs to
the file descriptor, so when the gateway exits, however it exits, the kernel
detaches the program and frees its lanes; no stale forwarding outlives the
process that owned it.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any, Final

BPF_NOEXIST: Final = 1
BPF_F_LOCK: Final = 4
BPF_TCX_INGRESS: Final = 46
"""``enum bpf_attach_type`` of Linux 6.6 uapi: after BPF_NETFILTER (45)."""


class BpfError(OSError):
    """A libbpf call failed: errno and what was being done."""


LIBRARY: Final = "libbpf.so.1"
"""libbpf 1.x by its soname: 0.x differs in the calls used here (error pointers from the
open call, no log buffer per program)."""


def _load_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBRARY, use_errno=True)
    c_void_p, c_int, c_char_p, c_uint64, c_uint32 = (
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint64,
        ctypes.c_uint32,
    )
    signatures = {
        "libbpf_set_print": (c_void_p, [c_void_p]),
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_program__set_log_buf": (c_int, [c_void_p, c_char_p, ctypes.c_size_t]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__value_size": (c_uint32, [c_void_p]),
        "bpf_map__key_size": (c_uint32, [c_void_p]),
        "bpf_link_create": (c_int, [c_int, c_int, c_int, c_void_p]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_elem_flags": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_and_delete_elem_flags": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    }
    for function, (restype, argtypes) in signatures.items():
        symbol = getattr(lib, function)
        symbol.restype = restype
        symbol.argtypes = argtypes
    lib.libbpf_set_print(None)  # errors come back as errno and the verifier's log
    return lib


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libbpf, loaded once; BpfError when it is not installed or lacks a call used here."""
    global _lib
    if _lib is None:
        try:
            _lib = _load_library()
        except (OSError, AttributeError) as exc:
            raise BpfError(errno.ENOENT, f"{LIBRARY}: {exc}") from exc
    return _lib


def _check(result: int, doing: str) -> int:
    """libbpf's convention (1.0): a negative errno, or -1 with errno set."""
    if result < 0:
        code = -result if result != -1 else ctypes.get_errno()
        raise BpfError(code, f"{doing}: {os.strerror(code)}")
    return result


class LoadedProgram:
    """A compiled object loaded into the kernel: one program and one map."""

    def __init__(self, path: str, program: str, map_name: str) -> None:
        lib = library()
        self._lib = lib
        self._object = lib.bpf_object__open_file(path.encode(), None)
        if not self._object:
            code = ctypes.get_errno() or errno.EINVAL
            raise BpfError(code, f"open {path}: {os.strerror(code)}")
        try:
            self._program = lib.bpf_object__find_program_by_name(self._object, program.encode())
            found_map = lib.bpf_object__find_map_by_name(self._object, map_name.encode())
            if not self._program or not found_map:
                raise BpfError(errno.ENOENT, f"{path} has no program {program} or map {map_name}")
            log = ctypes.create_string_buffer(1 << 16)
            lib.bpf_program__set_log_buf(self._program, log, len(log))
            result = lib.bpf_object__load(self._object)
            if result < 0:
                code = -result
                tail = log.value.decode(errors="replace").strip().splitlines()[-3:]
                verifier = f" (verifier: {' | '.join(tail)})" if tail else ""
                raise BpfError(code, f"load {path}: {os.strerror(code)}{verifier}")
            self.program_fd: int = lib.bpf_program__fd(self._program)
            self.map_fd: int = lib.bpf_map__fd(found_map)
            self.key_size: int = lib.bpf_map__key_size(found_map)
            self.value_size: int = lib.bpf_map__value_size(found_map)
        except BaseException:
            lib.bpf_object__close(self._object)
            self._object = None
            raise

    def attach_ingress(self, ifindex: int) -> int:
        """Attach the program at the interface's tcx ingress; the link's descriptor."""
        return _check(
            self._lib.bpf_link_create(self.program_fd, ifindex, BPF_TCX_INGRESS, None),
            f"attach at tcx ingress of interface {ifindex}",
        )

    def insert(self, key: bytes, value: bytes) -> None:
        """Add an entry; EEXIST when the key is there already."""
        _check(
            self._lib.bpf_map_update_elem(self.map_fd, key, value, BPF_NOEXIST),
            "add a lane",
        )

    def read(self, key: bytes) -> bytes | None:
        """The entry's value, copied under its lock; None when there is none."""
        return self._copy(self._lib.bpf_map_lookup_elem_flags, key, "read a lane")

    def take(self, key: bytes) -> bytes | None:
        """Remove the entry and return its value as it was when removed; None if none."""
        return self._copy(self._lib.bpf_map_lookup_and_delete_elem_flags, key, "remove a lane")

    def _copy(self, call: Any, key: bytes, doing: str) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        result = call(self.map_fd, key, value, BPF_F_LOCK)
        if result < 0:
            code = -result if result != -1 else ctypes.get_errno()
            if code == errno.ENOENT:
                return None
            raise BpfError(code, f"{doing}: {os.strerror(code)}")
        return value.raw

    def remove(self, key: bytes) -> None:
        """Delete an entry (none there is no error)."""
        result = self._lib.bpf_map_delete_elem(self.map_fd, key)
        if result < 0:
            code = -result if result != -1 else ctypes.get_errno()
            if code != errno.ENOENT:
                raise BpfError(code, f"delete a lane: {os.strerror(code)}")

    def close(self) -> None:
        if self._object:
            self._lib.bpf_object__close(self._object)
            self._object = None
