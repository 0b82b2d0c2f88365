"""Reading the account's newest truth from Stripe."""

from __future__ import annotations

from dataclasses import dataclass, field

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.catalog import Catalog, CatalogError, DunningPolicy
from domain.lifecycle import SubscriptionSnapshot
from domain.subscriptions import current_subscription, snapshot_from_stripe


@dataclass
class FetchSubscriptionInput:
    customer_id: str


@dataclass
class SubscriptionFetch:
    subscription: SubscriptionSnapshot | None
    # Resolved from the catalog here, so the workflow never reads the catalog file.
    grace_days: int
    dunning: DunningPolicy = field(default_factory=DunningPolicy)


class StripeSyncActivities:
    def __init__(self, client: stripe.StripeClient, catalog: Catalog) -> None:
        self._client = client
        self._catalog = catalog

    @activity.defn
    def fetch_current_subscription(self, request: FetchSubscriptionInput) -> SubscriptionFetch:
        try:
            page = self._client.v1.subscriptions.list(
                params={
                    "customer": request.customer_id,
                    "status": "all",
                    "limit": 100,
                    "expand": ["data.latest_invoice"],
                }
            )
            current = current_subscription(s.to_dict() for s in page.auto_paging_iter())
        except stripe.InvalidRequestError as err:
            # A customer that does not exist will not exist on the next attempt either.
            raise ApplicationError(
                str(err), type="StripeInvalidRequest", non_retryable=True
            ) from err
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
        )
