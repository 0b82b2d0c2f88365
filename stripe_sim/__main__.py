"""``python -m stripe_sim [--host H] [--port 12111]``: run the simulator standalone."""

from __future__ import annotations

import argparse
import logging
import threading

from stripe_sim.server import SimulatorServer
from stripe_sim.settings import SimulatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sim", description="Offline Stripe simulator (test mode)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--retries-exhausted",
        choices=["cancel", "unpaid", "past_due"],
        default="cancel",
        help="what happens to a subscription when payment retries run out",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="base URL for hosted page links (default: http://HOST:PORT)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = SimulatorSettings(retries_exhausted_action=args.retries_exhausted)
    server = SimulatorServer(args.host, args.port, settings, public_url=args.public_url).start()
    logging.getLogger("stripe_sim").info(
        "Stripe simulator ready at %s (use stripe.api_base = %r, any sk_test_ key)",
        server.url,
        server.url,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
