"""``python -m l2c.local``: the local cloud alone, in the foreground (the test session starts it so).

`l2c up` is the same plus deploying both models; this entry point needs nothing but ports.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from l2c.local.cloud import LocalCloud, Ports, run_until_stopped


def main(argv: list[str] | None = None) -> None:
    defaults = Ports()
    parser = argparse.ArgumentParser(prog="python -m l2c.local", description=__doc__)
    parser.add_argument("--control-plane-port", type=int, default=defaults.control_plane)
    parser.add_argument("--runtime-port", type=int, default=defaults.runtime)
    parser.add_argument("--api-port", type=int, default=defaults.api)
    parser.add_argument("--state-file", type=Path, help="written once every server listens")
    parser.add_argument("--pace", type=float, default=None, help="fraction of AWS's durations (default: $L2C_PACE or 0.01)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cloud = LocalCloud(Ports(args.control_plane_port, args.runtime_port, args.api_port), pace=args.pace)
    run_until_stopped(cloud, args.state_file, on_ready=lambda c: print("local cloud ready:", *c.exports(), sep="\n", flush=True))


if __name__ == "__main__":
    main()
