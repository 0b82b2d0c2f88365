"""The support console over HTTP, against the real account workflow: sign-in, the session and
CSRF guards, finding an account, its page and timeline, actions and what needs attention."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api.console_session import SESSION_COOKIE, new_session, read_session
from core.config import Settings
from tests import console_client
from tests.console_client import csrf_of
from tests.workflows.harness import Harness, subscription

from .conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    active_account,
    app_entitlements,
    audit_rows,
    post_webhook,
    stripe_event,
)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser without a session: it keeps the cookies it is given."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billing.test"
    ) as client:
        yield client


async def sign_in(browser: httpx.AsyncClient, token: str = OPERATOR_TOKEN, name: str = "") -> None:
    await console_client.sign_in(browser, token, name)


async def act(
    browser: httpx.AsyncClient, account: str, action: str, **fields: str
) -> httpx.Response:
    page = await browser.get(f"/console/accounts/{account}")
    return await browser.post(
        f"/console/accounts/{account}/actions/{action}",
        data={"csrf_token": csrf_of(page), **fields},
    )


# --- no session, no CSRF token: refused ---------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/console", "/console/search?q=x", "/console/accounts/acct_1", "/console/attention"]
)
async def test_every_page_sends_a_browser_without_a_session_to_sign_in(
    browser: httpx.AsyncClient, path: str
) -> None:
    response = await browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=%2Fconsole")


async def test_an_action_without_a_session_is_refused_and_not_done(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    response = await browser.post(
        f"/console/accounts/{account}/actions/lock", data={"reason": "abuse", "csrf_token": "x"}
    )
    assert response.status_code == 401
    assert audit_rows(session_factory, account) == []


async def test_an_action_without_its_csrf_token_is_refused_and_not_done(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    await sign_in(browser)
    for token in ({}, {"csrf_token": "forged"}):
        response = await browser.post(
            f"/console/accounts/{account}/actions/lock", data={"reason": "abuse", **token}
        )
        assert response.status_code == 403
    assert audit_rows(session_factory, account) == []


async def test_sign_in_needs_its_form_token_and_a_known_token(browser: httpx.AsyncClient) -> None:
    no_form = await browser.post("/console/sign-in", data={"token": OPERATOR_TOKEN})
    assert no_form.status_code == 403
    form = await browser.get("/console/sign-in")
    wrong = await browser.post(
        "/console/sign-in", data={"token": "guess", "csrf_token": csrf_of(form)}
    )
    assert wrong.status_code == 401
    assert "signs nobody in" in wrong.text
    # The shared admin token signs in only with a name: every action needs a named actor.
    nameless = await browser.post(
        "/console/sign-in", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form)}
    )
    assert nameless.status_code == 401
    assert SESSION_COOKIE not in browser.cookies


async def test_the_session_cookie_is_http_only_same_site_and_expires(
    browser: httpx.AsyncClient,
) -> None:
    form = await browser.get("/console/sign-in")
    response = await browser.post(
        "/console/sign-in",
        data={"token": ADMIN_TOKEN, "name": "bob", "csrf_token": csrf_of(form)},
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=28800" in cookie
    assert "Path=/console" in cookie
    front = await browser.get("/console")
    assert front.status_code == 200
    assert "bob" in front.text


def test_a_session_is_refused_once_expired_or_altered() -> None:
    settings = Settings(_env_file=None)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    session, cookie = new_session("alice", settings, now)
    assert read_session(cookie, settings, now) == session
    assert read_session(cookie, settings, now + timedelta(hours=8, seconds=1)) is None
    body, signature = cookie.rsplit(".", 1)
    assert read_session(f"{body}x.{signature}", settings, now) is None
    other_secret = Settings(_env_file=None, console_session_secret="another-secret-entirely")
    assert read_session(cookie, other_secret, now) is None


# --- finding accounts ---------------------------------------------------------------------------


async def test_find_an_account_by_id_customer_or_state(
    harness: Harness, browser: httpx.AsyncClient
) -> None:
    account, customer = await active_account(harness)
    await sign_in(browser)

    front = await browser.get("/console")
    assert re.search(r">active</a></td><td>\d+<", front.text), front.text
    by_id = await browser.get("/console/search", params={"q": account})
    by_customer = await browser.get("/console/search", params={"q": customer})
    assert by_id.headers["location"] == by_customer.headers["location"]
    assert by_id.headers["location"] == f"/console/accounts/{account}"
    by_state = await browser.get("/console/search", params={"state": "active"})
    assert account in by_state.text
    unknown = await browser.get("/console/search", params={"q": "cus_nobody"})
    assert "No account is linked to the Stripe customer cus_nobody" in unknown.text
    bad_state = await browser.get("/console/search", params={"state": "happy"})
    assert "There is no state happy" in bad_state.text


# --- an account's page and its actions ----------------------------------------------------------


async def test_extending_grace_shows_the_answer_the_timeline_and_the_apps_view(
    harness: Harness,
    browser: httpx.AsyncClient,
    api: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
) -> None:
    account, customer = await active_account(harness)
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")
    await sign_in(browser)
    new_end = (datetime.now(UTC) + timedelta(days=20)).date()

    response = await act(
        browser, account, "extend_grace", until=new_end.isoformat(), reason="ticket 9: wire sent"
    )

    assert response.status_code == 303
    page = await browser.get(response.headers["location"])
    assert "Extend the grace period: done" in page.text
    assert new_end.isoformat() in re.search(r'id="grace-ends">([^<]*)<', page.text).group(1)
    assert "extend_grace by alice" in page.text
    assert "reason: ticket 9: wire sent" in page.text
    assert page.text.count('class="timeline-entitlements"') == 3  # active, past due, extended
    [audit] = audit_rows(session_factory, account)
    assert (audit.action, audit.actor, audit.reason) == (
        "extend_grace",
        "alice",
        "ticket 9: wire sent",
    )
    written = harness.entitlements(account)
    assert written is not None
    app_view = await app_entitlements(api, account, written.version)
    assert datetime.fromisoformat(app_view["grace_ends_at"]).date() == new_end
    # The notice is shown once.
    again = await browser.get(f"/console/accounts/{account}")
    assert "Extend the grace period: done" not in again.text


async def test_a_refused_action_shows_the_workflows_reason_and_changes_nothing(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    await sign_in(browser)
    until = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()

    response = await act(browser, account, "extend_grace", until=until, reason="try")
    page = await browser.get(response.headers["location"])

    assert 'class="notice refused"' in page.text
    assert "grace" in re.search(r'id="notice">([^<]*)<', page.text).group(1)
    assert audit_rows(session_factory, account) == []


async def test_an_action_without_a_reason_is_refused(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    await sign_in(browser)
    response = await act(browser, account, "lock", reason="  ")
    page = await browser.get(response.headers["location"])
    assert "reason" in re.search(r'id="notice">([^<]*)<', page.text).group(1)
    assert audit_rows(session_factory, account) == []


async def test_an_unknown_account_is_a_404_page(browser: httpx.AsyncClient) -> None:
    await sign_in(browser)
    response = await browser.get("/console/accounts/acct_nobody")
    assert response.status_code == 404
    assert "No account acct_nobody" in response.text


# --- what needs attention -----------------------------------------------------------------------


async def test_an_unroutable_event_is_linked_and_replayed_from_the_page(
    harness: Harness, browser: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    harness.accounts.add(account)
    received = await post_webhook(
        api, stripe_event("evt_console_1", "customer.subscription.created", customer)
    )
    assert received.status_code == 200, received.text
    await sign_in(browser)
    attention = await browser.get("/console/attention")
    assert "evt_console_1" in attention.text

    linked = await browser.post(
        "/console/unroutable/link",
        data={
            "csrf_token": csrf_of(attention),
            "customer_id": customer,
            "account_id": account,
            "reason": "ticket 12",
        },
    )

    assert linked.status_code == 303
    page = await browser.get(linked.headers["location"])
    assert f"{customer} is linked to {account}; 1 event(s) replayed." in page.text
    assert "evt_console_1" not in page.text
    await harness.wait_for_entitlements(account, state="active")


async def test_a_customer_is_linked_from_the_account_page_or_the_refusal_shown(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    taken_account, taken_customer = await active_account(harness)
    account, customer = harness.new_account()
    harness.accounts.add(account)
    await sign_in(browser)

    async def link(customer_id: str) -> str:
        page = await browser.get(f"/console/accounts/{taken_account}")
        response = await browser.post(
            f"/console/accounts/{account}/link",
            data={"csrf_token": csrf_of(page), "customer_id": customer_id, "reason": "ticket 3"},
        )
        assert response.headers["location"] == f"/console/accounts/{account}"
        shown = await browser.get(response.headers["location"])
        match = re.search(r'id="notice">([^<]*)<', shown.text)
        assert match is not None, shown.text
        return match.group(1)

    assert "linked" in await link(taken_customer) and taken_account in await link(taken_customer)
    assert await link(customer) == f"{customer} is linked to {account}; 0 event(s) replayed."
    [audit] = audit_rows(session_factory, account)
    assert (audit.action, audit.actor, audit.reason) == ("link_customer", "alice", "ticket 3")


async def test_an_end_date_that_is_not_a_date_is_refused_with_the_reason(
    harness: Harness, browser: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    await sign_in(browser)
    response = await act(browser, account, "grant_comp", plan="team", until="soon", reason="x")
    page = await browser.get(response.headers["location"])
    notice = re.search(r'id="notice">([^<]*)<', page.text)
    assert notice is not None
    assert notice.group(1) == "&#39;soon&#39; is not a date (YYYY-MM-DD)"
    assert audit_rows(session_factory, account) == []
