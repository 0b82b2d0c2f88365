"""Billing cycle anchors on subscription create: ``billing_cycle_anchor`` (a timestamp) and
``billing_cycle_anchor_config`` (the anchor worked out from a day of the month).

The anchor only decides where periods fall; the shortened first period it makes is set up
by ``Engine.start_anchored_cycle`` and invoiced by ``Engine.first_period_lines``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stripe_sim.errors import invalid
from stripe_sim.params import as_dict, as_int
from stripe_sim.periods import add_intervals
from stripe_sim.request_schema import not_implemented
from stripe_sim.store import Obj

# billing_cycle_anchor_config's fields and their ranges (Stripe's API reference).
_CONFIG_RANGES = {
    "day_of_month": (1, 31),
    "hour": (0, 23),
    "minute": (0, 59),
    "month": (1, 12),
    "second": (0, 59),
}
_FUTURE_TIMESTAMP = "Invalid timestamp: must be an integer Unix timestamp in the future."


@dataclass(frozen=True)
class Anchor:
    """A requested anchor: the timestamp, and the config it was worked out from (as given,
    rendered as ``billing_cycle_anchor_config``)."""

    at: int
    config: dict[str, int | None] | None


def requested_anchor(params: dict[str, Any], price: Obj, now: int) -> Anchor | None:
    """The anchor a create request asks for, validated against the price's interval."""
    if "billing_cycle_anchor" in params and "billing_cycle_anchor_config" in params:
        raise invalid(
            "You may only specify one of these parameters: billing_cycle_anchor, "
            "billing_cycle_anchor_config.",
            param="billing_cycle_anchor",
        )
    interval = price["recurring"]["interval"]
    count = int(price["recurring"]["interval_count"])
    if "billing_cycle_anchor_config" in params:
        config = _config(as_dict(params, "billing_cycle_anchor_config"))
        if interval not in ("month", "year"):
            raise invalid(
                "billing_cycle_anchor_config is only valid with monthly and yearly price "
                "intervals.",
                param="billing_cycle_anchor_config",
            )
        return Anchor(anchor_from_config(config, now, interval, count), config)
    anchor = as_int(params, "billing_cycle_anchor")
    if anchor is None:
        return None
    if anchor <= now:
        raise invalid(_FUTURE_TIMESTAMP, param="billing_cycle_anchor")
    natural = add_intervals(now, interval, count)
    if anchor > natural:
        raise invalid(
            f"billing_cycle_anchor cannot be later than next natural billing date ({natural}) "
            "for plan",
            param="billing_cycle_anchor",
        )
    return Anchor(anchor, None)


def _config(raw: dict[str, Any]) -> dict[str, int | None]:
    config: dict[str, int | None] = {}
    for key, (low, high) in _CONFIG_RANGES.items():
        param = f"billing_cycle_anchor_config[{key}]"
        value = as_int(raw, key, param=param, required=key == "day_of_month")
        if value is not None and not low <= value <= high:
            raise invalid(
                f"Invalid integer: {value}; must be between {low} and {high}", param=param
            )
        config[key] = value
    return config


def anchor_from_config(config: dict[str, int | None], now: int, interval: str, count: int) -> int:
    """The next occurrence, after ``now``, of ``day_of_month`` at ``hour:minute:second`` UTC
    (each defaulting to ``now``'s), in ``month`` if given, else in a month a whole number of
    intervals from ``now``'s month. A month without that day is skipped, so the anchor can
    lie more than one period ahead (day 31 from February: March 31); the first full period
    still starts within one period, on the clamped day (February 28), as Stripe documents."""
    start = datetime.fromtimestamp(now, tz=UTC)
    day = config["day_of_month"]
    assert day is not None
    step = count * (12 if interval == "year" else 1)
    month_index = start.year * 12 + start.month - 1
    if config["month"] is not None:
        step = 12
        month_index += (config["month"] - start.month) % 12
    for _ in range(48):  # enough steps to reach a February 29
        year, month = divmod(month_index, 12)
        if day <= calendar.monthrange(year, month + 1)[1]:
            moment = datetime(
                year,
                month + 1,
                day,
                _or(config["hour"], start.hour),
                _or(config["minute"], start.minute),
                _or(config["second"], start.second),
                tzinfo=UTC,
            )
            if moment.timestamp() > now:
                return int(moment.timestamp())
        month_index += step
    # A yearly interval from a month that never has the day (April and day_of_month 31).
    raise not_implemented(
        "The Stripe simulator does not implement a billing_cycle_anchor_config whose "
        "day_of_month never occurs in the months the interval steps through; it refuses it "
        "rather than guess the anchor.",
        param="billing_cycle_anchor_config[day_of_month]",
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
