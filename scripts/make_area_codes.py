#!/usr/bin/env python3
"""Write gateway/consent/nanp_area_codes.py from the installed phonenumbers data.

    python scripts/make_area_codes.py           write the table
    python scripts/make_area_codes.py --check   exit 1 when the committed table differs

Run it after upgrading phonenumbers, and commit the result with the upgrade.
How the table is built: gateway/consent/areacode_gen.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.consent.areacode_gen import generate, render  # noqa: E402

TABLE_PATH = ROOT / "gateway" / "consent" / "nanp_area_codes.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--output", type=Path, default=TABLE_PATH, help="file to write or check")
    args = parser.parse_args(argv)
    table = generate()
    text = render(table)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is not what phonenumbers {table.phonenumbers_version} gives: "
                "run python scripts/make_area_codes.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(
        f"{args.output}: {len(table.area_codes)} area codes, {len(table.exchanges)} exchange "
        f"prefixes, {len(table.non_geographic)} non-geographic, {len(table.unplaced)} unplaced "
        f"(phonenumbers {table.phonenumbers_version})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
