"""A promotion code typed into Checkout, through the whole service against the simulator: the
customer pays less, and the account is exactly what an account that paid full price is."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import httpx

from tests.conftest import wait_for
from tests.e2e.stack import ADMIN_TOKEN, APP_TOKEN, Stack

APP = {"Authorization": f"Bearer {APP_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Stripe object ids differ between two accounts.
STRIPE_ID = re.compile(r"\b(evt|cus|sub|in|pi|ch|di|pm|promo|cs_test)_[A-Za-z0-9]+\b")


def spring_code(stack: Stack) -> str:
    """A 20%-off-once promotion code, made the way an operator makes one in Stripe."""
    coupon = stack.stripe.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    code = f"SPRING{uuid4().hex[:6].upper()}"
    stack.stripe.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code}
    )
    return code


async def buy_pro(stack: Stack, promotion_code: str | None) -> tuple[str, Any]:
    """An account that buys Pro through Checkout (headless, test card), then ends its trial
    at once so the first invoice with an amount is made. Returns the account and that
    invoice."""
    acct = f"acct_{uuid4().hex[:10]}"
    page = await stack.api.post(f"/v1/accounts/{acct}/checkout", json={"plan": "pro"}, headers=APP)
    assert page.status_code == 201, page.text
    form = {"payment_method": "pm_card_visa"}
    if promotion_code is not None:
        form["promotion_code"] = promotion_code
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(page.json()["url"], data=form)
    assert paid.status_code == 303, paid.text
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="trialing", plan="pro")
    session = stack.stripe.v1.checkout.sessions.retrieve(page.json()["session_id"])
    subscription = stack.stripe.v1.subscriptions.update(
        str(session.subscription), params={"trial_end": "now", "expand": ["latest_invoice"]}
    )
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")
    return acct, subscription.latest_invoice


async def answers(stack: Stack, acct: str) -> dict[str, Any]:
    """What the app and an operator read about the account, once its email has gone its way
    (the outbox sends after the entitlements change, so a read can come first)."""

    async def settled() -> dict[str, Any] | None:
        entitlements = await stack.api.get(f"/v1/accounts/{acct}/entitlements", headers=APP)
        shown = await stack.api.get(f"/admin/accounts/{acct}", headers=ADMIN)
        assert entitlements.status_code == shown.status_code == 200, shown.text
        emails = shown.json()["emails"]
        if not emails or any(email["status"] == "pending" for email in emails):
            return None
        return {"entitlements": entitlements.json(), "admin_show": shown.json()}

    return await wait_for(settled, within=20, what=f"{acct} emails settled")


def comparable(answer: dict[str, Any], acct: str) -> dict[str, Any]:
    """The answers without what differs between any two accounts: ids, times, and the order
    webhooks arrived in (Stripe does not guarantee one)."""
    result: dict[str, Any] = without_ids_and_times(answer, acct)
    result["admin_show"]["stripe_events"].sort(key=lambda event: event["event_type"])
    return result


def without_ids_and_times(value: Any, acct: str) -> Any:
    """`value` with the account id and Stripe ids masked and every timestamp left out: what
    must be the same for two accounts that bought the same plan at different moments."""
    if isinstance(value, dict):
        return {
            key: without_ids_and_times(item, acct)
            for key, item in value.items()
            if not (key.endswith("_at") or key in ("created", "until"))
        }
    if isinstance(value, list):
        return [without_ids_and_times(item, acct) for item in value]
    if isinstance(value, str):
        return STRIPE_ID.sub(r"\1_ID", value.replace(acct, "ACCOUNT"))
    return value


async def test_a_discounted_account_is_exactly_a_full_price_one(stack: Stack) -> None:
    code = spring_code(stack)

    full_price, full_invoice = await buy_pro(stack, None)
    discounted, discounted_invoice = await buy_pro(stack, code)

    assert (full_invoice.subtotal, full_invoice.total) == (2900, 2900)
    assert (discounted_invoice.subtotal, discounted_invoice.total) == (2900, 2320)
    assert discounted_invoice.status == full_invoice.status == "paid"
    assert len(discounted_invoice.discounts) == 1
    full, cut = await answers(stack, full_price), await answers(stack, discounted)
    assert cut["entitlements"]["plan"] == "pro"
    assert comparable(cut, discounted) == comparable(full, full_price)
