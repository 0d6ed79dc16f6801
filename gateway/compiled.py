"""Which of callgate's modules run compiled, and the fall-back to their sources.

The call path (the SIP stack, its transports, the call handling, and the media relay's
control: sessions, receivers, forwarders, announcements) is compiled by mypyc when the
package is built (``setup.py``): the same typed Python, as C, in one group whose shared
library is ``gateway._compiled__mypyc``. The ``.py`` files stay the reference. The
build writes :data:`MANIFEST` beside the package: the digest of every source the
compilation read (the project's own modules, :data:`SOURCE_TREES`: the
compiled code checks at run time the types it took from the others too). At import
(``gateway/__init__.py``) the sources are checked against it; where one was changed
since the build (an editable install being worked on), the build did not compile
them, or ``CALLGATE_PURE_PYTHON=1`` is set, every module of the group is imported from
its source instead. It is all or none: the modules of one mypyc group reach each
other's classes inside their shared library, so a compiled module cannot run beside
an interpreted copy of another.

mypyc compiles a dataclass's own methods, but the class goes through ``@dataclass``
at import like any other, and the ``__init__`` that writes runs as Python. The
dataclasses made many times per call (SIP URIs and name-addrs, Via, CSeq, the SDP
parts) write their ``__init__`` out, which ``@dataclass`` keeps and mypyc compiles;
``tests/unit/sip/test_written_initialisers.py`` holds each to what ``@dataclass``
would have made. Compiled, such a class cannot be made without that ``__init__``,
which ``copy`` and ``pickle`` skip: their ``__reduce__`` makes them through it
(:mod:`gateway.sip.rebuild`). They also carry ``@mypyc_attr(acyclic=True)``, which
keeps them out of the cyclic collector: their fields (text, numbers, dicts and lists
of text, each other) cannot lead back to them, so it need not walk them. The decorator
does nothing when they run as Python.

Standard library only: ``setup.py`` loads this file for :data:`COMPILED_PACKAGES`
before any dependency is installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

COMPILED_PACKAGES = ("gateway.sip", "gateway.net", "gateway.calls", "gateway.media")
"""The packages whose modules (not their ``__init__``) mypyc compiles."""

NOT_COMPILED = frozenset({"gateway.media.bpf"})
"""Modules of those packages left as Python: libbpf through ctypes, called when a lane
moves into the kernel, and an ``OSError`` subclass, which mypyc cannot compile."""

GROUP_LIBRARY = "_compiled__mypyc"
"""The group's shared library, a module of the ``gateway`` package."""

MANIFEST = "_compiled.sources"
"""Written by the build beside the compiled modules: ``path sha256`` per source read."""

SOURCE_TREES = ("gateway", "dsp")
"""The project's packages, whose sources the compilation reads (imports it follows)."""

PURE_PYTHON_VARIABLE = "CALLGATE_PURE_PYTHON"

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CompiledState:
    """Whether the call path runs compiled, and why not when it does not."""

    compiled: bool
    reason: str

    def describe(self) -> str:
        return "compiled (mypyc)" if self.compiled else f"Python ({self.reason})"


def _is_module_source(path: Path) -> bool:
    """A module's file: not an editor's lock or backup file (``.#message.py``)."""
    return path.stem.isidentifier() and path.is_file()


def compiled_module_names(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every module mypyc compiles, by dotted name, sorted."""
    names = []
    for package in COMPILED_PACKAGES:
        directory = package_dir.parent.joinpath(*package.split("."))
        names.extend(
            f"{package}.{path.stem}"
            for path in directory.glob("*.py")
            if path.name != "__init__.py"
            and _is_module_source(path)
            and f"{package}.{path.stem}" not in NOT_COMPILED
        )
    return sorted(names)


def source_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    return package_dir.parent.joinpath(*module.split(".")).with_suffix(".py")


def build_inputs(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every source of the project's packages, as paths relative to their parent."""
    root = package_dir.parent
    return sorted(
        path.relative_to(root).as_posix()
        for tree in SOURCE_TREES
        for path in root.joinpath(tree).rglob("*.py")
        if _is_module_source(path) and "__pycache__" not in path.parts
    )


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_text(package_dir: Path = PACKAGE_DIR) -> str:
    """The manifest for the sources as they are now (the build writes it)."""
    root = package_dir.parent
    return "".join(f"{name} {source_digest(root / name)}\n" for name in build_inputs(package_dir))


def _has_extension(base: Path) -> bool:
    return any(
        base.with_name(base.name + suffix).is_file()
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def inspect_build(
    package_dir: Path = PACKAGE_DIR, environ: dict[str, str] | None = None
) -> CompiledState:
    """Whether the compiled modules under ``package_dir`` may be imported."""
    environ = dict(os.environ) if environ is None else environ
    if not _has_extension(package_dir / GROUP_LIBRARY):
        return CompiledState(False, "not compiled at install")
    if environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return CompiledState(False, f"{PURE_PYTHON_VARIABLE} is set")
    try:
        lines = (package_dir / MANIFEST).read_text().splitlines()
    except OSError:
        return CompiledState(False, "the last build did not compile it")
    built = dict(line.split(" ", 1) for line in lines if " " in line)
    root = package_dir.parent
    for module in compiled_module_names(package_dir):
        path = source_path(module, package_dir)
        if path.relative_to(root).as_posix() not in built:
            return CompiledState(False, f"{module} is newer than the build")
        if not _has_extension(path.with_suffix("")):
            return CompiledState(False, f"{module} has no compiled module")
    for name, digest in built.items():
        path = root / name
        if not path.is_file() or source_digest(path) != digest:
            return CompiledState(False, f"{name} changed since the build; rebuild: make")
    return CompiledState(True, "")


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Imports the compiled packages' modules from their ``.py`` files."""

    def __init__(self, modules: Sequence[str], package_dir: Path) -> None:
        self._modules = frozenset(modules)
        self._package_dir = package_dir

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._modules:
            return None
        return importlib.util.spec_from_file_location(
            fullname, source_path(fullname, self._package_dir)
        )


STATE = CompiledState(False, "not inspected")


def choose(package_dir: Path = PACKAGE_DIR) -> CompiledState:
    """Decide once per process (``gateway/__init__.py``): compiled modules, or sources."""
    global STATE
    STATE = inspect_build(package_dir)
    if not STATE.compiled:
        sys.meta_path.insert(0, _SourcesFirst(compiled_module_names(package_dir), package_dir))
    return STATE
