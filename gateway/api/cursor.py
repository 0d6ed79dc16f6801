"""Opaque cursors of keyset pagination.

A cursor is URL-safe base64 of a small JSON object: the start time and id
of the last row served, the sort order, and a fingerprint of the filters it
was made under. A cursor shown with other filters or another order is
refused (it would skip or repeat rows), and so is any text that is not one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Hashable
from datetime import datetime
from typing import Any

import orjson

from gateway.api.problems import bad_request
from gateway.store.tenant_view import PageKey


def fingerprint(query: dict[str, Any]) -> str:
    """A short hash of the query parameters that decide which rows match, and their order
    (worked out once per distinct query: every page of a listing asks again). Queries
    naming telephone numbers are not kept: an erased number must not live on here."""
    items = tuple(sorted(query.items()))
    if query.get("numbers"):
        return _fingerprint.__wrapped__(items)
    return _fingerprint(items)


@functools.lru_cache(maxsize=4096)
def _fingerprint(items: tuple[tuple[str, Hashable], ...]) -> str:
    # the text hashed since cursors were first given out: a cursor stays valid across
    # versions and across the instances of a rolling upgrade
    text = json.dumps(dict(items), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(key: PageKey, query_print: str) -> str:
    data = {"t": key.started_at.isoformat(), "i": key.record_id, "q": query_print}
    raw = orjson.dumps(data)  # ASCII values: the bytes json.dumps wrote, compact
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, query_print: str) -> PageKey:
    """The page key in ``text``; a 400 problem if it is not a cursor of this query."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = orjson.loads(raw)
        started_at = datetime.fromisoformat(data["t"])
        record_id = data["i"]
        made_for = data["q"]
        if started_at.tzinfo is None or not isinstance(record_id, str):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise bad_request(
            "cursor is not one this API gave out; use the next link of the previous page"
        ) from None
    if made_for != query_print:
        raise bad_request(
            "cursor belongs to another query: keep the filters and order of the page it came "
            "from, or start again without a cursor"
        )
    return PageKey(started_at, record_id)
