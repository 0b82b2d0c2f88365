"""Reading the account's newest truth from Stripe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import classify_failures
from core.stripe_client import retrieve_customer
from domain.catalog import Catalog, DunningPolicy
from domain.lifecycle import SubscriptionSnapshot
from domain.subscriptions import (
    deciding_subscription,
    products_to_expand,
    snapshot_from_stripe,
    with_products,
)


@dataclass
class FetchSubscriptionInput:
    customer_id: str


@dataclass
class SubscriptionFetch:
    subscription: SubscriptionSnapshot | None
    # Resolved from the catalog here, so the workflow never reads the catalog file.
    grace_days: int
    dunning: DunningPolicy = field(default_factory=DunningPolicy)
    # Ids of live plan subscriptions beside the deciding one: operators must look at them.
    # Defaulted so recorded histories from before the field still decode.
    other_live_plan_subscriptions: list[str] = field(default_factory=list)


class StripeSyncActivities:
    def __init__(self, client: stripe.StripeClient, catalog: Catalog) -> None:
        self._client = client
        self._catalog = catalog

    @activity.defn
    @classify_failures
    async def fetch_current_subscription(
        self, request: FetchSubscriptionInput
    ) -> SubscriptionFetch:
        try:
            choice = deciding_subscription(
                await self._subscriptions(request.customer_id), self._catalog
            )
            current = choice.deciding
            if current is None:
                await self._check_customer_exists(request.customer_id)
        except stripe.InvalidRequestError as err:
            if err.code != "resource_missing":
                raise
            raise _customer_missing(request.customer_id, "does not exist") from err
        if current is None:
            return SubscriptionFetch(
                subscription=None, grace_days=self._catalog.grace_days_for(None)
            )
        # A price outside the catalog raises CatalogError: final, the account's sync error.
        snapshot = snapshot_from_stripe(current, self._catalog)
        return SubscriptionFetch(
            subscription=snapshot,
            grace_days=self._catalog.grace_days_for(snapshot.interval),
            dunning=self._catalog.dunning_for(snapshot.interval),
            other_live_plan_subscriptions=list(choice.also_live),
        )

    async def _check_customer_exists(self, customer_id: str) -> None:
        """No live subscription may also mean a customer Stripe does not know (any more):
        tell that apart from a customer who has none, so it never reads as a cancellation."""
        if (await retrieve_customer(self._client, customer_id)).get("deleted"):
            raise _customer_missing(customer_id, "was deleted")

    async def _subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        """Every subscription of the customer as plain JSON, page by page. Read raw because
        building StripeObjects (and turning them back into dicts) cost more CPU than the rest
        of the account's event, and asynchronously because a thread hop and `requests` cost
        more than aiohttp on the worker's event loop; errors are raised as the library's
        usual exceptions."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "status": "all",
            "limit": 100,
            "expand": ["data.latest_invoice"],
        }
        subscriptions: list[dict[str, Any]] = []
        while True:
            response = await self._client.raw_request_async("get", "/v1/subscriptions", **params)
            page: dict[str, Any] = response.data
            subscriptions.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        # Stripe expands at most four levels (`data.items.data.price.product` is five), so the
        # products that can name a negotiated plan are read apart, and only when needed.
        product_ids = sorted(products_to_expand(subscriptions, self._catalog))
        if not product_ids:
            return subscriptions
        products: dict[str, dict[str, Any]] = {}
        for start in range(0, len(product_ids), 100):
            response = await self._client.raw_request_async(
                "get", "/v1/products", ids=product_ids[start : start + 100], limit=100
            )
            products.update((p["id"], p) for p in response.data["data"])
        return with_products(subscriptions, products)


def _customer_missing(customer_id: str, what: str) -> ApplicationError:
    """A customer we linked that Stripe no longer knows is an anomaly for operators (a wrong
    STRIPE_SECRET_KEY, a test key in live, a restored sandbox, a customer deleted by mistake),
    never a cancellation: the account keeps its state and shows this as its sync error."""
    return ApplicationError(
        f"Stripe customer {customer_id} {what}; the account keeps its state until an operator "
        "checks the Stripe key and the customer (docs/runbook.md)",
        type="CustomerMissing",
        non_retryable=True,
    )
