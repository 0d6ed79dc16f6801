"""Query parameters read strictly: unknown, repeated or malformed ones are a 400.

A typo in a filter must not silently widen a query (``?dispositon=busy``
returning every call), so every endpoint names the parameters it takes and
the rest are refused with their names.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from multidict import MultiMapping

from gateway.api.problems import bad_request


class QueryParams:
    """The query of one request, checked against the names an endpoint accepts."""

    def __init__(self, query: MultiMapping[str], allowed: Iterable[str]) -> None:
        allowed_names = set(allowed)
        unknown = sorted(set(query) - allowed_names)
        if unknown:
            raise bad_request(
                f"unknown query parameter(s): {', '.join(unknown)}; "
                f"this endpoint takes: {', '.join(sorted(allowed_names)) or 'none'}",
                parameters=unknown,
            )
        repeated = sorted(name for name in set(query) if len(query.getall(name)) > 1)
        if repeated:
            raise bad_request(
                f"query parameter(s) given more than once: {', '.join(repeated)} "
                "(give a comma-separated list where several values are allowed)",
                parameters=repeated,
            )
        self.values: Mapping[str, str] = {name: query[name] for name in query}

    def text(self, name: str, max_length: int = 200) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not value or len(value) > max_length:
            raise bad_request(f"{name} must be 1 to {max_length} characters")
        if not value.isprintable():
            raise bad_request(f"{name} holds control characters")
        return value

    def record_id(self, name: str) -> str | None:
        """A record id: a UUID in its canonical text form."""
        value = self.values.get(name)
        if value is None:
            return None
        if not is_record_id(value):
            raise bad_request(f"{name}={value[:60]!r} is not a record id (a UUID)")
        return value

    def instant(self, name: str) -> datetime | None:
        """An RFC 3339 date-time with its offset (``2026-12-06T10:00:00Z``)."""
        value = self.values.get(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise bad_request(
                f"{name}={value!r} is not an RFC 3339 date-time such as 2026-12-06T10:00:00Z"
            ) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise bad_request(
                f"{name}={value!r} has no UTC offset: add Z or +hh:mm (an instant without "
                "one is ambiguous)"
            )
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise bad_request(f"{name}={value!r} is outside the range of dates") from None

    def choice(self, name: str, choices: Iterable[str]) -> str | None:
        value = self.values.get(name)
        options = tuple(choices)
        if value is not None and value not in options:
            raise bad_request(f"{name}={value!r} is not one of: {', '.join(options)}")
        return value

    def choices(self, name: str, choices: Iterable[str]) -> tuple[str, ...]:
        """A comma-separated list, each one of ``choices``."""
        value = self.values.get(name)
        if value is None:
            return ()
        options = tuple(choices)
        items = tuple(dict.fromkeys(part.strip() for part in value.split(",")))
        wrong = [item for item in items if item not in options]
        if wrong or not items:
            raise bad_request(
                f"{name}: {', '.join(map(repr, wrong)) or 'empty'} not among: {', '.join(options)}"
            )
        return items

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        if not value.isascii() or not value.isdigit() or len(value) > 9:
            raise bad_request(f"{name}={value!r} is not a whole number")
        number = int(value)
        if not low <= number <= high:
            raise bad_request(f"{name} must be between {low} and {high}, got {number}")
        return number

    def seconds(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise bad_request(f"{name}={value!r} is not a number of seconds") from None
        if not math.isfinite(number) or number < 0:
            raise bad_request(f"{name} must be a finite number of seconds >= 0")
        return number + 0.0  # -0 read as 0: one query, one cursor fingerprint


def is_record_id(text: str) -> bool:
    """Whether ``text`` is a UUID as the store writes ids (lower-case, hyphenated)."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
