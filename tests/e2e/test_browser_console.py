"""The support console in a real browser (`tests.e2e.browser`), over the whole stack: an
operator signs in, finds an account whose renewal failed and extends its grace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.browser import require_browser
from tests.e2e.stack import ADMIN_TOKEN, Stack

async_api = require_browser()
expect = async_api.expect

DAY = 86_400


async def sign_in(page: Any, stack: Stack, then: str = "/console") -> None:
    await page.goto(f"{stack.api.base_url}{then}")
    await expect(page.get_by_role("heading", name="Sign in to the support console")).to_be_visible()
    await page.get_by_label("Your operator token").fill(ADMIN_TOKEN)
    await page.get_by_label("Your name").fill("Ada")
    await page.get_by_role("button", name="Sign in").click()


async def test_an_operator_extends_the_grace_of_an_account_whose_renewal_failed(
    stack: Stack, page: Any, tmp_path: Path
) -> None:
    now = int(datetime.now(UTC).timestamp())
    clock = stack.new_clock(now)
    acct, customer = await stack.paying_account(clock=clock)
    stack.attach_card(customer, "pm_card_chargeCustomerFail")
    await stack.advance_clock(clock, now + 32 * DAY)
    past_due = await stack.wait_for_entitlements(acct, billing_state="past_due")

    await sign_in(page, stack)
    await expect(page.get_by_role("heading", name="Accounts")).to_be_visible()
    await expect(page.get_by_role("link", name="past_due")).to_be_visible()
    await page.screenshot(path=str(tmp_path / "console-front.png"), full_page=True)
    await page.get_by_label("Account id, Stripe customer id or email").fill(customer)
    await page.get_by_role("button", name="Find").click()

    await expect(page.get_by_role("heading", name=acct)).to_be_visible()
    await expect(page.locator("#effective-state")).to_have_text("past_due")
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("invoice.payment_failed")
    await expect(timeline).to_contain_text("payment_failed")
    new_end = date.today() + timedelta(days=30)
    form = page.locator("#action-extend_grace")
    await form.get_by_label("Until").fill(new_end.isoformat())
    await form.get_by_label("Reason").fill("ticket 77: wire announced")
    await form.get_by_role("button", name="Extend the grace period").click()

    await expect(page.locator("#notice")).to_contain_text("Extend the grace period: done")
    await expect(page.locator("#grace-ends")).to_contain_text(new_end.isoformat())
    await expect(timeline.locator("tr").nth(1)).to_contain_text("extend_grace by Ada")
    await expect(timeline).to_contain_text("reason: ticket 77: wire announced")
    await page.screenshot(path=str(tmp_path / "console-account.png"), full_page=True)
    answer = await stack.wait_for_entitlements(acct, billing_state="past_due")
    assert answer["version"] > past_due["version"]
    assert datetime.fromisoformat(answer["grace_ends_at"]).date() == new_end


async def test_without_a_session_a_page_asks_to_sign_in_and_a_forged_form_is_refused(
    stack: Stack, page: Any
) -> None:
    acct, _ = await stack.paying_account()
    before = await stack.entitlements(acct)

    # No session: the account page is not shown; after signing in the browser lands on it.
    await sign_in(page, stack, then=f"/console/accounts/{acct}")
    await expect(page.get_by_role("heading", name=acct)).to_be_visible()

    # A form whose CSRF token is not the session's (as a form posted from another site).
    form = page.locator("#action-lock")
    await form.locator("input[name=csrf_token]").evaluate("input => input.value = 'forged'")
    await form.get_by_label("Reason").fill("abuse report 5")
    await form.get_by_role("button", name="Lock").click()
    await expect(page.get_by_text("This form was refused")).to_be_visible()
    assert (await stack.entitlements(acct))["version"] == before["version"]

    # Signed out, the same account page sends the browser to sign in.
    await page.goto(f"{stack.api.base_url}/console/accounts/{acct}")
    await page.get_by_role("button", name="Sign out").click()
    await page.goto(f"{stack.api.base_url}/console/accounts/{acct}")
    await expect(page.get_by_role("heading", name="Sign in to the support console")).to_be_visible()
