"""Run the benchmarks: every module `bench/<name>_bench.py` exposing `main(argv) -> int`.

python -m bench                 # all of them
python -m bench runtime --quick # one, with its own options
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(path.stem.removesuffix("_bench") for path in Path(__file__).parent.glob("*_bench.py"))


def main(argv: list[str]) -> int:
    names = available()
    if argv and argv[0] in names:
        selected, options = [argv[0]], argv[1:]
    elif argv and not argv[0].startswith("-"):
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    else:
        selected, options = names, argv
    worst = 0
    for name in selected:
        print(f"== bench {name} ==", flush=True)
        module = importlib.import_module(f"bench.{name}_bench")
        worst = max(worst, module.main(options))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
