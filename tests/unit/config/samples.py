"""A valid settings file to start from, and finding the line of a fragment."""

from __future__ import annotations

VALID = """\
instance_id = "gw-test"
log_level = "INFO"

[sip]
listen = [
  { transport = "udp", host = "127.0.0.1", port = 5060 },
  { transport = "tcp", host = "127.0.0.1", port = 5060 },
]

[media]
host = "127.0.0.1"
port_min = 20000
port_max = 20999

[store]
url = "sqlite+aiosqlite:///var/test.sqlite3"

[[tenants]]
name = "acme"

[tenants.pbx]
host = "127.0.0.2"

[tenants.trunk]
host = "127.0.0.3"
"""


def line_with(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based number of the line holding the ``occurrence``-th ``fragment``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{fragment!r} (occurrence {occurrence}) is not in the text")
