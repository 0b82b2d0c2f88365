"""Billing period arithmetic as Stripe does it: periods are counted from the billing cycle
anchor, so a subscription anchored on Jan 31 renews Feb 28, Mar 31, Apr 30, ..."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

_SECONDS = {"day": 86400, "week": 7 * 86400}


def add_intervals(anchor: int, interval: str, count: int) -> int:
    """``anchor`` moved forward by ``count`` intervals (month/year clamp to the month end)."""
    if interval in _SECONDS:
        return anchor + _SECONDS[interval] * count
    start = datetime.fromtimestamp(anchor, tz=UTC)
    months = count * (12 if interval == "year" else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    moved = start.replace(year=year, month=month, day=day)
    return int(moved.timestamp())


def period_bounds(anchor: int, interval: str, interval_count: int, cycle: int) -> tuple[int, int]:
    """Start and end of the ``cycle``-th period after ``anchor`` (cycle 0 starts at anchor)."""
    return (
        add_intervals(anchor, interval, interval_count * cycle),
        add_intervals(anchor, interval, interval_count * (cycle + 1)),
    )


def format_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%d %b %Y")
