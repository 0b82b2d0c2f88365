"""The console finds an account by its customer's email, which only Stripe holds."""

from __future__ import annotations

from uuid import uuid4

import httpx

from tests.console_client import sign_in
from tests.e2e.stack import ADMIN_TOKEN, Stack


async def test_an_account_is_found_by_its_customers_email(stack: Stack) -> None:
    acct = f"acct_{uuid4().hex[:10]}"
    customer = stack.new_customer(acct)  # email: <acct>@example.com
    stack.attach_card(customer)
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id("pro_monthly")}],
            "metadata": {"account_id": acct},
        }
    )
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="active")

    async with httpx.AsyncClient(base_url=str(stack.api.base_url)) as browser:
        await sign_in(browser, ADMIN_TOKEN, name="ops")
        found = await browser.get("/console/search", params={"q": f"{acct}@example.com"})
        nobody = await browser.get("/console/search", params={"q": "nobody@example.com"})

    assert found.status_code == 200
    assert f'href="/console/accounts/{acct}"' in found.text
    assert "Stripe has no customer with the email nobody@example.com" in nobody.text
