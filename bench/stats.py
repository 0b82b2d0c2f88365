"""Percentiles, the same way for every figure."""

from __future__ import annotations


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `samples` (not empty)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(seconds: list[float]) -> dict[str, float] | None:
    """p50/p90/p99/max in milliseconds; None when nothing was measured."""
    if not seconds:
        return None
    return {
        "count": len(seconds),
        "p50": round(percentile(seconds, 0.50) * 1000, 2),
        "p90": round(percentile(seconds, 0.90) * 1000, 2),
        "p99": round(percentile(seconds, 0.99) * 1000, 2),
        "max": round(max(seconds) * 1000, 2),
    }
