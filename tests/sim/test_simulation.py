"""The seeded simulation in CI: a fixed set of seeds, each a whole account life (see
tests/sim/README.md). A failing seed prints its reproduction and its minimised schedule."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

import pytest

from tests.sim.minimize import minimize
from tests.sim.runner import run_schedule
from tests.sim.schedule import generate, reproduction
from tests.sim.world import World, running_world

# About 1.5 minutes per database on 2 cores; SIM_CI_SEEDS widens it locally.
CI_SEEDS = range(int(os.environ.get("SIM_CI_SEEDS", "60")))
# Minimising reruns the seed; a small budget keeps a red CI run within minutes.
MINIMIZE_RUNS = int(os.environ.get("SIM_MINIMIZE_RUNS", "6"))


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    # Every injected fault is logged with its traceback, hundreds per seed.
    quiet = [logging.getLogger(n) for n in ("temporalio", "workflows", "activities")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        async with running_world(database_url) as running:
            yield running
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


@pytest.mark.parametrize("seed", CI_SEEDS, ids=lambda s: f"seed={s}")
async def test_account_life(world: World, seed: int) -> None:
    result = await run_schedule(world, generate(seed))
    if result.inconclusive:
        pytest.skip(f"seed={seed}: stopped at the wall-clock limit (time skipping held back)")
    if not result.violations:
        return
    smallest = await minimize(world, result, max_runs=MINIMIZE_RUNS) if MINIMIZE_RUNS else result
    lines = [
        f"seed={seed} — reproduce: {reproduction(seed)}",
        *(f"  {v}" for v in result.violations),
        *(f"  diagnosis: {d}" for d in result.diagnosis),
        f"minimised schedule ({len(smallest.schedule.steps)} of "
        f"{len(result.schedule.steps)} steps, still {sorted(smallest.kinds)}):",
        smallest.schedule.describe(),
    ]
    pytest.fail("\n".join(lines), pytrace=False)
