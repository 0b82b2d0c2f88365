"""An enterprise deal: a price made by hand in the Dashboard on a catalog plan's product, with a
lookup key the catalog does not know, sells that plan."""

from __future__ import annotations

from uuid import uuid4

from tests.e2e.stack import Stack


async def test_a_negotiated_price_on_a_plan_product_grants_that_plan(stack: Stack) -> None:
    acct = f"acct_{uuid4().hex[:10]}"
    customer = stack.new_customer(acct)
    stack.attach_card(customer)
    deal = stack.negotiated_price("team_monthly_per_seat", 4_500, f"acme_deal_{acct}")
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": deal, "quantity": 40}],
            "metadata": {"account_id": acct},
        }
    )
    await stack.deliveries_done()

    answer = await stack.wait_for_entitlements(acct, billing_state="active", plan="team")
    assert (answer["access"], answer["limits"]["members"]) == ("full", 40)
