"""Every operator action through the console's forms, over the whole stack (the simulator as
Stripe): each is done as the signed-in operator, with its reason, and the app sees it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import select

from api.routes.console import ACTION_LABELS
from db.models import OperatorAction
from tests.console_client import csrf_of, sign_in
from tests.e2e.stack import ADMIN_TOKEN, Stack

DAY = 86_400


async def run(browser: httpx.AsyncClient, account: str, action: str, **fields: str) -> str:
    """Post the action's form from the account page; the notice it leads to."""
    page = await browser.get(f"/console/accounts/{account}")
    posted = await browser.post(
        f"/console/accounts/{account}/actions/{action}",
        data={"csrf_token": csrf_of(page), "reason": f"ticket for {action}", **fields},
    )
    assert posted.status_code == 303, posted.text
    shown = await browser.get(posted.headers["location"])
    notice = re.search(r'id="notice">([^<]*)<', shown.text)
    assert notice is not None, shown.text
    return notice.group(1)


async def test_every_action_runs_from_the_console_as_the_signed_in_operator(stack: Stack) -> None:
    now = int(datetime.now(UTC).timestamp())
    clock = stack.new_clock(now)
    acct, customer = await stack.paying_account(clock=clock)
    stack.attach_card(customer, "pm_card_chargeCustomerFail")
    await stack.advance_clock(clock, now + 32 * DAY)
    await stack.wait_for_entitlements(acct, billing_state="past_due")
    in_a_month = (date.today() + timedelta(days=30)).isoformat()

    async with httpx.AsyncClient(base_url=str(stack.api.base_url)) as browser:
        await sign_in(browser, ADMIN_TOKEN, name="Grace")
        notices = {"extend_grace": await run(browser, acct, "extend_grace", until=in_a_month)}
        stack.attach_card(customer)  # the customer fixed the card: the retry pays
        notices["retry_invoice"] = await run(browser, acct, "retry_invoice")
        await stack.deliveries_done()
        await stack.wait_for_entitlements(acct, billing_state="active")
        notices["grant_comp"] = await run(
            browser, acct, "grant_comp", plan="team", until=in_a_month
        )
        notices["revoke_comp"] = await run(browser, acct, "revoke_comp")
        notices["lock"] = await run(browser, acct, "lock")
        notices["unlock"] = await run(browser, acct, "unlock")
        notices["resync"] = await run(browser, acct, "resync")
        notices["cancel_now"] = await run(browser, acct, "cancel_now")

    assert {action: "done" in text for action, text in notices.items()} == dict.fromkeys(
        ACTION_LABELS, True
    ), notices
    assert "comped on team" in notices["grant_comp"]
    assert "locked" in notices["lock"]
    with stack.sessions() as session:
        audit = session.scalars(
            select(OperatorAction)
            .where(OperatorAction.account_id == acct)
            .order_by(OperatorAction.id)
        ).all()
    assert [(a.action, a.actor, a.reason) for a in audit] == [
        (action, "Grace", f"ticket for {action}") for action in notices
    ]
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="free")
