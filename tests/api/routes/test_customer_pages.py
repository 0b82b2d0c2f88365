"""The pages Stripe returns a customer to, against the Stripe simulator: no token, and only
the plan of the checkout's own account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from domain.lifecycle import BillingState, Lifecycle
from tests.api.conftest import APP_TOKEN, closed_port
from tests.api.routes.conftest import FakeAccountWorkflows, api_with, seed_account
from tests.workflows.harness import subscription

pytestmark = pytest.mark.db

AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}
REFRESH = '<meta http-equiv="refresh" content="2'


@pytest.fixture
async def api(
    simulated_settings: Settings, workflows: FakeAccountWorkflows
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(simulated_settings, workflows) as api:
        yield api


async def open_checkout(api: httpx.AsyncClient, account_id: str) -> dict[str, str]:
    page = await api.post(f"/v1/accounts/{account_id}/checkout", json={"plan": "pro"}, headers=AUTH)
    assert page.status_code == 201, page.text
    opened: dict[str, str] = page.json()
    return opened


async def test_after_paying_the_page_waits_for_the_webhook_then_shows_the_plan(
    api: httpx.AsyncClient, simulated_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    account = f"acct_{uuid4().hex[:12]}"
    checkout = await open_checkout(api, account)
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(checkout["url"], data={"payment_method": "pm_card_visa"})
    assert paid.status_code == 303
    # Stripe filled in the session id the success URL asked for.
    returned_to = paid.headers["Location"]
    assert returned_to == (
        f"{simulated_settings.checkout_success_url}?session_id={checkout['session_id']}"
    )
    done = urlsplit(returned_to)
    path = f"{done.path}?{done.query}"

    waiting = await api.get(path)
    assert waiting.status_code == 200
    assert "text/html" in waiting.headers["content-type"]
    assert "Payment received" in waiting.text
    assert REFRESH in waiting.text
    assert "waited=2" in waiting.text  # the reload counts how long the page has waited
    # Two minutes on, the page stops reloading and says what to do instead.
    given_up = await api.get(f"{path}&waited=120")
    assert REFRESH not in given_up.text
    assert checkout["session_id"] in given_up.text and "contact support" in given_up.text

    trialing = Lifecycle(state=BillingState.TRIALING, subscription=subscription("cus_x"))
    seed_account(session_factory, account, trialing)  # the workflow has handled the webhook
    ready = await api.get(path)
    assert ready.status_code == 200
    assert "You are on the <strong>Pro</strong> plan (trialing)." in ready.text
    assert REFRESH not in ready.text
    assert account not in ready.text


async def test_an_unfinished_or_unknown_checkout_shows_no_account(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account = f"acct_{uuid4().hex[:12]}"
    checkout = await open_checkout(api, account)
    active = Lifecycle(state=BillingState.ACTIVE, subscription=subscription("cus_x"))
    seed_account(session_factory, account, active)

    unfinished = await api.get("/billing/done", params={"session_id": checkout["session_id"]})
    assert unfinished.status_code == 200
    assert "Checkout not finished" in unfinished.text
    assert "Pro" not in unfinished.text

    unknown = await api.get("/billing/done", params={"session_id": "cs_test_nobody"})
    assert unknown.status_code == 404
    assert "Unknown checkout" in unknown.text

    not_a_session = await api.get("/billing/done", params={"session_id": "../v1/customers"})
    assert not_a_session.status_code == 422


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/billing/canceled", "Nothing was charged and your plan is unchanged."),
        ("/billing/done", "You are back from billing"),  # the portal's return URL
        ("/billing", "Manage your plan"),  # the emails' link
    ],
)
async def test_the_other_return_pages_answer_html_without_a_token(
    api: httpx.AsyncClient, path: str, says: str
) -> None:
    page = await api.get(path)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert says in page.text


async def test_with_stripe_out_of_reach_the_page_asks_to_reload_later(
    settings: Settings, workflows: FakeAccountWorkflows
) -> None:
    unreachable = settings.model_copy(
        update={"stripe_simulator_url": f"http://127.0.0.1:{closed_port()}"}
    )
    async with api_with(unreachable, workflows) as api:
        page = await api.get("/billing/done", params={"session_id": "cs_test_any"})
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "5"
    assert "text/html" in page.headers["content-type"]
    assert "reload this page in a few seconds" in page.text
