"""The pages Stripe sends a customer back to: after Checkout (paid or abandoned) and from the
customer portal, and the billing link of the emails.

They are for the customer's browser: no token. The only account fact shown is the plan and
billing state of the Checkout Session's own account, found through the session id Stripe puts
into the success URL (`{CHECKOUT_SESSION_ID}`, Stripe's documented way); a session id is a
secret only that customer's browser holds, where an account id in the URL could be anyone's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stripe
from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import CatalogDep, SessionFactoryDep, SettingsDep
from api.routes.entitlements import current_answer
from api.stripe_pages import CHECKOUT_SESSION_ID_PARAM
from core.stripe_client import make_stripe_client
from domain.lifecycle import BillingState

router = APIRouter(prefix="/billing", tags=["customer pages"], include_in_schema=False)

# The success page reloads itself this often until the account's webhook has landed, for at
# most this long (a webhook held up longer is for support, not for a page left open).
REFRESH_SECONDS = 2
REFRESH_FOR_SECONDS = 120
# What a page answered 503 (Stripe out of reach) asks the browser to wait before retrying.
RETRY_AFTER_SECONDS = 5

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "customer"
templates = Jinja2Templates(directory=TEMPLATES)


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


@router.get("/done", response_class=HTMLResponse)
async def checkout_done(
    request: Request,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    session_id: str | None = Query(
        None, alias=CHECKOUT_SESSION_ID_PARAM, pattern=r"^cs_[A-Za-z0-9_]{1,250}$"
    ),
    waited: int = Query(0, ge=0, le=24 * 3600, description="seconds this page has reloaded for"),
) -> HTMLResponse:
    """After Checkout: the account's plan once its webhook has landed (the page reloads itself
    until then). Without a session: back from the customer portal."""
    if session_id is None:
        return _page(
            request,
            "message.html",
            title="You are back from billing",
            message="Changes you made to your plan or card take effect in Dataface within "
            "moments. You can close this page.",
        )
    try:
        checkout = await run_in_threadpool(
            make_stripe_client(settings).v1.checkout.sessions.retrieve, session_id
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError):
        response = _page(
            request,
            "message.html",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            title="One moment",
            message="We could not check your checkout with Stripe just now. Nothing is lost: "
            "reload this page in a few seconds.",
            refresh_seconds=RETRY_AFTER_SECONDS,
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except stripe.InvalidRequestError:
        return _page(
            request,
            "message.html",
            status.HTTP_404_NOT_FOUND,
            title="Unknown checkout",
            message="This link does not belong to a checkout. Nothing was charged through it.",
        )
    account_id = checkout.client_reference_id
    if checkout.status != "complete" or account_id is None:
        return _page(
            request,
            "message.html",
            title="Checkout not finished",
            message="This checkout was not completed, so nothing was charged. Start again "
            "from Dataface's billing settings.",
        )
    answer = await run_in_threadpool(current_answer, sessions, catalog, account_id)
    if answer.billing_state == BillingState.FREE:
        if waited >= REFRESH_FOR_SECONDS:
            return _page(
                request,
                "checkout_done.html",
                title="Payment received",
                still_waiting=True,
                reference=session_id,
            )
        return _page(
            request,
            "checkout_done.html",
            title="Payment received",
            refresh_seconds=REFRESH_SECONDS,
            refresh_url=request.url.include_query_params(waited=waited + REFRESH_SECONDS),
        )
    return _page(
        request,
        "checkout_done.html",
        title="Your plan is ready",
        plan=catalog.plan(answer.plan).name,
        state=answer.billing_state.replace("_", " "),
    )


@router.get("/canceled", response_class=HTMLResponse)
async def checkout_canceled(request: Request) -> HTMLResponse:
    return _page(
        request,
        "message.html",
        title="Checkout canceled",
        message="Nothing was charged and your plan is unchanged. You can close this page.",
    )


@router.get("", response_class=HTMLResponse)
async def billing_link(request: Request) -> HTMLResponse:
    """Where the emails' "manage your plan" and "update your card" links lead."""
    return _page(
        request,
        "message.html",
        title="Manage your plan",
        message="Open Settings → Billing in Dataface to change your plan, update your card or "
        "pay an open invoice in Stripe's secure billing portal.",
    )
