"""From what the workflow knows (plan id, ISO dates, an invoice link) to what a template says.

The workflow hands over plain strings; this adds the plan's display name and price from the
catalog and formats dates and amounts for people. Keys the workflow did not send stay absent,
so a template that needs one fails loudly instead of saying "by ." to a customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domain.catalog import Catalog, CatalogError, Plan
from notifications.render import EmailRenderError

DATE_KEYS = ("grace_ends_at", "period_ends_at", "trial_ends_at", "cancel_at")
# Stripe's currencies whose smallest unit is the unit itself (no cents).
ZERO_DECIMAL_CURRENCIES = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"})
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
INTERVAL_WORDS = {"month": "month", "year": "year"}


def email_context(
    raw: Mapping[str, str], catalog: Catalog, *, billing_portal_url: str
) -> dict[str, Any]:
    """The template context for `raw` (the workflow's `SendEmailInput.context`).

    Always present: `billing_portal_url`, `payment_url` (the open invoice, else the portal),
    `payment_link_label`, `seats`, `amount` and `price` (None without a price),
    `previous_plan_name` (None unless `previous_plan` was sent). Present when sent: `plan`
    with `plan_name`, `interval`, `open_invoice_url` and the dates in `DATE_KEYS`, formatted.
    """
    context: dict[str, Any] = {
        "billing_portal_url": billing_portal_url,
        "amount": None,
        "price": None,
        "previous_plan_name": None,
    }
    invoice_url = raw.get("open_invoice_url") or None
    if invoice_url:
        context["open_invoice_url"] = invoice_url
        context["payment_url"] = invoice_url
        context["payment_link_label"] = "Pay the open invoice"
    else:
        context["payment_url"] = billing_portal_url
        context["payment_link_label"] = "Update your card"
    for key in DATE_KEYS:
        if raw.get(key):
            context[key] = format_date(key, raw[key])

    seats = _seats(raw.get("seats"))
    context["seats"] = seats
    if raw.get("previous_plan"):
        context["previous_plan_name"] = _plan(catalog, raw["previous_plan"]).name
    if not raw.get("plan"):
        return context
    plan = _plan(catalog, raw["plan"])
    context["plan"] = plan.id
    context["plan_name"] = plan.name
    interval = raw.get("interval") or None
    if interval is not None:
        context["interval"] = interval
    if interval in plan.prices:
        context["amount"], context["price"] = _price_lines(plan, interval, seats)
    return context


def format_date(key: str, value: str) -> str:
    """`2026-12-01T09:30:00+00:00` → `1 December 2026` (dates are UTC throughout)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EmailRenderError(f"{key} is not an ISO date: {value!r}") from None
    return f"{moment.day} {moment:%B %Y}"


def format_money(minor_units: int, currency: str) -> str:
    currency = currency.lower()
    if currency in ZERO_DECIMAL_CURRENCIES:
        number = f"{minor_units:,}"
    else:
        number = f"{minor_units / 100:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"


def _price_lines(plan: Plan, interval: str, seats: int) -> tuple[str, str]:
    """(amount per period, the price as a sentence fragment) for the plan at `interval`."""
    price = plan.prices[interval]
    per = INTERVAL_WORDS.get(interval, interval)
    if not plan.per_seat:
        amount = format_money(price.unit_amount, price.currency)
        return amount, f"{amount} per {per}"
    amount = format_money(price.unit_amount * seats, price.currency)
    unit = format_money(price.unit_amount, price.currency)
    seat_word = "seat" if seats == 1 else "seats"
    return amount, f"{amount} per {per} ({seats} {seat_word} at {unit} each)"


def _plan(catalog: Catalog, plan_id: str) -> Plan:
    try:
        return catalog.plan(plan_id)
    except CatalogError as err:
        raise EmailRenderError(str(err)) from err


def _seats(value: str | None) -> int:
    if not value:
        return 1
    try:
        seats = int(value)
    except ValueError:
        raise EmailRenderError(f"seats is not a number: {value!r}") from None
    if seats < 1:
        raise EmailRenderError(f"seats must be at least 1, got {seats}")
    return seats
