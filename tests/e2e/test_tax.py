"""Automatic tax (`AUTOMATIC_TAX=true`): Checkout collects the address and VAT id, Stripe adds
the tax, and the entitlements are those of the same purchase without tax."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_self_serve import account, checkout, customer_of, post, subscribed

# Fields of the entitlement answer that name the account or depend on when it subscribed.
_NOT_COMPARED = ("account_id", "version", "period_ends_at", "trial_ends_at", "grace_ends_at")


@pytest.fixture
async def taxed_stack(
    workflow_env: WorkflowEnvironment, database_url: str, session_factory: sessionmaker[Session]
) -> AsyncIterator[Stack]:
    async with running_stack(
        workflow_env, database_url, session_factory, automatic_tax=True
    ) as running:
        yield running


def compared(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in _NOT_COMPARED}


async def test_checkout_with_german_vat_gives_the_same_entitlements(taxed_stack: Stack) -> None:
    stack = taxed_stack
    acct = account()
    page = await checkout(stack, acct, {"plan": "pro"})
    session = stack.stripe.v1.checkout.sessions.retrieve(page["session_id"])
    assert session.automatic_tax.enabled is True
    assert session.billing_address_collection == "required"

    # Pay on the hosted page, headless, with a German billing address and VAT id.
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(
            page["url"],
            data={
                "payment_method": "pm_card_visa",
                "address[country]": "DE",
                "address[line1]": "Unter den Linden 1",
                "address[postal_code]": "10117",
                "address[city]": "Berlin",
                "tax_id[type]": "eu_vat",
                "tax_id[value]": "DE123456789",
            },
        )
    assert paid.status_code == 303
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="trialing", plan="pro")
    customer = stack.stripe.v1.customers.retrieve(customer_of(stack, acct))
    assert customer.address.country == "DE"
    [vat_id] = stack.stripe.v1.customers.tax_ids.list(customer.id).data
    assert vat_id.value == "DE123456789"

    # The trial ends: the first paid invoice carries 19% German VAT on top of the price.
    [sub] = stack.stripe.v1.subscriptions.list(params={"customer": customer.id}).data
    assert sub.automatic_tax.enabled is True
    ended = stack.stripe.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    invoice = stack.stripe.v1.invoices.retrieve(str(ended.latest_invoice))
    price = stack.stripe.v1.prices.retrieve(stack.price_id("pro_monthly"))
    assert price.unit_amount is not None
    vat = round(price.unit_amount * 0.19)
    assert [t.amount for t in invoice.total_taxes] == [vat]
    assert (invoice.status, invoice.amount_paid) == ("paid", price.unit_amount + vat)
    await stack.deliveries_done()
    taxed = await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")

    # The same purchase without tax gives the same answer.
    untaxed_acct, _, _ = await subscribed(stack)
    untaxed = await stack.entitlements(untaxed_acct)
    assert compared(taxed) == compared(untaxed)

    # A plan change on the taxed subscription: prorated, taxed, and the same answer again.
    upgrades = [
        await post(stack, f"/v1/accounts/{a}/plan", {"plan": "team", "seats": 3})
        for a in (acct, untaxed_acct)
    ]
    assert [u.status_code for u in upgrades] == [200, 200], [u.text for u in upgrades]
    taxed_answer, untaxed_answer = (u.json() for u in upgrades)
    assert taxed_answer["applied"] is True
    assert compared(taxed_answer["entitlements"]) == compared(untaxed_answer["entitlements"])
    proration = stack.stripe.v1.invoices.retrieve(
        str(stack.stripe.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (proration.billing_reason, proration.status) == ("subscription_update", "paid")
    [proration_vat] = proration.total_taxes
    assert proration_vat.tax_rate_details is not None
    rate = stack.stripe.v1.tax_rates.retrieve(proration_vat.tax_rate_details.tax_rate)
    assert (rate.country, rate.percentage) == ("DE", 19)
    assert abs(proration_vat.amount - proration.subtotal * 0.19) <= 1  # rounded per line
    assert proration.amount_paid == proration.subtotal + proration_vat.amount
