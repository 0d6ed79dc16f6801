"""Fixtures of the DSP tests: Python's ``audioop`` as the G.711 reference."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def audioop() -> ModuleType:
    """The standard library's ``audioop`` (deprecated in 3.11, removed in 3.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ModuleNotFoundError:
            pytest.skip("audioop is gone from this Python (removed in 3.13)")
