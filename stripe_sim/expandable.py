"""Up-front validation of ``expand[]`` for writes, so that a bad path is refused before the
request changes anything (as Stripe does), instead of failing while rendering the result."""

from __future__ import annotations

from typing import Any

from stripe_sim import objects
from stripe_sim.cards import MAGIC_PAYMENT_METHODS
from stripe_sim.errors import invalid
from stripe_sim.settings import SimulatorSettings
from stripe_sim.store import Store

# Which kind of object an expandable id field points to.
_TARGETS = {
    "customer": "customer",
    "default_payment_method": "payment_method",
    "payment_method": "payment_method",
    "latest_invoice": "invoice",
    "invoice": "invoice",
    "subscription": "subscription",
    "product": "product",
    "default_price": "price",
    "test_clock": "test_helpers.test_clock",
    "payment_intent": "payment_intent",
}
# Fields that hold a list object of another kind.
_LISTS = {
    ("subscription", "items"): "subscription_item",
    ("invoice", "lines"): "line_item",
    ("invoice", "payments"): "invoice_payment",
}
# Nested objects whose expandable fields are known.
_NESTED = {
    ("subscription_item", "price"): "price",
    ("customer", "invoice_settings"): "customer.invoice_settings",
    ("invoice", "parent"): "invoice.parent",
    ("invoice.parent", "subscription_details"): "invoice.parent.subscription_details",
    ("invoice_payment", "payment"): "invoice_payment.payment",
}


def _fields() -> dict[str, set[str]]:
    store = Store(SimulatorSettings())
    cust = objects.customer(store, now=0, clock=None)
    sub = objects.subscription(store, now=0, customer_id="cus_x", clock=None)
    price = objects.price(store, now=0)
    fields = {
        "customer": set(cust),
        "product": set(objects.product(store, now=0)),
        "price": set(price),
        "payment_method": set(
            objects.payment_method(store, MAGIC_PAYMENT_METHODS["pm_card_visa"], now=0)
        ),
        "subscription": set(sub) | {"items"},
        "subscription_item": set(
            objects.subscription_item(
                store, now=0, subscription_id="sub_x", price={"id": "price_x"}, quantity=1
            )
        )
        | {"price", "plan"},
        "invoice": set(
            objects.invoice(store, now=0, cust=cust, billing_reason="manual", subscription=sub)
        )
        | {"lines", "payments"},
        "customer.invoice_settings": {"default_payment_method"},
        "invoice.parent": {"subscription_details", "quote_details", "type"},
        "invoice.parent.subscription_details": {"subscription", "metadata"},
        "invoice_payment.payment": {"payment_intent", "type", "charge"},
    }
    return {kind: {f for f in names if not f.startswith("_")} for kind, names in fields.items()}


_FIELDS = _fields()


def check(kind: str, paths: list[str]) -> None:
    for path in paths:
        _check_path(kind, path.split("."))


def _check_path(kind: str, parts: list[str]) -> None:
    current: str | None = kind
    index = 0
    while index < len(parts) and current is not None:
        part = parts[index]
        fields = _FIELDS.get(current)
        if fields is None:
            return  # a kind without a known shape: checked when rendering
        if part not in fields:
            raise invalid(f"This property cannot be expanded ({part}).", param="expand")
        listed = _LISTS.get((current, part))
        if listed is not None:
            if index + 1 < len(parts) and parts[index + 1] != "data":
                raise invalid(
                    f"This property cannot be expanded ({parts[index + 1]}).", param="expand"
                )
            current, index = listed, index + 2
            continue
        current = _NESTED.get((current, part)) or _TARGETS.get(part)
        index += 1
        if current is None and index < len(parts):
            raise invalid(f"This property cannot be expanded ({parts[index]}).", param="expand")


def kind_for_write(path: str) -> str | None:
    """The kind of object a write endpoint answers with (None: not checked up front)."""
    segments: list[Any] = path.strip("/").split("/")
    if len(segments) < 2:
        return None
    return {
        "customers": "customer",
        "subscriptions": "subscription",
        "invoices": "invoice",
        "payment_methods": "payment_method",
        "prices": "price",
        "products": "product",
    }.get(segments[1])
