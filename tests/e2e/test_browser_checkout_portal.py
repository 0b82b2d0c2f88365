"""A real browser through the hosted pages: Checkout, then the billing portal
(`tests.e2e.browser`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

from tests.e2e.browser import require_browser
from tests.e2e.stack import Stack

async_api = require_browser()


async def test_checkout_then_portal_plan_change_in_the_browser(
    stack: Stack, page: Any, tmp_path: Path
) -> None:
    acct = f"acct_{uuid4().hex[:10]}"
    success_url = f"{stack.api.base_url}/healthz?checkout={{CHECKOUT_SESSION_ID}}"
    session = stack.stripe.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": stack.price_id("pro_monthly"), "quantity": 1}],
            "client_reference_id": acct,
            "customer_email": f"{acct}@example.com",
            "subscription_data": {"metadata": {"account_id": acct}},
            "success_url": success_url,
        }
    )
    assert session.url is not None

    # Checkout: the page shows what is bought; pick the test card and pay.
    await page.goto(session.url)
    await async_api.expect(page.get_by_role("heading", name="Subscribe")).to_be_visible()
    await async_api.expect(page.locator("table")).to_contain_text("$29.00")
    await page.get_by_label("Name").fill("Ada Lovelace")
    await page.get_by_label("Visa 4242 — succeeds").check()
    await page.screenshot(path=str(tmp_path / "checkout.png"), full_page=True)
    await page.get_by_role("button", name="Subscribe").click()

    # Landed on the success URL, with the session id filled in.
    await page.wait_for_url(success_url.replace("{CHECKOUT_SESSION_ID}", session.id))
    assert "ok" in (await page.content())
    completed = stack.stripe.v1.checkout.sessions.retrieve(session.id)
    assert (completed.status, completed.payment_status) == ("complete", "paid")
    customer = completed.customer
    assert isinstance(customer, str)

    await stack.deliveries_done()
    pro = await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")
    assert pro["access"] == "full"

    # The billing portal: change the plan to Team in the page.
    portal = stack.stripe.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": f"{stack.api.base_url}/healthz"}
    )
    await page.goto(portal.url)
    expect = async_api.expect
    await expect(page.get_by_role("heading", name="Dataface Pro — $29.00 / month")).to_be_visible()
    await expect(page.get_by_text("Status: active.")).to_be_visible()
    await expect(page.get_by_text("visa •••• 4242")).to_be_visible()
    team_price = stack.price_id("team_monthly_per_seat")
    await page.locator("select[name=price]").select_option(team_price)
    await page.get_by_role("button", name="Change plan").click()
    await page.wait_for_url(portal.url)
    await expect(page.get_by_role("heading", name="Dataface Team — $15.00 / month")).to_be_visible()
    await expect(page.locator("select[name=price]")).to_have_value(team_price)

    await stack.deliveries_done()
    team = await stack.wait_for_entitlements(acct, billing_state="active", plan="team")
    assert (team["access"], team["features"]["sso"]) == ("full", True)
    assert team["limits"]["members"] == team["seats"]
