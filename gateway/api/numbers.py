"""A telephone number as an API client types it, read as the tenant reads its calls' numbers."""

from __future__ import annotations

from gateway.api.problems import bad_request
from gateway.calls.numbers import to_e164
from gateway.config import Settings


def tenant_region(settings: Settings, tenant: str) -> str:
    try:
        return settings.tenant_named(tenant).default_region
    except KeyError:
        return "US"


def read_number(settings: Settings, tenant: str, typed: str, name: str = "number") -> str | None:
    """``typed`` in E.164, read against the tenant's region (``(404) 555-0100`` in the US);
    None when it is no valid number. Too long to be one is a 400."""
    if len(typed) > 40:
        raise bad_request(f"{name} is too long to be a telephone number")
    return to_e164(typed, tenant_region(settings, tenant))


def e164_of(settings: Settings, tenant: str, typed: str, name: str = "number") -> str:
    """``typed`` in E.164 (:func:`read_number`); a 400 when it is no valid number."""
    e164 = read_number(settings, tenant, typed, name)
    if e164 is None:
        raise bad_request(
            f"{name}={typed!r} is not a valid telephone number (E.164 such as +14045550100, "
            "or national in the tenant's region)"
        )
    return e164
