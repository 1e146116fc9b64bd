"""`python -m tracking.sandbox`: the carrier sandbox as a plain process (no Django), for benchmarks and tests that
want it on its own core. Prints `READY <base url>` once listening. See tracking/sandbox/remote.py."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from tracking.sandbox.server import CARRIERS, CarrierSandbox, Limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracking.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8200, help="0: any free port (printed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--epoch", default="", help="ISO time the journeys start after (default: 48 h ago)")
    parser.add_argument("--clock", default="", help="ISO time to freeze the sandbox clock at (default: real time)")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--rate-limit", action="append", default=[], metavar="CARRIER=REQUESTS/SECONDS")
    args = parser.parse_args(argv)

    limits: dict[str, Limit] = {}
    for item in args.rate_limit:
        carrier, _, spec = item.partition("=")
        requests, _, seconds = spec.partition("/")
        if carrier not in CARRIERS or not requests or not seconds:
            parser.error(f"--rate-limit must look like CARRIER=REQUESTS/SECONDS with a known carrier: {item!r}")
        limits[carrier] = Limit(int(requests), float(seconds))
    sandbox = CarrierSandbox(
        port=args.port, host=args.host, epoch=datetime.fromisoformat(args.epoch) if args.epoch else None,
        rate_limits=limits, token_ttl=args.token_ttl, time_scale=args.time_scale,
    )
    if args.clock:
        sandbox.set_clock(datetime.fromisoformat(args.clock))
    sandbox.start()
    print(f"READY {sandbox.base_url}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or Ctrl-D)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
