"""``python -m stripe_sim [--host H] [--port 12111] ...``: run the simulator standalone.

`dataface-billing stripe-simulator` takes the same options: both are built by
`add_simulator_arguments` and run by `serve`.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep the state in this file across restarts (default: memory only)",
    )
    parser.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO", help="the simulator's"
    )


def serve(args: argparse.Namespace) -> None:
    """Run the simulator the options describe until interrupted (Ctrl-C). `--log-level` sets
    the simulator's own loggers; the process's logging is its command's to set up."""
    # Imported here: `dataface-billing` builds its parser with this module for every command.
    from stripe_sim.server import SimulatorServer
    from stripe_sim.settings import SimulatorSettings

    logging.getLogger("stripe_sim").setLevel(args.log_level)
    settings = SimulatorSettings(retries_exhausted_action=args.retries_exhausted)
    server = SimulatorServer(
        args.host, args.port, settings, public_url=args.public_url, state_path=args.state_file
    ).start()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sim", description="Offline Stripe simulator (test mode)."
    )
    add_simulator_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The whole process: the libraries' lines (httpx's, one per webhook delivery) follow it too.
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    serve(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
