"""The console's account and "needs attention" pages over the database, with Temporal's answers
faked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.account_workflows import SyncErrorAccount
from core.config import Settings
from db import outbox
from db.models import EntitlementRow
from domain.lifecycle import BillingState, Lifecycle
from tests.api.conftest import ADMIN_TOKEN
from tests.api.routes.conftest import (
    DISAGREEING_LIVE_VIEW,
    FakeAccountWorkflows,
    api_with,
    seed_account,
)
from tests.console_client import sign_in
from tests.workflows.harness import subscription


@pytest.fixture
async def browser(
    settings: Settings, workflows: FakeAccountWorkflows
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(settings, workflows) as client:
        await sign_in(client, ADMIN_TOKEN, name="ops")
        yield client


def seed(sessions: sessionmaker[Session], account_id: str, state: BillingState) -> None:
    customer_id = account_id.replace("acct_", "cus_")
    lifecycle = Lifecycle(state=state, subscription=subscription(customer_id, str(state)))
    seed_account(sessions, account_id, lifecycle, customer_id=customer_id)


def written_ago(sessions: sessionmaker[Session], account_id: str, age: timedelta) -> None:
    with sessions.begin() as session:
        session.execute(
            update(EntitlementRow)
            .where(EntitlementRow.account_id == account_id)
            .values(updated_at=datetime.now(UTC) - age)
        )


async def test_the_page_lists_what_an_operator_must_look_at(
    browser: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, "acct_locked_out", BillingState.RESTRICTED)
    seed(session_factory, "acct_stuck_old", BillingState.INCOMPLETE)
    written_ago(session_factory, "acct_stuck_old", timedelta(days=2))
    seed(session_factory, "acct_stuck_new", BillingState.INCOMPLETE)
    seed(session_factory, "acct_mail", BillingState.ACTIVE)
    with session_factory.begin() as session:
        outbox.mark_unsent(
            session,
            key="acct_mail/welcome",
            account_id="acct_mail",
            kind="subscription_started",
            status=outbox.DeliveryStatus.NO_RECIPIENT,
            reason="the Stripe customer has no email address",
        )
    workflows.sync_errors = [SyncErrorAccount("acct_broken", "CatalogError")]

    page = await browser.get("/console/attention")

    assert page.status_code == 200
    sections = dict(
        zip(
            ["sync", "unroutable", "restricted", "stuck", "emails"],
            page.text.split("<h2>")[1:],
            strict=True,
        )
    )
    assert "acct_broken" in sections["sync"] and "CatalogError" in sections["sync"]
    assert "acct_locked_out" in sections["restricted"]
    assert "acct_stuck_old" in sections["stuck"]
    assert "acct_stuck_new" not in sections["stuck"]  # Stripe still gives it hours
    assert "acct_mail" in sections["emails"]
    assert "the Stripe customer has no email address" in sections["emails"]


async def test_without_temporal_the_page_says_the_sync_error_list_is_unavailable(
    browser: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    workflows.sync_errors = None
    page = await browser.get("/console/attention")
    assert page.status_code == 200
    assert "Temporal did not answer: the list is unavailable right now." in page.text


async def test_the_account_page_shows_the_sync_error_once_beside_the_other_warnings(
    browser: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, "acct_drifting", BillingState.ACTIVE)
    workflows.live = DISAGREEING_LIVE_VIEW

    page = (await browser.get("/console/accounts/acct_drifting")).text

    assert page.count("Stripe refused: no such price") == 1
    assert 'id="sync-error"' in page
    assert "the workflow knows customer cus_other, the database links cus_drifting" in page
