"""The compiled parts of callgate, both optional, both for the media relay on Linux.

- ``gateway/media/_fastpath.c``: the native forwarder, a CPython extension.
- ``gateway/media/kernel_forward.bpf.c``: the kernel forwarder, a tc (tcx) program
  compiled to ``kernel_forward.bpf.o`` by clang's BPF target and loaded at run time
  through libbpf (``gateway/media/bpf.py``).

Everything else about the distribution is in pyproject.toml. Where a part cannot be
built (no C compiler, no clang, not Linux), the gateway relays by the next path down
(native forwarder, then Python) and says so at start-up.
"""

import os
import platform
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BPF_SOURCE = os.path.join("gateway", "media", "kernel_forward.bpf.c")
BPF_OBJECT = "kernel_forward.bpf.o"


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
        super().run()
        self._build_bpf()

    def _build_bpf(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        clang = shutil.which(os.environ.get("BPF_CLANG", "clang"))
        if clang is None:
            print("kernel forwarder not built: no clang (Debian: apt-get install clang libbpf-dev)")
            return
        package_dir = (
            "gateway/media" if self.inplace else os.path.join(self.build_lib, "gateway", "media")
        )
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

setup(ext_modules=extensions, cmdclass={"build_ext": BuildWithKernelForwarder})
