"""Lifecycle scenarios end to end: Stripe simulator with test clocks → service → entitlements."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from tests.e2e.stack import Stack

JAN_1_2027 = 1_798_761_600
DAY = 86_400


def account() -> str:
    return f"acct_{uuid4().hex[:10]}"


async def test_subscribe_renew_fail_grace_and_recover(stack: Stack) -> None:
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    stack.attach_card(customer)
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id("pro_monthly")}],
            "metadata": {"account_id": acct},
        }
    )
    await stack.deliveries_done()
    active = await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")
    assert active["access"] == "full"

    # The card starts failing; the renewal a month later fails → past_due with grace.
    stack.attach_card(customer, "pm_card_chargeCustomerFail")
    await stack.advance_clock(clock, JAN_1_2027 + 31 * DAY + 2 * 3600)
    past_due = await stack.wait_for_entitlements(acct, billing_state="past_due")
    assert past_due["message"] == "payment_failed"
    assert past_due["grace_ends_at"] is not None

    # Grace runs out on the workflow's durable timer.
    await stack.skip(timedelta(days=7, minutes=1))
    await stack.wait_for_entitlements(acct, billing_state="restricted", access="read_only")

    # The customer fixes the card; Stripe's next retry pays the invoice → access restored.
    stack.attach_card(customer, "pm_card_visa")
    await stack.advance_clock(clock, JAN_1_2027 + 36 * DAY)
    recovered = await stack.wait_for_entitlements(acct, billing_state="active")
    assert (recovered["access"], recovered["grace_ends_at"]) == ("full", None)
