"""Reading the account's newest truth from Stripe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.catalog import Catalog, CatalogError, DunningPolicy
from domain.lifecycle import SubscriptionSnapshot
from domain.subscriptions import deciding_subscription, snapshot_from_stripe


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
    async def fetch_current_subscription(
        self, request: FetchSubscriptionInput
    ) -> SubscriptionFetch:
        try:
            choice = deciding_subscription(
                await self._subscriptions(request.customer_id), self._catalog
            )
        except stripe.InvalidRequestError as err:
            # A customer that does not exist will not exist on the next attempt either.
            raise ApplicationError(
                str(err), type="StripeInvalidRequest", non_retryable=True
            ) from err
        current = choice.deciding
        if current is None:
            return SubscriptionFetch(
                subscription=None, grace_days=self._catalog.grace_days_for(None)
            )
        try:
            snapshot = snapshot_from_stripe(current, self._catalog)
        except CatalogError as err:
            raise ApplicationError(str(err), type="CatalogError", non_retryable=True) from err
        return SubscriptionFetch(
            subscription=snapshot,
            grace_days=self._catalog.grace_days_for(snapshot.interval),
            dunning=self._catalog.dunning_for(snapshot.interval),
            other_live_plan_subscriptions=list(choice.also_live),
        )

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
                return subscriptions
            params["starting_after"] = page["data"][-1]["id"]
