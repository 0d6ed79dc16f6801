"""Helpers of the tests that drive a running gateway's API: keys, requests, waiting, and
the short notice the tests' tenant plays (a consent block to put in its settings)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dsp.wav import write_wav
from tests.support.gateway import GatewayProcess, callgate_command

RATE = 8000

SHORT_NOTICE_CONSENT = """home = "US-NY"
minimum_mode = "notice"

[tenants.consent.notices.en]
notice = "notices/notice.wav"
opt_out = "notices/notice.wav"
opt_in = "notices/notice.wav"
"""
"""The body of a tenant's ``[tenants.consent]``: a notice to everyone, staying on is consent,
every notice the one :func:`write_notice` writes."""


def notice_audio() -> np.ndarray:
    """A short rising sweep: the notice the tests' tenant plays."""
    t = np.arange(int(0.6 * RATE)) / RATE
    return (np.sin(2 * np.pi * (300 + 400 * t) * t) * 8000).astype(np.int16)


def write_notice(config_dir: Path) -> None:
    """The notice :data:`SHORT_NOTICE_CONSENT` names, beside the gateway's settings."""
    (config_dir / "notices").mkdir(exist_ok=True)
    write_wav(config_dir / "notices" / "notice.wav", notice_audio(), RATE)


def make_key(gateway: GatewayProcess, tenant: str, role: str) -> str:
    done = subprocess.run(
        [
            *callgate_command(),
            "keys",
            "create",
            "--config",
            str(gateway.config_path),
            "--tenant",
            tenant,
            "--role",
            role,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=gateway.config_path.parent,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.splitlines()[0]
    assert key.startswith("cgk_")
    return key


def get(http: httpx.Client, key: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return http.get(path, headers=headers, **kwargs)


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
