"""Field checks of the writer operations: each raises ``ValueError`` naming the field.

Instants must carry a time zone (an instant without one is ambiguous); SHA-256
digests are 64 lowercase hex digits, as ``hashlib``'s ``hexdigest`` writes them
(FIPS 180-4); JSON values are those RFC 8259 can represent (finite numbers,
text-keyed objects).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def optional_text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {type(value).__name__}")


def require_instant(name: str, value: object) -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} is naive; give a timezone-aware (UTC) time")


def optional_instant(name: str, value: object) -> None:
    if value is not None:
        require_instant(name, value)


def one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def optional_one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value is not None:
        one_of(name, value, allowed)


def optional_sha256(name: str, value: object) -> None:
    if value is not None:
        require_sha256(name, value)


def require_sha256(name: str, value: object) -> None:
    if not isinstance(value, str) or _SHA256_HEX.fullmatch(value) is None:
        raise ValueError(
            f"{name} must be a SHA-256 digest as 64 lowercase hex digits, got {value!r}"
        )


def require_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def require_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def optional_seconds(name: str, value: object) -> None:
    if value is not None:
        require_seconds(name, value)


def check_json(name: str, value: object) -> None:
    """``value`` is JSON: text, numbers, booleans, null, lists and text-keyed mappings.

    ValueError names the first offending place (``name.key[index]``); the
    path is only put together for the error, not on the way down.
    """
    problem = _json_problem(value)
    if problem is not None:
        path, reason = problem
        raise ValueError(f"{name}{path} {reason}")


def _json_problem(value: object) -> tuple[str, str] | None:
    """Where under ``value`` the first non-JSON item sits, and why; None when all is JSON."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return "", f"holds {value!r}, which JSON cannot represent"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return "", f"has a key {key!r} that is not a string"
            problem = _json_problem(item)
            if problem is not None:
                return f".{key}{problem[0]}", problem[1]
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _json_problem(item)
            if problem is not None:
                return f"[{index}]{problem[0]}", problem[1]
        return None
    return "", f"holds a {type(value).__name__}, which is not JSON"
