"""Publishing the catalog to Stripe: plan the changes, then apply them idempotently.

Stripe prices are immutable: a changed amount becomes a new price that takes over the lookup
key (`transfer_lookup_key`), and the old one is archived. Nothing is ever deleted. Products and
prices this service manages carry `metadata[managed_by]`, so prices it does not own are left
alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import stripe

from domain.catalog import Catalog, Plan, Price

MANAGED_BY = "dataface-billing"


@dataclass(frozen=True)
class CatalogChange:
    action: str  # create_product | update_product | create_price | replace_price | archive_price
    target: str  # the plan id or price lookup key
    detail: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    stripe_id: str | None = None

    def describe(self) -> str:
        return f"{self.action:<15} {self.target:<24} {self.detail}"


def _product_params(plan: Plan) -> dict[str, Any]:
    return {
        "name": f"Dataface {plan.name}",
        "metadata": {"plan": plan.id, "managed_by": MANAGED_BY},
    }


def _price_params(price: Price, product_id: str | None) -> dict[str, Any]:
    return {
        "product": product_id,
        "currency": price.currency,
        "unit_amount": price.unit_amount,
        "recurring": {"interval": price.interval},
        "lookup_key": price.lookup_key,
        "metadata": {"plan": price.plan, "interval": price.interval, "managed_by": MANAGED_BY},
    }


def _managed(service: Any) -> list[dict[str, Any]]:
    """Every object of a Stripe list endpoint that this service manages, as plain dicts."""
    objects = [obj.to_dict() for obj in service.list(params={"limit": 100}).auto_paging_iter()]
    return [o for o in objects if (o.get("metadata") or {}).get("managed_by") == MANAGED_BY]


def _price_matches(existing: dict[str, Any], price: Price) -> bool:
    recurring = existing.get("recurring") or {}
    return (
        existing.get("unit_amount") == price.unit_amount
        and existing.get("currency") == price.currency
        and recurring.get("interval") == price.interval
    )


def plan_catalog_changes(client: stripe.StripeClient, catalog: Catalog) -> list[CatalogChange]:
    products = {p["metadata"]["plan"]: p for p in _managed(client.v1.products)}
    active_by_key = {
        p["lookup_key"]: p for p in _managed(client.v1.prices) if p["active"] and p["lookup_key"]
    }

    changes: list[CatalogChange] = []
    wanted_keys = set()
    for plan in catalog.plans.values():
        if not plan.self_serve:
            continue
        product = products.get(plan.id)
        params = _product_params(plan)
        if product is None:
            changes.append(CatalogChange("create_product", plan.id, params["name"], params))
        elif product["name"] != params["name"] or not product["active"]:
            changes.append(
                CatalogChange("update_product", plan.id, params["name"], params, product["id"])
            )
        for price in plan.prices.values():
            wanted_keys.add(price.lookup_key)
            amount = f"{price.unit_amount} {price.currency}/{price.interval}"
            existing = active_by_key.get(price.lookup_key)
            if existing is None:
                changes.append(
                    CatalogChange(
                        "create_price", price.lookup_key, amount, _price_params(price, None)
                    )
                )
            elif not _price_matches(existing, price):
                changes.append(
                    CatalogChange(
                        "replace_price",
                        price.lookup_key,
                        f"{existing['unit_amount']} -> {amount}",
                        _price_params(price, None),
                        existing["id"],
                    )
                )
    for key, existing in active_by_key.items():
        if key not in wanted_keys:
            changes.append(
                CatalogChange("archive_price", key, "no longer in the catalog", {}, existing["id"])
            )
    return changes


def apply_catalog_changes(
    client: stripe.StripeClient, catalog: Catalog, changes: list[CatalogChange]
) -> None:
    product_ids: dict[str, str] = {}
    for change in changes:
        if change.action == "create_product":
            product = client.v1.products.create(params=change.params)  # type: ignore[arg-type]
            product_ids[change.target] = product.id
        elif change.action == "update_product":
            assert change.stripe_id is not None
            client.v1.products.update(
                change.stripe_id,
                params={**change.params, "active": True},  # type: ignore[arg-type]
            )
            product_ids[change.target] = change.stripe_id
    for change in changes:
        if change.action in ("create_price", "replace_price"):
            price = catalog.price_by_lookup_key(change.target)
            assert price is not None
            product_id = product_ids.get(price.plan) or _product_id(client, price.plan)
            params = {**change.params, "product": product_id, "transfer_lookup_key": True}
            client.v1.prices.create(params=params)  # type: ignore[arg-type]
        if change.action in ("replace_price", "archive_price"):
            assert change.stripe_id is not None
            client.v1.prices.update(change.stripe_id, params={"active": False})


def _product_id(client: stripe.StripeClient, plan_id: str) -> str:
    for product in _managed(client.v1.products):
        if product["metadata"].get("plan") == plan_id:
            return str(product["id"])
    raise LookupError(f"no Stripe product for plan {plan_id}")
