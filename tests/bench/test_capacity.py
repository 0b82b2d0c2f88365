"""The capacity curve's knee (`bench/scenarios.py` `knee_rate`): the highest offered rate the
stack keeps fresh, with every lower rate kept fresh too."""

from __future__ import annotations

from typing import Any

from bench.scenarios import knee_rate


def point(rate: float, p99: float | None, missing: int = 0, failures: int = 0) -> dict[str, Any]:
    latency = None if p99 is None else {"count": 10, "p50": 1.0, "p99": p99}
    return {"offered_rate": rate, "latency_ms": latency, "missing": missing, "failures": failures}


def test_the_knee_is_the_last_rate_before_the_first_that_fails() -> None:
    points = [point(25, 80), point(50, 120), point(75, 999.9), point(100, 1000)]
    assert knee_rate(points) == 75


def test_a_rate_that_passes_above_a_failing_one_does_not_count() -> None:
    points = [point(25, 80), point(50, 1500), point(75, 200)]
    assert knee_rate(points) == 25


def test_a_missing_change_fails_its_rate_whatever_its_p99() -> None:
    assert knee_rate([point(25, 80), point(50, 90, missing=1)]) == 25


def test_a_failed_webhook_fails_its_rate_whatever_its_p99() -> None:
    assert knee_rate([point(25, 80), point(50, 90, failures=1)]) == 25


def test_a_rate_that_landed_nothing_fails() -> None:
    assert knee_rate([point(25, 80), point(50, None)]) == 25


def test_no_knee_when_the_lowest_rate_already_fails() -> None:
    assert knee_rate([point(25, 1200), point(50, 90)]) is None


def test_the_points_are_taken_in_rising_order_of_rate() -> None:
    assert knee_rate([point(50, 90), point(25, 80), point(75, 2000)]) == 50


def test_every_rate_passing_makes_the_highest_the_knee() -> None:
    assert knee_rate([point(4, 10), point(8, 20)]) == 8
