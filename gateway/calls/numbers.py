"""Telephone numbers of a call's parties, normalised to E.164 where they parse.

The user part of a SIP or tel URI (RFC 3261 19.1.1, RFC 3966) carries the
number as dialled: ``+4930123456``, ``030123456``, ``15551234567``, with
visual separators. ``phonenumbers`` (libphonenumber) reads it against the
tenant's home region.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from gateway.sip.uri import SipUri

_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")


@lru_cache(maxsize=65536)
def to_e164(dialled: str | None, default_region: str) -> str | None:
    """Return ``dialled`` in E.164 form, or None when it is not a valid number.

    Visual separators are dropped first (RFC 3966 5.1.1). A leading ``00`` or
    ``+`` marks an international number; anything else is read as a national
    number of ``default_region``.
    """
    digits = dialled_digits(dialled)
    if digits is None:
        return None
    try:
        parsed = phonenumbers.parse(digits, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def dialled_digits(dialled: str | None) -> str | None:
    """``dialled`` without visual separators (RFC 3966 5.1.1): digits, maybe after a ``+``;
    None when it holds anything else (or nothing)."""
    if not dialled:
        return None
    digits = dialled.translate(_VISUAL_SEPARATORS)
    rest = digits[1:] if digits.startswith("+") else digits
    if not rest or not rest.isascii() or not rest.isdigit():
        return None
    return digits


def uri_number(uri: SipUri) -> str | None:
    """The number a SIP URI names: its user part (``;`` parameters cut off)."""
    if uri.scheme == "tel":
        return uri.host
    if uri.user is None:
        return None
    return uri.user.split(";", 1)[0]
