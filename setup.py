"""The one compiled part of callgate: the relay's native forwarder (gateway/media/_fastpath.c).

Everything else about the distribution is in pyproject.toml. The extension is optional:
where it cannot be built (no C compiler, not Linux), the gateway relays every packet in
Python and says so at start-up.
"""

import sys

from setuptools import Extension, setup

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

setup(ext_modules=extensions)
