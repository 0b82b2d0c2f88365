"""Delta debugging (Zeller's ddmin, simplified): drop chunks of steps while the schedule
still shows every violation kind it showed first (a smaller schedule that fails some other
way is a different finding)."""

from __future__ import annotations

from tests.sim.runner import RunResult, run_schedule
from tests.sim.world import World

MAX_RUNS = 40


async def minimize(world: World, failing: RunResult, max_runs: int = MAX_RUNS) -> RunResult:
    wanted = failing.kinds
    best = failing
    chunks = 2
    runs = 0
    while len(best.schedule.steps) >= 2 and runs < max_runs:
        steps = len(best.schedule.steps)
        size = max(1, steps // chunks)
        reduced = False
        for start in range(0, steps, size):
            if runs >= max_runs:
                break
            candidate = best.schedule.without(set(range(start, min(steps, start + size))))
            runs += 1
            result = await run_schedule(world, candidate)
            if result.kinds >= wanted:
                best, reduced = result, True
                chunks = max(chunks - 1, 2)
                break
        if not reduced:
            if size == 1:
                break
            chunks = min(steps, chunks * 2)
    return best
