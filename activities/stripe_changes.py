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


def _refused(err: stripe.StripeError) -> ApplicationError:
    """Stripe refusing the request is final (a retry would be refused the same way)."""
    message = err.user_message or str(err)
    return ApplicationError(message, type=type(err).__name__, non_retryable=True)


class StripeChangeActivities:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @activity.defn
    def change_subscription(self, request: ChangeSubscriptionInput) -> ChangeOutcome:
        try:
            subscription = self._client.v1.subscriptions.retrieve(request.subscription_id)
            [item] = subscription["items"]["data"]
            [price] = self._client.v1.prices.list(
                params={"lookup_keys": [request.purchase.lookup_key], "active": True}
            ).data
            seats = request.purchase.seats
            params: dict[str, Any] = {
                "items": [{"id": item["id"], "price": price.id, "quantity": seats}],
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
        except stripe.InvalidRequestError as err:
            raise _refused(err) from err
        if updated.get("pending_update"):
            invoice = updated.get("latest_invoice") or {}
            return ChangeOutcome(applied=False, open_invoice_url=invoice.get("hosted_invoice_url"))
        return ChangeOutcome(applied=True)

    @activity.defn
    def set_cancel_at_period_end(self, request: CancellationInput) -> None:
        try:
            self._client.v1.subscriptions.update(
                request.subscription_id,
                params={"cancel_at_period_end": request.at_period_end},
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.InvalidRequestError as err:
            raise _refused(err) from err

    @activity.defn
    def cancel_subscription_now(self, request: SubscriptionCallInput) -> None:
        try:
            self._client.v1.subscriptions.cancel(
                request.subscription_id, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.InvalidRequestError as err:
            raise _refused(err) from err

    @activity.defn
    def resume_paused_subscription(self, request: SubscriptionCallInput) -> None:
        try:
            self._client.v1.subscriptions.resume(
                request.subscription_id, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.InvalidRequestError as err:
            raise _refused(err) from err

    @activity.defn
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
        except stripe.InvalidRequestError as err:
            raise _refused(err) from err
        return True
