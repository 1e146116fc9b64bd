"""Command-line front of the sandbox, shared by `python -m oma.sandbox` (no Django: benchmarks start it in a
subprocess) and `python manage.py genstore_sandbox` (make run)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from oma.sandbox.server import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_VERSION,
    DEFAULT_CLIENT_SECRET,
    GenstoreSandbox,
)
from oma.sandbox.shop import DEFAULT_CACHE_ORDERS

DEFAULT_PORT = 8100


def parse_rate_limit(text: str) -> tuple[int, float] | None:
    """ "40/2" -> (40, 2.0): bucket capacity / refill per second. "off" -> None (never limited)."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    capacity, _, refill = text.partition("/")
    try:
        parsed = (int(capacity), float(refill or capacity))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CAPACITY/REFILL such as 40/2, got {text!r}") from None
    if parsed[0] < 1 or parsed[1] < 0:
        raise argparse.ArgumentTypeError("capacity must be >= 1 and refill >= 0")
    return parsed


def parse_shops(values: Sequence[str] | None) -> list[str]:
    """--shop a --shop b,c -> [a, b, c]; nothing -> [shop1]."""
    handles = [h.strip() for value in values or () for h in value.split(",") if h.strip()]
    return handles or ["shop1"]


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is between 0 and 1")
    return value


def _anchor(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})")
    parser.add_argument("--orders", type=int, default=500, help="generated orders per shop (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same orders (default 1)")
    parser.add_argument(
        "--shop", action="append", metavar="HANDLE", help="shop handle; repeat or comma-separate (default shop1)"
    )
    parser.add_argument("--access-token", default=DEFAULT_ACCESS_TOKEN)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET, help="signs webhooks")
    parser.add_argument(
        "--rate-limit", type=parse_rate_limit, default=(40, 2.0), metavar="CAPACITY/REFILL",
        help="token bucket per shop, e.g. 40/2, 200/20, or off (default 40/2)",
    )  # fmt: skip
    parser.add_argument("--fault-rate", type=_rate, default=0.0, help="share of requests answered with an error")
    parser.add_argument("--fault-status", type=int, default=503)
    parser.add_argument("--slow-rate", type=_rate, default=0.0, help="share of requests answered late")
    parser.add_argument("--slow-seconds", type=float, default=0.0)
    parser.add_argument(
        "--write-fault-rate", type=_rate, default=0.0, help="share of writes applied but answered with an error"
    )
    parser.add_argument("--write-fault-status", type=int, default=502)
    parser.add_argument("--api-version", default=DEFAULT_API_VERSION, help="shown in links and webhooks")
    parser.add_argument(
        "--anchor", type=_anchor, default=None, help="generated orders end here (default: today 00:00 UTC)"
    )
    parser.add_argument("--days", type=int, default=60, help="generated orders span this many days (default 60)")
    parser.add_argument(
        "--cache-orders",
        type=int,
        default=DEFAULT_CACHE_ORDERS,
        help=f"serialized orders kept per shop, ~1.4 KB each (default {DEFAULT_CACHE_ORDERS}); "
        "raise to the order count to make repeated full walks cheap",
    )
    parser.add_argument("--log-requests", action="store_true", help="log every request to stderr")


def sandbox_from_options(options: Mapping[str, Any]) -> GenstoreSandbox:
    sandbox = GenstoreSandbox(
        orders=options["orders"],
        seed=options["seed"],
        host=options["host"],
        port=options["port"],
        shops=parse_shops(options.get("shop")),
        access_token=options["access_token"],
        client_secret=options["client_secret"],
        rate_limit=options["rate_limit"],
        api_version=options["api_version"],
        anchor=options.get("anchor"),
        days=options["days"],
        cache_orders=options.get("cache_orders", DEFAULT_CACHE_ORDERS),
        verbose=options.get("log_requests", False),
    )
    sandbox.set_faults(
        error_rate=options["fault_rate"],
        status=options["fault_status"],
        slow_rate=options["slow_rate"],
        slow_seconds=options["slow_seconds"],
        write_error_rate=options["write_fault_rate"],
        write_error_status=options["write_fault_status"],
    )
    return sandbox


def serve(sandbox: GenstoreSandbox, *, announce: Callable[[str], None]) -> None:
    """Start, announce the one startup line, run until Ctrl-C or SIGTERM, stop."""
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    sandbox.start()
    try:
        announce(sandbox.startup_line())
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oma.sandbox", description="Run the Genstore sandbox server.")
    add_sandbox_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    def announce(line: str) -> None:
        print(line, flush=True)

    serve(sandbox_from_options(options), announce=announce)
    return 0
