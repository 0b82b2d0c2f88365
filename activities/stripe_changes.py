"""Changing a subscription in Stripe on the account workflow's behalf.

Every call carries an idempotency key made from the workflow id and the step, so a retried
activity never changes the subscription twice. What happened is then read back by the
workflow's next sync, never inferred from these answers alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import classify_failures
from domain.lifecycle import Purchase


@dataclass
class ChangeSubscriptionInput:
    subscription_id: str
    purchase: Purchase
    # "always_invoice" for upgrades (charged now), "none" for a downgrade at period end.
    proration_behavior: str
    idempotency_key: str


@dataclass
class ChangeOutcome:
    # False when the payment for an upgrade failed: Stripe kept the old plan
    # (`payment_behavior=pending_if_incomplete`) and the invoice stays open.
    applied: bool
    open_invoice_url: str | None = None


@dataclass
class CancellationInput:
    subscription_id: str
    idempotency_key: str
    # True: cancel at the end of the paid period (reversible); False: undo that.
    at_period_end: bool


@dataclass
class SubscriptionCallInput:
    subscription_id: str
    idempotency_key: str


class StripeChangeActivities:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @activity.defn
    @classify_failures
    def change_subscription(self, request: ChangeSubscriptionInput) -> ChangeOutcome:
        subscription = self._client.v1.subscriptions.retrieve(request.subscription_id)
        items = subscription["items"]["data"]
        if len(items) != 1:
            raise ApplicationError(
                f"subscription {request.subscription_id} has {len(items)} items; a plan change "
                "needs exactly one (remove add-ons in the Stripe Dashboard, then resync)",
                type="UnsupportedSubscription",
                non_retryable=True,
            )
        prices = self._client.v1.prices.list(
            params={"lookup_keys": [request.purchase.lookup_key], "active": True}
        ).data
        if len(prices) != 1:
            raise ApplicationError(
                f"{len(prices)} active prices have the lookup key "
                f"{request.purchase.lookup_key!r}; expected one (dataface-billing catalog apply)",
                type="PriceNotFound",
                non_retryable=True,
            )
        params: dict[str, Any] = {
            "items": [
                {"id": items[0]["id"], "price": prices[0].id, "quantity": request.purchase.seats}
            ],
            "proration_behavior": request.proration_behavior,
            "expand": ["latest_invoice"],
        }
        if request.proration_behavior == "always_invoice":
            params["payment_behavior"] = "pending_if_incomplete"
        updated = self._client.v1.subscriptions.update(
            request.subscription_id,
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": request.idempotency_key},
        ).to_dict()
        if updated.get("pending_update"):
            invoice = updated.get("latest_invoice") or {}
            return ChangeOutcome(applied=False, open_invoice_url=invoice.get("hosted_invoice_url"))
        return ChangeOutcome(applied=True)

    @activity.defn
    @classify_failures
    def set_cancel_at_period_end(self, request: CancellationInput) -> None:
        self._client.v1.subscriptions.update(
            request.subscription_id,
            params={"cancel_at_period_end": request.at_period_end},
            options={"idempotency_key": request.idempotency_key},
        )

    @activity.defn
    @classify_failures
    def cancel_subscription_now(self, request: SubscriptionCallInput) -> None:
        self._client.v1.subscriptions.cancel(
            request.subscription_id, options={"idempotency_key": request.idempotency_key}
        )

    @activity.defn
    @classify_failures
    def resume_paused_subscription(self, request: SubscriptionCallInput) -> None:
        self._client.v1.subscriptions.resume(
            request.subscription_id, options={"idempotency_key": request.idempotency_key}
        )

    @activity.defn
    @classify_failures
    def pay_open_invoice(self, request: SubscriptionCallInput) -> bool:
        """Retry the subscription's open invoice now; False when there is none to pay."""
        try:
            subscription = self._client.v1.subscriptions.retrieve(
                request.subscription_id, params={"expand": ["latest_invoice"]}
            ).to_dict()
            invoice = subscription.get("latest_invoice")
            if not invoice or invoice["status"] != "open":
                return False
            self._client.v1.invoices.pay(
                invoice["id"], options={"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError:
            return True  # attempted and declined: the sync shows the account still unpaid
        return True
