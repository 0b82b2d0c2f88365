"""The whole path: a signed Stripe webhook moves the entitlements the app reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.config import Settings
from tests.conftest import wait_for
from tests.signing import stripe_signature
from tests.workflows.harness import Harness, running_harness, subscription

SECRET = "whsec_end_to_end"
APP_TOKEN = "e2e-app-token"


@pytest.fixture
async def harness(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> AsyncIterator[Harness]:
    async with running_harness(workflow_env, session_factory) as h:
        yield h


@pytest.fixture
async def api(harness: Harness, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        stripe_webhook_secret=SECRET,
        app_api_token=APP_TOKEN,
        task_queue=harness.task_queue,
    )
    app = create_app(settings, temporal_client=harness.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


def stripe_event(event_id: str, event_type: str, account: str, customer: str) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": 1_764_000_000,
        "api_version": "2026-10-28.endive",
        "data": {
            "object": {
                "id": f"sub_{customer}",
                "object": "subscription",
                "customer": customer,
                "metadata": {"account_id": account},
            }
        },
    }


async def post(api: httpx.AsyncClient, event: dict) -> httpx.Response:
    payload = json.dumps(event).encode()
    return await api.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": stripe_signature(payload, SECRET)},
    )


async def entitlements(api: httpx.AsyncClient, account: str) -> dict:
    response = await api.get(
        f"/v1/accounts/{account}/entitlements", headers={"Authorization": f"Bearer {APP_TOKEN}"}
    )
    assert response.status_code == 200
    return response.json()


async def test_signed_webhooks_drive_the_entitlement_api(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    account, customer = harness.new_account()
    harness.accounts.add(account)
    assert (await entitlements(api, account))["plan"] == "free"

    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="pro")
    created = stripe_event("evt_e2e_1", "customer.subscription.created", account, customer)
    response = await post(api, created)
    assert response.json() == {"status": "accepted", "account_id": account}

    async def plan_is(plan: str, state: str) -> dict | None:
        answer = await entitlements(api, account)
        return answer if (answer["plan"], answer["billing_state"]) == (plan, state) else None

    await wait_for(lambda: plan_is("pro", "active"), what="pro/active")

    harness.stripe.subscriptions[customer] = subscription(customer, "past_due", plan="pro")
    failed = stripe_event("evt_e2e_2", "invoice.payment_failed", account, customer)
    assert (await post(api, failed)).status_code == 200
    past_due = await wait_for(lambda: plan_is("pro", "past_due"), what="past_due")
    assert past_due["message"] == "payment_failed"

    await harness.skip(timedelta(days=8))
    restricted = await wait_for(lambda: plan_is("pro", "restricted"), what="restricted")
    assert restricted["access"] == "read_only"

    # Stripe redelivers the first event: accepted again, nothing moves.
    assert (await post(api, created)).status_code == 200
    marker = await post(api, stripe_event("evt_e2e_3", "invoice.finalized", account, customer))
    assert marker.status_code == 200
    await harness.wait_until_handled(account, "evt_e2e_3")
    assert (await entitlements(api, account))["version"] == restricted["version"]
