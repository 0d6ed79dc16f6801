"""HTTP byte ranges (RFC 9110 14): one range of a representation, or all of it.

Only single ranges are served partially; a request for several gets the
whole representation with 200, which RFC 9110 14.2 allows. A range that
cannot be satisfied gets 416 with ``Content-Range: bytes */size``. A range
made conditional by ``If-Range`` (RFC 9110 13.1.5) is served only when the
validator is the representation's current strong entity tag; otherwise (an
older tag, a date) the whole representation is sent, so a client resuming a
download never splices two versions together.
"""

from __future__ import annotations

import re

from gateway.api.problems import ApiProblem

_SINGLE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single-range ``Range`` header; ``None`` for the
    whole representation. Raises a 416 problem for a range outside ``size``."""
    if header is None:
        return None
    match = _SINGLE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, or a unit other than bytes: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> ApiProblem:
    return ApiProblem(
        416,
        "range-not-satisfiable",
        f"the recording has {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


def range_applies(if_range: str | None, etag: str | None) -> bool:
    """Whether a ``Range`` header counts, given the request's ``If-Range`` and the
    representation's strong entity tag (RFC 9110 13.1.5: strong comparison; a date or a
    weak tag never matches a representation served without Last-Modified)."""
    if if_range is None:
        return True
    return etag is not None and if_range.strip() == etag


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the representation (RFC 9110 13.1.2: weak comparison),
    so a GET answers 304 Not Modified."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))
