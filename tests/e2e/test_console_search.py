"""The console finds an account by its customer's email, which only Stripe holds."""

from __future__ import annotations

import httpx

from tests.console_client import sign_in
from tests.e2e.stack import ADMIN_TOKEN, Stack


async def test_an_account_is_found_by_its_customers_email(stack: Stack) -> None:
    acct, _ = await stack.paying_account()  # its customer's email: <account>@example.com

    async with httpx.AsyncClient(base_url=str(stack.api.base_url)) as browser:
        await sign_in(browser, ADMIN_TOKEN, name="ops")
        found = await browser.get("/console/search", params={"q": f"{acct}@example.com"})
        nobody = await browser.get("/console/search", params={"q": "nobody@example.com"})

    assert found.status_code == 200
    assert f'href="/console/accounts/{acct}"' in found.text
    assert "Stripe has no customer with the email nobody@example.com" in nobody.text
