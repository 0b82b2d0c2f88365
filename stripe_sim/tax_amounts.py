"""The tax on an invoice: which rates apply to each line and what they come to.

A line is taxed by its subscription item's ``tax_rates``, else by the subscription's
``default_tax_rates`` (manual rates), or, with ``automatic_tax[enabled]``, by the rate the
simulator's table (``SimulatorSettings.tax_rates_by_country``) has for the customer's country.
Tax is worked out per line on the line's amount after its discounts, rounded half up to the
currency's smallest unit. An exclusive rate adds its tax to the line; an inclusive one takes its
tax out of the line's amount.

Only the engine (``billing``) imports this module; the API routes are in ``stripe_sim.tax``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from stripe_sim.store import Obj, Store

# What Stripe sends as the tax calculation's settings when automatic tax is on and the
# platform itself is liable.
SELF_LIABILITY = {"account": None, "type": "self"}


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), ROUND_HALF_UP))


def location_country(cust: Obj) -> str | None:
    """The country Stripe Tax locates the customer in: the address's (shipping addresses and
    IP addresses are not modelled)."""
    address = cust.get("address") or {}
    return address.get("country") or None


def automatic_rate(store: Store, country: str, inclusive: bool) -> Obj | None:
    """The tax rate Stripe Tax applies in ``country`` (None: the table has no rate there,
    so no tax is collected), as a tax rate object the simulator keeps for it."""
    percentage = store.settings.tax_rates_by_country.get(country)
    if percentage is None:
        return None
    for rate in store.of_kind("tax_rate"):
        if (
            rate.get("_automatic")
            and rate["country"] == country
            and rate["percentage"] == float(percentage)
            and rate["inclusive"] == inclusive
        ):
            return rate
    sales_tax = country == "US"
    return store.insert(
        {
            "id": store.new_id("txr_"),
            "object": "tax_rate",
            "active": True,
            "country": country,
            "created": store.clock_now(None),
            "description": None,
            "display_name": "Sales Tax" if sales_tax else "VAT",
            "effective_percentage": float(percentage),
            "flat_amount": None,
            "inclusive": inclusive,
            "jurisdiction": country,
            "jurisdiction_level": "country",
            "livemode": False,
            "metadata": {},
            "percentage": float(percentage),
            "rate_type": "percentage",
            "state": None,
            "tax_type": "sales_tax" if sales_tax else "vat",
            "_automatic": True,
        }
    )


@dataclass(frozen=True)
class TaxTotals:
    exclusive: int = 0
    inclusive: int = 0
    # The inclusive tax on the lines before their discounts (for ``subtotal_excluding_tax``).
    inclusive_before_discounts: int = 0


def line_taxes(base: int, rates: list[Obj], reason: str) -> list[Obj]:
    """The ``taxes`` of a line whose amount after discounts is ``base``. Inclusive rates first
    take their tax out of ``base``; what remains is the taxable amount of every rate."""
    inclusive = [r for r in rates if r["inclusive"]]
    share = sum((Decimal(str(r["percentage"])) for r in inclusive), Decimal(0))
    taxable = half_up(Decimal(base) * 100 / (100 + share)) if inclusive else base
    taxes = []
    for rate in rates:
        percentage = Decimal(str(rate["percentage"]))
        if rate["inclusive"] and len(inclusive) == 1:
            amount = base - taxable  # one inclusive rate: exactly what was taken out
        else:
            amount = half_up(Decimal(taxable) * percentage / 100)
        taxes.append(
            {
                "amount": amount,
                "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
                "tax_rate_details": {"tax_rate": rate["id"]},
                "taxability_reason": reason,
                "taxable_amount": taxable,
                "type": "tax_rate_details",
            }
        )
    return taxes


def _rates_for_line(store: Store, sub: Obj, line: Obj, country: str | None) -> list[Obj]:
    if sub["automatic_tax"]["enabled"]:
        price = store.objects[line["pricing"]["price_details"]["price"]]
        rate = (
            automatic_rate(store, country, price["tax_behavior"] == "inclusive")
            if country
            else None
        )
        return [rate] if rate is not None else []
    item = store.get(line["_subscription_item"], "subscription_item")
    ids = (item["tax_rates"] if item else []) or sub["default_tax_rates"]
    return [store.objects[i] for i in ids]


def apply_taxes(store: Store, inv: Obj, sub: Obj) -> None:
    """Tax the invoice's lines (after discounts) and fill in the invoice's tax fields."""
    cust = store.objects[inv["customer"]]
    country = location_country(cust)
    automatic = sub["automatic_tax"]["enabled"]
    if automatic:
        inv["automatic_tax"] = {
            "disabled_reason": None,
            "enabled": True,
            "liability": dict(SELF_LIABILITY),
            "provider": "stripe",
            "status": "complete" if country else "requires_location_inputs",
        }
    inv["default_tax_rates"] = list(sub["default_tax_rates"])
    if cust.get("address"):
        inv["customer_address"] = dict(cust["address"])
    inv["customer_tax_ids"] = [
        {"type": t["type"], "value": t["value"]}
        for t in store.of_kind("tax_id")
        if t["customer"] == cust["id"]
    ]
    reason = "standard_rated" if automatic else "not_available"
    by_rate: dict[tuple[str, str], Obj] = {}
    for line_id in inv["_line_ids"]:
        line = store.objects[line_id]
        rates = _rates_for_line(store, sub, line, country)
        base = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
        line["taxes"] = line_taxes(base, rates, reason)
        for tax in line["taxes"]:
            key = (tax["tax_rate_details"]["tax_rate"], tax["tax_behavior"])
            total = by_rate.setdefault(key, {**tax, "amount": 0, "taxable_amount": 0})
            total["amount"] += tax["amount"]
            total["taxable_amount"] += tax["taxable_amount"]
    inv["total_taxes"] = list(by_rate.values())


def tax_totals(store: Store, inv: Obj) -> TaxTotals:
    exclusive = inclusive = before = 0
    for line_id in inv["_line_ids"]:
        line = store.objects[line_id]
        for tax in line["taxes"]:
            if tax["tax_behavior"] == "exclusive":
                exclusive += tax["amount"]
                continue
            inclusive += tax["amount"]
            rate = store.objects[tax["tax_rate_details"]["tax_rate"]]
            [undiscounted] = line_taxes(line["amount"], [rate], tax["taxability_reason"])
            before += undiscounted["amount"]
    return TaxTotals(exclusive, inclusive, before)
