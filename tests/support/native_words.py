"""The redaction's C extension for tests that hold it against its Python reference."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dsp.redact import words


def native_words() -> Any:
    """``dsp.redact._words``; in CI it must be built, elsewhere the test says how to build it."""
    if words._words is None:
        if os.environ.get("CI"):
            pytest.fail(f"the redaction's word reads are not built in CI: {words.NATIVE_MISSING}")
        pytest.skip(f"{words.NATIVE_MISSING}; build it: make venv")
    return words._words
