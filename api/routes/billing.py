"""What a customer does to buy and change a plan, called by the Dataface app for them.

Checkout and the portal are Stripe pages (`api.stripe_pages`); plan changes, cancel and resume
are validated Updates of the account's workflow (`api.account_workflows`), so they take turns
with Stripe's own events.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api import stripe_pages
from api.deps import (
    AccountIdPath,
    AccountWorkflowsDep,
    AppTokenDep,
    CatalogDep,
    SessionFactoryDep,
    SettingsDep,
)
from api.routes.entitlements import current_answer
from api.schemas import (
    CancelSubscriptionRequest,
    CheckoutAnswer,
    CheckoutRequest,
    EntitlementsAnswer,
    PlanChangeAnswer,
    PlanRequest,
    PortalAnswer,
)
from core.stripe_client import make_stripe_client
from db import repository
from domain.lifecycle import BillingState
from domain.plan_changes import PlanChangeError, classify_change, purchase_for

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["billing"])


def _unprocessable(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=reason)


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
    current = current_answer(sessions, catalog, account_id)
    if current.billing_state != BillingState.FREE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"the account is {current.billing_state}: change its plan instead "
            f"(POST /v1/accounts/{account_id}/plan)",
        )
    try:
        page = stripe_pages.open_checkout(
            make_stripe_client(settings),
            sessions,
            catalog,
            account_id,
            purchase,
            email=body.email,
            name=body.name,
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            automatic_tax=settings.automatic_tax,
            allow_promotion_codes=settings.checkout_allow_promotion_codes,
        )
    except stripe_pages.CheckoutConflict as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err
    return CheckoutAnswer(url=page.url, session_id=page.session_id)


@router.post("/portal", status_code=status.HTTP_201_CREATED)
def open_portal(
    account_id: AccountIdPath, _: AppTokenDep, settings: SettingsDep, sessions: SessionFactoryDep
) -> PortalAnswer:
    """A Stripe customer portal page: change plan, update the card, cancel."""
    url = stripe_pages.open_portal(
        make_stripe_client(settings),
        sessions,
        account_id,
        return_url=settings.checkout_success_url,
    )
    if url is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the account has no Stripe customer")
    return PortalAnswer(url=url)


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
        entitlements=await run_in_threadpool(current_answer, sessions, catalog, account_id),
    )


@router.delete("/plan/pending")
async def keep_current_plan(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
) -> EntitlementsAnswer:
    """Call off a scheduled downgrade."""
    await workflows.cancel_plan_change(account_id)
    return await run_in_threadpool(current_answer, sessions, catalog, account_id)


@router.post("/cancel")
async def cancel_subscription(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
    body: CancelSubscriptionRequest | None = None,
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
    return await run_in_threadpool(current_answer, sessions, catalog, account_id)


@router.post("/resume")
async def resume_subscription(
    account_id: AccountIdPath,
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
) -> EntitlementsAnswer:
    """Undo a cancellation before the period ends, or resume a paused subscription."""
    await workflows.resume_subscription(account_id)
    return await run_in_threadpool(current_answer, sessions, catalog, account_id)
