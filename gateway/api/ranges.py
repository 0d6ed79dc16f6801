"""HTTP byte ranges (RFC 9110 14): one range of a representation, or all of it.

Only single ranges are served partially; a request for several gets the
whole representation with 200, which RFC 9110 14.2 allows. A range that
cannot be satisfied gets 416 with ``Content-Range: bytes */size``.
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
