"""Keyset cursors: stable across versions, bound to their query, refused when forged."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from multidict import MultiDict

from gateway.api.cursor import decode_cursor, encode_cursor, fingerprint
from gateway.api.problems import ApiProblem
from gateway.store.tenant_view import PageKey

KEY = PageKey(datetime(2026, 3, 1, 22, 48, 33, 261624, tzinfo=UTC), "5b0c8a4e-1f7e-4c44-9d55")
QUERY = {
    "from": datetime(2026, 3, 1, tzinfo=UTC),
    "to": None,
    "numbers": ("+14045550100",),
    "direction": "inbound",
    "dispositions": (),
    "consent": ("granted", "declined"),
    "min": 30.0,
    "order": "desc",
}


def test_a_cursor_given_out_before_still_reads_and_matches_its_query() -> None:
    """The fingerprint and the cursor's bytes are those cursors had from the start (the
    standard library's JSON), so pages keep going through an upgrade."""
    text = json.dumps(QUERY, sort_keys=True, default=str)
    former_print = hashlib.sha256(text.encode()).hexdigest()[:12]
    data = {"t": KEY.started_at.isoformat(), "i": KEY.record_id, "q": former_print}
    raw = json.dumps(data, separators=(",", ":")).encode()
    former_cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert fingerprint(QUERY) == former_print
    assert fingerprint(dict(reversed(list(QUERY.items())))) == former_print
    assert encode_cursor(KEY, former_print) == former_cursor
    assert decode_cursor(former_cursor, fingerprint(QUERY)) == KEY


def test_another_query_or_a_forged_cursor_is_refused() -> None:
    cursor = encode_cursor(KEY, fingerprint(QUERY))
    other = fingerprint({**QUERY, "direction": "outbound"})
    assert other != fingerprint(QUERY)
    forged = [
        "not-a-cursor",
        base64.urlsafe_b64encode(b'{"t":1,"i":"x","q":"y"}').decode(),
        base64.urlsafe_b64encode(b'["t"]').decode(),
        base64.urlsafe_b64encode(b'{"t":"2026-03-01T00:00:00","i":"x","q":"y"}').decode(),
    ]
    for text in [*forged, cursor]:
        with pytest.raises(ApiProblem) as refused:
            decode_cursor(text, other)
        assert refused.value.status == 400, text


def test_queries_with_numbers_are_not_kept_and_minus_zero_is_zero() -> None:
    from gateway.api.cursor import _fingerprint
    from gateway.api.params import QueryParams

    _fingerprint.cache_clear()
    fingerprint(QUERY)
    fingerprint({**QUERY, "numbers": ()})
    assert _fingerprint.cache_info().currsize == 1
    read = QueryParams(MultiDict(min_duration="-0"), ("min_duration",)).seconds("min_duration")
    assert str(read) == "0.0"
