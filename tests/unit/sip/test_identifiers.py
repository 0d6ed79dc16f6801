"""Fresh SIP identifiers (RFC 3261 8.1.1.4, 8.1.1.7, 19.3) and cached IP literals."""

from __future__ import annotations

import ipaddress
import os
import re

import pytest

from gateway.sip.ip import ip_literal
from gateway.sip.random_ids import RANDOM_CHUNK, RandomHex
from gateway.sip.sdp import new_origin
from gateway.sip.transaction import MAGIC_COOKIE, new_branch, new_call_id, new_tag


def test_identifiers_have_their_shape_and_never_repeat() -> None:
    # enough of each to run through several chunks of the pool
    count = 3 * RANDOM_CHUNK // 6
    branches = {new_branch() for _ in range(count)}
    tags = {new_tag() for _ in range(count)}
    call_ids = {new_call_id("gw.example") for _ in range(count)}
    assert len(branches) == len(tags) == len(call_ids) == count
    assert all(re.fullmatch(re.escape(MAGIC_COOKIE) + "[0-9a-f]{20}", b) for b in branches)
    assert all(re.fullmatch("[0-9a-f]{12}", t) for t in tags)
    assert all(re.fullmatch("[0-9a-f]{24}@gw\\.example", c) for c in call_ids)


def test_sdp_session_ids_are_fresh_and_fit_in_31_bits() -> None:
    ids = {int(new_origin("192.0.2.1").session_id) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(1 <= value < 2**31 for value in ids)


def test_the_pool_hands_out_each_digit_once() -> None:
    pool = RandomHex()
    taken = "".join(pool.take(7) for _ in range(RANDOM_CHUNK // 7))
    # one chunk's worth of digits, all handed out in order, none twice
    assert len(taken) == 2 * 7 * (RANDOM_CHUNK // 7)
    pieces = [taken[i : i + 14] for i in range(0, len(taken), 14)]
    assert len(set(pieces)) == len(pieces)
    assert len(pool.take(RANDOM_CHUNK + 10)) == 2 * (RANDOM_CHUNK + 10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_identifiers() -> None:
    pool = RandomHex()
    pool.take(4)  # the pool now holds unused digits
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        os.write(write_end, pool.take(16).encode())
        os._exit(0)
    os.close(write_end)
    from_child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(from_child) == 32
    assert pool.take(16) != from_child


def test_ip_literals_parse_once_and_names_are_refused() -> None:
    assert ip_literal("192.0.2.7") is ip_literal("192.0.2.7")
    assert ip_literal("2001:db8::1") == ipaddress.IPv6Address("2001:db8::1")
    with pytest.raises(ValueError):
        ip_literal("pbx.example")
    with pytest.raises(ValueError):
        ip_literal("[2001:db8::1]")


def test_long_or_scoped_literals_parse_but_are_not_kept() -> None:
    scoped = "fe80::1%" + "x" * 1000
    assert ip_literal(scoped).scope_id == "x" * 1000
    assert ip_literal(scoped) is not ip_literal(scoped)
