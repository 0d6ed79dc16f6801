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
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.fail(f"this test needs a hard open-files limit of 2048 or more, not {hard}")
    before, after, _, now = _in_a_child(256, 2048, 1000)
    assert (before, after, now) == (256, 1000, 1000)


def test_the_hard_limit_caps_the_raise() -> None:
    before, after, reported_hard, now = _in_a_child(256, 512, 1000)
    assert (before, after, reported_hard, now) == (256, 512, 512, 512)
