"""The open files the media port range needs, and the soft limit raised to fit them."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from gateway.media.descriptors import (
    DESCRIPTORS_PER_PAIR,
    RESERVE,
    media_descriptors,
    raise_open_files_limit,
)


@pytest.mark.parametrize(
    ("port_min", "port_max", "pairs"),
    [(20000, 20999, 500), (20001, 20999, 499), (20000, 20001, 1), (20000, 20000, 0)],
)
def test_three_descriptors_per_port_pair_and_a_reserve(
    port_min: int, port_max: int, pairs: int
) -> None:
    assert media_descriptors(port_min, port_max) == pairs * DESCRIPTORS_PER_PAIR + RESERVE
    without_flows = media_descriptors(port_min, port_max, flow_sockets=False)
    assert without_flows == pairs * (DESCRIPTORS_PER_PAIR - 1) + RESERVE


def test_a_limit_that_fits_is_left_as_it_is() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = raise_open_files_limit(16)
    assert (limit.before, limit.after, limit.hard) == (soft, soft, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


def _in_a_child(soft: int, hard: int, needed: int) -> tuple[int, int, int, int]:
    """raise_open_files_limit(needed) in a process started with these limits: its result
    and the soft limit the process has afterwards."""
    script = textwrap.dedent(
        f"""
        import resource
        from gateway.media.descriptors import raise_open_files_limit
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        limit = raise_open_files_limit({needed})
        print(*limit, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, reported_hard, now = (int(value) for value in done.stdout.split())
    return before, after, reported_hard, now


def test_the_soft_limit_is_raised_to_what_the_range_needs() -> None:
    before, after, _, now = _in_a_child(100, 400, 300)
    assert (before, after, now) == (100, 300, 300)


def test_the_hard_limit_caps_the_raise() -> None:
    before, after, reported_hard, now = _in_a_child(100, 200, 300)
    assert (before, after, reported_hard, now) == (100, 200, 200, 200)


def test_a_refused_raise_leaves_the_limit_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(kind: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed to set the resource limit")

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 4096))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    limit = raise_open_files_limit(1000)
    assert (limit.before, limit.after, limit.hard) == (256, 256, 4096)
    assert limit.refused == "not allowed to set the resource limit"
    assert not limit.fits(1000)


def test_an_unlimited_soft_limit_fits_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    unlimited = resource.RLIM_INFINITY
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (unlimited, unlimited))
    limit = raise_open_files_limit(10**6)
    assert limit.after == unlimited and limit.fits(10**6)
