"""The compiled parts of callgate.

- The call path, compiled from its typed Python by mypyc: the SIP stack
  (``gateway/sip``), its transports (``gateway/net``), the call handling
  (``gateway/calls``) and the media relay (``gateway/media``, but for its libbpf
  calls through ctypes); the list is :data:`gateway.compiled.COMPILED_PACKAGES`. The
  sources stay the reference: with ``CALLGATE_COMPILE=0`` at build time, or when the
  build has no mypyc, they run as Python (see :mod:`gateway.compiled`).
- ``gateway/media/_fastpath.c``: the native forwarder, a CPython extension.
- ``dsp/redact/_words.c``: the per-word work of transcript redaction (reading texts,
  vocabulary ids and times; writing the redacted texts and word lists), a CPython
  extension; without it that work runs in Python.
- ``gateway/media/kernel_forward.bpf.c``: the kernel forwarder, a tc (tcx) program
  compiled to ``kernel_forward.bpf.o`` by clang's BPF target and loaded at run time
  through libbpf (``gateway/media/bpf.py``).

Everything else about the distribution is in pyproject.toml. Where a forwarder cannot
be built (no C compiler, no clang, not Linux), the gateway relays by the next path
down (native forwarder, then Python) and says so at start-up.
"""

import glob
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BPF_SOURCE = os.path.join("gateway", "media", "kernel_forward.bpf.c")
BPF_OBJECT = "kernel_forward.bpf.o"
COMPILED_RULES = os.path.join("gateway", "compiled.py")


def _multiarch_include() -> list[str]:
    """Debian keeps <asm/types.h> under the multiarch directory, which clang's BPF
    target does not search by itself."""
    machine = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine(), platform.machine()
    )
    path = f"/usr/include/{machine}-linux-gnu"
    return [f"-I{path}"] if os.path.isdir(path) else []


class BuildWithKernelForwarder(build_ext):
    """build_ext, then the kernel forwarder's BPF object beside the extension."""

    def run(self) -> None:
        manifest = os.path.join(self._package_dir(), COMPILED.MANIFEST)
        if os.path.exists(manifest):
            os.remove(manifest)  # the last build's: written again below if this one compiles
        if not COMPILED_MANIFEST and self.inplace:
            self._remove_compiled_modules()
        if COMPILED_MANIFEST:
            self.force = True  # every module from this run's C, or the manifest is not written
        started = time.time()
        super().run()
        self._build_bpf()
        self._write_compiled_manifest(manifest, started)

    def _package_dir(self) -> str:
        return "gateway" if self.inplace else os.path.join(self.build_lib, "gateway")

    def _remove_compiled_modules(self) -> None:
        """An earlier build's compiled modules, in a tree built now without them."""
        names = [*COMPILED_MODULES, "gateway." + COMPILED.GROUP_LIBRARY]
        for name in names:
            for path in glob.glob(name.replace(".", "/") + ".*.so"):
                os.remove(path)

    def _write_compiled_manifest(self, manifest: str, started: float) -> None:
        """The digests of the sources the compilation read, which gateway.compiled checks
        at import; only when every compiled module was built by this run."""
        if not COMPILED_MANIFEST:
            return
        outputs = [self.get_ext_fullpath(name) for name in COMPILED_MODULES]
        missing = [
            path
            for path in outputs
            if not os.path.exists(path) or os.path.getmtime(path) < started - 1
        ]
        if missing:
            print(f"call path not compiled: {len(missing)} modules not built")
            return
        with open(manifest, "w") as output:
            output.write(COMPILED_MANIFEST)

    def _build_bpf(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        clang = shutil.which(os.environ.get("BPF_CLANG", "clang"))
        if clang is None:
            print("kernel forwarder not built: no clang (Debian: apt-get install clang libbpf-dev)")
            return
        package_dir = os.path.join(self._package_dir(), "media")
        os.makedirs(package_dir, exist_ok=True)
        target = os.path.join(package_dir, BPF_OBJECT)
        command = [
            clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror",
            *_multiarch_include(), "-c", BPF_SOURCE, "-o", target,
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"kernel forwarder not built: {exc} (needs clang and libbpf-dev's headers)")


extensions = []
if sys.platform.startswith("linux"):  # epoll, recvmmsg, eventfd
    extensions.append(
        Extension(
            "gateway.media._fastpath",
            sources=["gateway/media/_fastpath.c"],
            # -ffp-contract=off: no fused multiply-add, so the lanes' jitter is computed
            # with the same roundings as StreamStats.update (aarch64 fuses by default)
            extra_compile_args=[
                "-O2",
                "-std=gnu11",
                "-ffp-contract=off",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
            ],
            optional=True,
        )
    )
# the per-word reads of transcript redaction (dsp/redact/words.py holds them in Python too)
extensions.append(
    Extension(
        "dsp.redact._words",
        sources=["dsp/redact/_words.c"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        optional=True,
    )
)


def _load_compiled_rules() -> ModuleType:
    """gateway/compiled.py (standard library only), without importing the package."""
    spec = importlib.util.spec_from_file_location("_callgate_compiled", COMPILED_RULES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


COMPILED = _load_compiled_rules()
COMPILED_MODULES = COMPILED.compiled_module_names(Path("gateway").resolve())
COMPILED_MANIFEST = ""
"""The sources' digests as mypyc read them; empty when this build does not compile."""

BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}
"""The commands that build extensions: metadata hooks (egg_info, dist_info) skip mypyc."""


def _compiled_call_path() -> list[Extension]:
    """The call path's modules as mypyc extensions, in one group whose shared
    library lives inside the package (``gateway._compiled__mypyc``), so an editable
    install finds it too. mypyc type-checks them first: a type error fails the build
    (types from packages the build environment lacks count as Any). The C compile is
    optional, as the forwarder's is: without a compiler they run as Python."""
    global COMPILED_MANIFEST
    if not BUILD_COMMANDS & set(sys.argv[1:]):
        return []
    if os.environ.get("CALLGATE_COMPILE", "1") == "0":
        print("call path not compiled: CALLGATE_COMPILE=0")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("call path not compiled: no mypyc (pip install mypy)")
        return []
    COMPILED_MANIFEST = COMPILED.manifest_text(Path("gateway").resolve())
    sources = [str(COMPILED.source_path(module, Path("gateway"))) for module in COMPILED_MODULES]
    extensions = mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *sources],
        group_name="gateway." + COMPILED.GROUP_LIBRARY.removesuffix("__mypyc"),
        opt_level="3",
    )
    for extension in extensions:
        extension.optional = True
    return extensions


setup(
    ext_modules=[*extensions, *_compiled_call_path()],
    cmdclass={"build_ext": BuildWithKernelForwarder},
)
