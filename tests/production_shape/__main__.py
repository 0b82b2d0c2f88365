"""A bigger production-shape run than CI's, printing the time to converge after each fault.

    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python -m tests.production_shape --accounts 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from uuid import uuid4

from db.engine import make_engine, make_session_factory
from tests.fixtures_db import fresh_database
from tests.production_shape.scenario import FaultOutcome, run_scenario
from tests.production_shape.stack import (
    errors_but_503,
    production_stack,
    unavailable_without_retry_after,
)


async def run(accounts: int, run_dir: Path, within: float) -> int:
    with fresh_database(run_dir) as url:
        engine = make_engine(url)
        try:
            async with production_stack(run_dir, url, make_session_factory(engine)) as stack:

                def report(outcome: FaultOutcome) -> None:
                    print(
                        f"{outcome.fault:36} matched Stripe in "
                        f"{outcome.seconds_to_match_stripe:6.1f} s, emails settled in "
                        f"{outcome.seconds_to_converge:6.1f} s"
                    )

                await run_scenario(stack, accounts, uuid4().hex[:6], report, within)
                answers = stack.answers.since(0)
                print(
                    f"{len(stack.may_arrive_twice)} email(s) sent by an attempt a fault cut "
                    "short after the SMTP server took it (may arrive twice, as documented)"
                )
                for label in stack.one_shot_aborts:
                    print(f"{label} aborted while exiting (temporalio/sdk-python#300), ran again")
        finally:
            engine.dispose()
    statuses = Counter((a.phase, a.status or a.failure) for a in answers)
    print("API answers by phase and status (or why there was none):")
    for (phase, status), number in sorted(statuses.items(), key=str):
        print(f"  {phase:45} {status!s:14} x{number}")
    errors = errors_but_503(answers)
    print(f"{len(errors)} requests got a 5xx other than 503, or no answer from a running API")
    silent = unavailable_without_retry_after(answers)
    print(f"{len(silent)} answers were 503 without Retry-After")
    for answer in [*errors, *silent][:20]:
        print(
            f"  API {answer.api + 1}: {answer.status or answer.failure} on {answer.path} "
            f"({answer.phase})"
        )
    return 1 if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.production_shape", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument(
        "--within", type=float, default=600, help="seconds each convergence may take"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    if not os.environ.get("TEST_DATABASE_URL"):
        sys.exit("set TEST_DATABASE_URL to a PostgreSQL server (see tests/fixtures_db.py)")
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="production-shape-"))
    try:
        code = asyncio.run(run(args.accounts, run_dir, args.within))
    finally:
        if args.keep_logs:
            print(f"logs in {run_dir}")
        else:
            shutil.rmtree(run_dir)
    print(f"wall time {time.monotonic() - started:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
