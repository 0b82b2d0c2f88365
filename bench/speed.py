"""How fast this machine runs Python right now: the run measures it before each scenario,
and the capacity scenario before each of its points (both import it from here)."""

from __future__ import annotations

import time

SPEED_PROBE_SECONDS = 0.5


def python_speed() -> float:
    """Fixed Python work (`sum(range(1000))`) done per CPU-millisecond, right now.

    This machine's CPU runs at different speeds from hour to hour; measured before each
    scenario, it says how fast the machine was for that figure. Per CPU-millisecond of this
    thread, so the stack's own load at that moment does not lower it.
    """
    calls = 0
    started_wall, started_cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - started_wall < SPEED_PROBE_SECONDS:
        for _ in range(100):
            sum(range(1000))
        calls += 100
    return round(calls / (time.thread_time() - started_cpu) / 1000, 1)
