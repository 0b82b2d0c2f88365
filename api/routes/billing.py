"""What a customer does to buy and change a plan, called by the Dataface app for them.

Checkout and the portal are Stripe pages; plan changes, cancel and resume are validated
Updates of the account's workflow, so they take turns with Stripe's own events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import stripe
from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from stripe.params import CustomerCreateParams

from api.deps import (
    AccountIdPath,
    AccountWorkflowsDep,
    AppTokenDep,
    CatalogDep,
    SessionFactoryDep,
    SettingsDep,
)
from api.edge import RETRY_AFTER_SECONDS
from api.schemas import CustomerContact, EntitlementsAnswer
from core.config import Settings
from core.stripe_client import make_stripe_client
from db import repository
from domain.catalog import Catalog
from domain.lifecycle import BillingState, Purchase
from domain.plan_changes import PlanChangeError, classify_change, purchase_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["billing"])


class PlanRequest(BaseModel):
    plan: str = Field(examples=["team"])
    interval: Literal["month", "year"] = "month"
    seats: int = Field(1, ge=1)


class CheckoutRequest(PlanRequest, CustomerContact):
    pass


class CheckoutAnswer(BaseModel):
    url: str
    session_id: str


class PortalAnswer(BaseModel):
    url: str


class PlanChangeAnswer(BaseModel):
    kind: str
    applied: bool
    open_invoice_url: str | None
    entitlements: EntitlementsAnswer


class CancelBody(BaseModel):
    # Kept so that `false` is refused with a reason rather than silently ignored.
    at_period_end: bool = True


@contextmanager
def _stripe_failures() -> Iterator[None]:
    """Stripe's errors as answers the app can act on: retry later (503) or a conflict."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as err:
        logger.warning("Stripe unavailable: %r", err)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="Stripe is unavailable; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from err
    except stripe.InvalidRequestError as err:
        if err.code == "resource_missing":
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"Stripe no longer knows this account's billing records: {err.user_message}",
            ) from err
        logger.error("Stripe refused a request: %r", err)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, detail="Stripe refused the request"
        ) from err
    except stripe.StripeError as err:
        logger.error("Stripe call failed: %r", err)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail="Stripe call failed") from err


def _unprocessable(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=reason)


def _entitlements(sessions: sessionmaker[Session], account_id: str) -> EntitlementsAnswer:
    with sessions() as session:
        record = repository.read_entitlements(session, account_id)
    return (
        EntitlementsAnswer.free_plan(account_id)
        if record is None
        else EntitlementsAnswer.from_record(record)
    )


@router.post("/checkout", status_code=status.HTTP_201_CREATED)
def start_checkout(
    account_id: AccountIdPath,
    body: CheckoutRequest,
    _: AppTokenDep,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
) -> CheckoutAnswer:
    """A Stripe Checkout page for a first subscription; 409 when the account already has one.

    The account's open page is given again (the same session) for the same purchase, and
    expired for another one: an account never has two pages it could complete, so it never
    pays twice. A retried request therefore needs no `Idempotency-Key`.

    `email` and `name`, when given, go on the Stripe customer the account's first checkout
    creates; without an email, the one typed into Checkout is set on the customer.
    """
    try:
        purchase = purchase_for(catalog, body.plan, body.interval, body.seats)
    except PlanChangeError as err:
        raise _unprocessable(str(err)) from err
    current = _entitlements(sessions, account_id)
    if current.billing_state != BillingState.FREE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"the account is {current.billing_state}: change its plan instead "
            f"(POST /v1/accounts/{account_id}/plan)",
        )
    client = make_stripe_client(settings)
    with _stripe_failures():
        customer_id = _customer_for(client, sessions, account_id, body)
        with sessions() as session:
            stored = repository.stored_checkout(session, account_id)
        attempt = 1
        if stored is not None:
            reused = _reuse_or_end(client, stored, purchase)
            if reused is not None:
                return reused
            attempt = stored.attempt + 1
        return _create_checkout(
            client, sessions, settings, catalog, account_id, customer_id, purchase, attempt
        )


# Stripe statuses of a subscription that is over: its checkout no longer stands in the way.
_ENDED_SUBSCRIPTION = frozenset({"canceled", "incomplete_expired"})


def _reuse_or_end(
    client: stripe.StripeClient, stored: repository.StoredCheckout, purchase: Purchase
) -> CheckoutAnswer | None:
    """The stored session when it is open for this purchase; None when it is over (expired
    by this call if it was open for another purchase), so a new one may be made."""
    previous = client.v1.checkout.sessions.retrieve(
        stored.session_id, params={"expand": ["subscription"]}
    )
    if previous.status == "complete":
        subscription = previous.subscription
        if not isinstance(subscription, stripe.Subscription) or (
            subscription.status not in _ENDED_SUBSCRIPTION
        ):
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail="a checkout already completed; the subscription is being set up",
            )
        return None
    if previous.status != "open":
        return None
    if (stored.lookup_key, stored.seats) == (purchase.lookup_key, purchase.seats):
        assert previous.url is not None
        return CheckoutAnswer(url=previous.url, session_id=previous.id)
    try:
        client.v1.checkout.sessions.expire(previous.id)
    except stripe.InvalidRequestError as err:
        # Completed or expired by someone else since it was read: look again.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the account's open checkout changed meanwhile; retry",
        ) from err
    return None


def _create_checkout(
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    catalog: Catalog,
    account_id: str,
    customer_id: str,
    purchase: Purchase,
    attempt: int,
) -> CheckoutAnswer:
    [price] = client.v1.prices.list(
        params={"lookup_keys": [purchase.lookup_key], "active": True}
    ).data
    subscription_data: dict[str, Any] = {"metadata": {"account_id": account_id}}
    if trial_days := catalog.plan(purchase.plan).trial_days:
        subscription_data["trial_period_days"] = trial_days
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": account_id,
        "line_items": [{"price": price.id, "quantity": purchase.seats}],
        "subscription_data": subscription_data,
        "metadata": {"account_id": account_id},
        "success_url": settings.checkout_success_url,
        "cancel_url": settings.checkout_cancel_url,
    }
    # One key per attempt: concurrent checkouts of the same purchase get one session, of
    # another purchase Stripe's idempotency error; a new attempt (the last one ended) gets a
    # new session even within Stripe's 24-hour key window. A key reused after that window
    # finds its session expired too (sessions last 24 hours).
    try:
        session = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"checkout-{account_id}-{attempt}"},
        )
    except stripe.IdempotencyError as err:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="another checkout for this account, for another purchase, is being opened",
        ) from err
    assert session.url is not None
    stored = repository.StoredCheckout(session.id, purchase.lookup_key, purchase.seats, attempt)
    with sessions.begin() as db:
        repository.store_checkout(db, account_id, stored)
    return CheckoutAnswer(url=session.url, session_id=session.id)


def _customer_for(
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    account_id: str,
    contact: CustomerContact,
) -> str:
    """The account's Stripe customer, created (once, with the contact given) and linked when
    it has none."""
    with sessions() as session:
        existing = repository.customer_for_account(session, account_id)
    if existing is not None:
        return existing
    params: CustomerCreateParams = {"metadata": {"account_id": account_id}}
    if contact.email is not None:
        params["email"] = contact.email
    if contact.name is not None:
        params["name"] = contact.name
    customer = client.v1.customers.create(
        params=params,
        options={"idempotency_key": f"customer-for-{account_id}"},
    )
    with sessions.begin() as session:
        repository.link_customer(session, account_id, customer.id)
    return customer.id


@router.post("/portal", status_code=status.HTTP_201_CREATED)
def open_portal(
    account_id: AccountIdPath, _: AppTokenDep, settings: SettingsDep, sessions: SessionFactoryDep
) -> PortalAnswer:
    """A Stripe customer portal page: change plan, update the card, cancel."""
    with sessions() as session:
        customer_id = repository.customer_for_account(session, account_id)
    if customer_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the account has no Stripe customer")
    with _stripe_failures():
        portal = make_stripe_client(settings).v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": settings.checkout_success_url}
        )
    return PortalAnswer(url=portal.url)


def _current_subscription(sessions: sessionmaker[Session], account_id: str) -> Any:
    with sessions() as session:
        lifecycle = repository.stored_lifecycle(session, account_id)
    if lifecycle is None or lifecycle.subscription is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the account has no subscription: start one with a checkout",
        )
    return lifecycle.subscription


@router.post("/plan")
async def change_plan(
    account_id: AccountIdPath,
    body: PlanRequest,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
    catalog: CatalogDep,
) -> PlanChangeAnswer:
    """Upgrade now (prorated, charged at once) or downgrade at the end of the period."""
    try:
        purchase = purchase_for(catalog, body.plan, body.interval, body.seats)
        current = await run_in_threadpool(_current_subscription, sessions, account_id)
        change = classify_change(catalog, current, purchase)
    except PlanChangeError as err:
        raise _unprocessable(str(err)) from err
    result = await workflows.change_plan(account_id, change)
    return PlanChangeAnswer(
        kind=result.kind,
        applied=result.applied,
        open_invoice_url=result.open_invoice_url,
        entitlements=await run_in_threadpool(_entitlements, sessions, account_id),
    )


@router.delete("/plan/pending")
async def keep_current_plan(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
) -> EntitlementsAnswer:
    """Call off a scheduled downgrade."""
    await workflows.cancel_plan_change(account_id)
    return await run_in_threadpool(_entitlements, sessions, account_id)


@router.post("/cancel")
async def cancel_subscription(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
    body: CancelBody | None = None,
) -> EntitlementsAnswer:
    """Cancel at the end of the paid period (access stays until then); resumable.

    Ending paid access at once is not self-serve: the lifecycle contract gives it to operators.
    """
    if body is not None and not body.at_period_end:
        raise _unprocessable(
            "the app cancels at the end of the paid period only; an immediate cancellation is "
            "the operator action cancel_now (admin cancel-now ACCOUNT)"
        )
    await workflows.cancel_subscription(account_id)
    return await run_in_threadpool(_entitlements, sessions, account_id)


@router.post("/resume")
async def resume_subscription(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
) -> EntitlementsAnswer:
    """Undo a cancellation before the period ends, or resume a paused subscription."""
    await workflows.resume_subscription(account_id)
    return await run_in_threadpool(_entitlements, sessions, account_id)
