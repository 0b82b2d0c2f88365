"""Buying and changing a plan through the service's API, against the Stripe simulator."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from db import repository
from tests.e2e.stack import APP_TOKEN, Stack

DAY = 86_400
AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


def account() -> str:
    return f"acct_{uuid4().hex[:10]}"


async def post(stack: Stack, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return await stack.api.post(path, json=body, headers=AUTH)


async def subscribed(
    stack: Stack, lookup_key: str = "pro_monthly", seats: int = 1
) -> tuple[str, str, str]:
    """An account subscribed directly in Stripe (no trial), on a clock at today's time so
    Stripe's periods and the workflow's timers agree."""
    acct = account()
    clock = stack.new_clock(int(time.time()))
    customer = stack.new_customer(acct, clock=clock)
    stack.attach_card(customer)
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id(lookup_key), "quantity": seats}],
            "metadata": {"account_id": acct},
        }
    )
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="active")
    return acct, customer, clock


async def test_checkout_then_second_checkout_is_refused(stack: Stack) -> None:
    acct = account()
    response = await post(stack, f"/v1/accounts/{acct}/checkout", {"plan": "pro"})
    assert response.status_code == 201, response.text
    url = response.json()["url"]

    # Pay on the simulator's hosted page, headless, with Stripe's test card.
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(url, data={"payment_method": "pm_card_visa"})
    assert paid.status_code == 303
    await stack.deliveries_done()

    trialing = await stack.wait_for_entitlements(acct, billing_state="trialing", plan="pro")
    assert trialing["trial_ends_at"] is not None

    again = await post(stack, f"/v1/accounts/{acct}/checkout", {"plan": "team", "seats": 2})
    assert again.status_code == 409
    assert "/plan" in again.json()["detail"]


async def checkout(stack: Stack, acct: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await post(stack, f"/v1/accounts/{acct}/checkout", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def pay(url: str) -> None:
    """Pay on the simulator's hosted page, headless, with Stripe's test card."""
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(url, data={"payment_method": "pm_card_visa"})
    assert paid.status_code == 303


def customer_of(stack: Stack, acct: str) -> str:
    with stack.sessions() as session:
        customer = repository.customer_for_account(session, acct)
    assert customer is not None
    return customer


def checkout_sessions(stack: Stack, acct: str) -> dict[str, str]:
    """The status of each Checkout Session of the account's customer, by id."""
    customer = customer_of(stack, acct)
    listed = stack.stripe.v1.checkout.sessions.list(params={"customer": customer})
    return {s.id: str(s.status) for s in listed.data}


async def test_a_second_checkout_for_the_same_purchase_gives_the_same_page(stack: Stack) -> None:
    acct = account()
    first = await checkout(stack, acct, {"plan": "pro"})

    second = await checkout(stack, acct, {"plan": "pro"})

    assert second == first
    assert checkout_sessions(stack, acct) == {first["session_id"]: "open"}


async def test_a_checkout_for_another_purchase_expires_the_open_page(stack: Stack) -> None:
    acct = account()
    first = await checkout(stack, acct, {"plan": "pro"})

    second = await checkout(stack, acct, {"plan": "team", "seats": 2})

    assert checkout_sessions(stack, acct) == {
        first["session_id"]: "expired",
        second["session_id"]: "open",
    }


async def test_concurrent_checkouts_leave_one_page_to_pay(stack: Stack) -> None:
    acct = account()
    bodies = [{"plan": "pro"}, {"plan": "team", "seats": 2}] * 3

    answers = await asyncio.gather(
        *(post(stack, f"/v1/accounts/{acct}/checkout", body) for body in bodies)
    )

    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    assert list(checkout_sessions(stack, acct).values()).count("open") == 1


async def test_a_completed_checkout_is_not_followed_by_another_before_its_webhooks(
    stack: Stack,
) -> None:
    acct = account()
    first = await checkout(stack, acct, {"plan": "pro"})
    # The webhooks are late: the stored state still says free.
    stack.sim.settings.faults.drop_rate = 1.0
    await pay(first["url"])

    for body in ({"plan": "pro"}, {"plan": "team", "seats": 2}):
        again = await post(stack, f"/v1/accounts/{acct}/checkout", body)
        assert again.status_code == 409, again.text
        assert "already completed" in again.json()["detail"]
    assert list(checkout_sessions(stack, acct).values()) == ["complete"]


async def test_after_the_subscription_ended_the_same_purchase_gets_a_new_page(
    stack: Stack,
) -> None:
    acct = account()
    first = await checkout(stack, acct, {"plan": "pro"})
    await pay(first["url"])
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="trialing")
    [subscription] = stack.stripe.v1.subscriptions.list(
        params={"customer": str(customer_of(stack, acct))}
    ).data
    stack.stripe.v1.subscriptions.cancel(subscription.id)
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="free")

    again = await checkout(stack, acct, {"plan": "pro"})

    assert again["session_id"] != first["session_id"]
    assert checkout_sessions(stack, acct)[again["session_id"]] == "open"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"plan": "platinum"}, "unknown plan"),
        ({"plan": "enterprise"}, "self-serve"),
        ({"plan": "team", "seats": 1}, "2 to 500 seats"),
        ({"plan": "pro", "seats": 3}, "exactly 1 seat"),
        ({"plan": "pro", "interval": "week"}, "interval"),
    ],
)
async def test_invalid_purchases_are_refused_and_change_nothing(
    stack: Stack, body: dict[str, Any], problem: str
) -> None:
    acct = account()
    response = await post(stack, f"/v1/accounts/{acct}/checkout", body)
    assert response.status_code == 422
    assert problem in response.text
    assert (await stack.entitlements(acct))["version"] == 0


async def test_upgrade_is_prorated_and_immediate(stack: Stack) -> None:
    acct, customer, _ = await subscribed(stack)

    response = await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "team", "seats": 3})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["kind"], answer["applied"]) == ("upgrade", True)
    assert (answer["entitlements"]["plan"], answer["entitlements"]["seats"]) == ("team", 3)
    invoices = stack.stripe.v1.invoices.list(params={"customer": customer}).data
    proration = [i for i in invoices if i.billing_reason == "subscription_update"]
    assert len(proration) == 1 and proration[0].status == "paid"


async def test_upgrade_with_a_failing_card_stays_on_the_old_plan(stack: Stack) -> None:
    acct, customer, _ = await subscribed(stack)
    stack.attach_card(customer, "pm_card_chargeCustomerFail")

    response = await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "team", "seats": 2})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["applied"] is False
    assert answer["open_invoice_url"]
    assert answer["entitlements"]["plan"] == "pro"


async def test_downgrade_waits_for_the_end_of_the_period(stack: Stack) -> None:
    acct, _, clock = await subscribed(stack, "team_monthly_per_seat", seats=4)

    response = await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "pro"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["kind"] == "downgrade"
    entitlements = answer["entitlements"]
    assert entitlements["plan"] == "team"
    assert entitlements["pending_change"]["plan"] == "pro"

    # Past the scheduled moment (just before the period ends) on both clocks.
    await stack.skip(timedelta(days=32))
    await stack.deliveries_done()
    downgraded = await stack.wait_for_entitlements(acct, plan="pro", pending_change=None)
    assert downgraded["seats"] == 1
    await stack.advance_clock(clock, int(time.time()) + 32 * DAY)
    assert (await stack.entitlements(acct))["plan"] == "pro"


async def test_a_scheduled_downgrade_can_be_called_off(stack: Stack) -> None:
    acct, _, _ = await subscribed(stack, "team_monthly_per_seat", seats=2)
    assert (await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "pro"})).status_code == 200

    response = await stack.api.delete(f"/v1/accounts/{acct}/plan/pending", headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.json()["pending_change"] is None
    again = await stack.api.delete(f"/v1/accounts/{acct}/plan/pending", headers=AUTH)
    assert again.status_code == 409


async def test_more_seats_apply_at_once(stack: Stack) -> None:
    acct, _, _ = await subscribed(stack, "team_monthly_per_seat", seats=2)
    response = await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "team", "seats": 5})
    assert response.status_code == 200, response.text
    limits = response.json()["entitlements"]["limits"]
    assert limits["members"] == 5


async def test_cancel_at_period_end_then_resume(stack: Stack) -> None:
    acct, _, _ = await subscribed(stack)

    canceled = await post(stack, f"/v1/accounts/{acct}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["billing_state"] == "canceling"
    assert canceled.json()["cancel_at"] is not None
    assert canceled.json()["access"] == "full"

    resumed = await post(stack, f"/v1/accounts/{acct}/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["billing_state"], resumed.json()["cancel_at"]) == ("active", None)


async def test_cancel_at_period_end_ends_in_free(stack: Stack) -> None:
    acct, _, clock = await subscribed(stack)
    assert (await post(stack, f"/v1/accounts/{acct}/cancel")).status_code == 200

    await stack.advance_clock(clock, int(time.time()) + 32 * DAY)

    ended = await stack.wait_for_entitlements(acct, billing_state="free")
    assert ended["plan"] == "free"


async def test_the_app_cannot_cancel_immediately(stack: Stack) -> None:
    acct, customer, _ = await subscribed(stack)

    response = await post(stack, f"/v1/accounts/{acct}/cancel", {"at_period_end": False})

    assert response.status_code == 422, response.text
    assert "cancel_now" in response.json()["detail"]
    [subscription] = stack.stripe.v1.subscriptions.list(params={"customer": customer}).data
    assert (subscription.status, subscription.cancel_at_period_end) == ("active", False)
    assert (await stack.entitlements(acct))["billing_state"] == "active"


async def test_changes_on_an_account_without_a_subscription_are_refused(stack: Stack) -> None:
    acct = account()
    assert (await post(stack, f"/v1/accounts/{acct}/plan", {"plan": "pro"})).status_code == 409
    assert (await post(stack, f"/v1/accounts/{acct}/resume")).status_code == 409
    assert (await stack.entitlements(acct))["version"] == 0


async def test_billing_routes_need_the_app_token(stack: Stack) -> None:
    response = await stack.api.post(f"/v1/accounts/{account()}/checkout", json={"plan": "pro"})
    assert response.status_code == 401


async def test_portal_opens_for_a_customer_and_not_for_a_stranger(stack: Stack) -> None:
    acct, _, _ = await subscribed(stack)
    response = await post(stack, f"/v1/accounts/{acct}/portal")
    assert response.status_code == 201, response.text
    async with httpx.AsyncClient() as browser:
        page = await browser.get(response.json()["url"])
    assert page.status_code == 200

    assert (await post(stack, f"/v1/accounts/{account()}/portal")).status_code == 404
