"""Thousands of seeds on demand:

    python -m tests.sim --seeds 5000 [--start N] [--jobs 2] [--minimize]

Each job is a process with its own world (time-skipping server, Stripe simulator, SQLite
database unless TEST_DATABASE_URL names a PostgreSQL server); seeds are dealt round-robin.
Prints a progress line, every failing seed's reproduction, and a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.sim.minimize import minimize
from tests.sim.runner import run_schedule
from tests.sim.schedule import generate, reproduction


def _quiet() -> None:
    # The workflow logs every retried activity; thousands of seeds would drown the table.
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("temporalio", "stripe_sim", "activities", "workflows", "stripe", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


async def _run_seeds(seeds: list[int], queue: multiprocessing.Queue, do_minimize: bool) -> None:  # type: ignore[type-arg]
    from db.engine import migrate
    from tests.fixtures_db import fresh_database
    from tests.sim.world import running_world

    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        migrate(url)
        async with running_world(url) as world:
            for seed in seeds:
                schedule = generate(seed)
                try:
                    result = await run_schedule(world, schedule)
                except Exception as err:
                    queue.put(
                        (
                            seed,
                            0.0,
                            [f"harness_error: {type(err).__name__}: {err}"],
                            "",
                            0,
                            [],
                            False,
                        )
                    )
                    continue
                minimized = ""
                if result.violations and do_minimize:
                    small = await minimize(world, result)
                    minimized = small.schedule.describe()
                queue.put(
                    (
                        seed,
                        result.seconds,
                        [str(v) for v in result.violations],
                        minimized or schedule.describe(),
                        result.crash_duplicates,
                        result.diagnosis,
                        result.inconclusive,
                    )
                )


def _job(seeds: list[int], queue: multiprocessing.Queue, do_minimize: bool) -> None:  # type: ignore[type-arg]
    _quiet()
    asyncio.run(_run_seeds(seeds, queue, do_minimize))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--minimize", action="store_true", help="delta-debug failing schedules")
    parser.add_argument("--verbose", action="store_true", help="print each failing schedule")
    args = parser.parse_args(argv)
    seeds = list(range(args.start, args.start + args.seeds))
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    jobs = [
        multiprocessing.Process(target=_job, args=(seeds[i :: args.jobs], queue, args.minimize))
        for i in range(args.jobs)
    ]
    started = time.monotonic()
    for job in jobs:
        job.start()
    kinds: Counter[str] = Counter()
    first_seed: dict[str, tuple[int, int]] = {}
    failed = crash_duplicates = 0
    inconclusive_seeds: list[int] = []
    for done in range(1, len(seeds) + 1):
        seed, _seconds, violations, schedule, crashes, diagnosis, inconclusive = queue.get()
        crash_duplicates += crashes
        if inconclusive:
            inconclusive_seeds.append(seed)
        if violations:
            failed += 1
            for kind in {v.split(":", 1)[0] for v in violations}:
                kinds[kind] += 1
                first_seed.setdefault(kind, (seed, done))
            print(f"\nseed={seed} FAILED — reproduce: {reproduction(seed)}")
            for v in violations:
                print(f"  {v}")
            for d in diagnosis:
                print(f"  diagnosis: {d}")
            if args.verbose or args.minimize:
                print(schedule)
        elapsed = time.monotonic() - started
        print(
            f"\r[{done}/{len(seeds)}] failed {failed}  {done / elapsed:.2f} seeds/s",
            end="",
            file=sys.stderr,
            flush=True,
        )
    for job in jobs:
        job.join()
    elapsed = time.monotonic() - started
    print("\n")
    print(f"{'runs':>24} {len(seeds)}")
    print(f"{'passed':>24} {len(seeds) - failed - len(inconclusive_seeds)}")
    print(f"{'inconclusive':>24} {len(inconclusive_seeds)}   {sorted(inconclusive_seeds)}")
    for kind, count in kinds.most_common():
        seed, nth = first_seed[kind]
        print(f"{kind:>24} {count}   (first: seed={seed}, after {nth} runs)")
    print(f"{'email dup. by crashes':>24} {crash_duplicates}")
    print(f"{'seconds':>24} {elapsed:.0f}")
    print(f"{'seeds/s':>24} {len(seeds) / elapsed:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
