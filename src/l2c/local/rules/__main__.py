"""``python -m l2c.local.rules [--write FILE]``: the AWS rules as a markdown table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2c.local.rules import load_all
from l2c.local.rules.table import markdown_table, with_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l2c.local.rules", description=__doc__)
    parser.add_argument("--write", type=Path, metavar="FILE", help="put the table between FILE's rules markers")
    args = parser.parse_args(argv)
    table = markdown_table(load_all())
    if args.write is None:
        sys.stdout.write(table)
        return 0
    try:
        args.write.write_text(with_table(args.write.read_text(), table))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote the table of {table.count(chr(10)) - 2} rules into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
