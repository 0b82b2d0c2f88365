"""The app with its admin API, against the real account workflow (harness) and test database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.account_store import LIFECYCLE_JSON
from api.main import create_app
from core.config import Settings
from db import repository
from db.models import OperatorAction
from domain.catalog import default_catalog
from domain.entitlements import entitlements_for
from domain.lifecycle import Lifecycle
from tests.api.conftest import closed_port
from tests.conftest import wait_for
from tests.signing import stripe_signature
from tests.workflows.harness import Harness, running_harness, subscription

WEBHOOK_SECRET = "whsec_admin_tests"
APP_TOKEN = "app-token-admin-tests"
ADMIN_TOKEN = "admin-token-admin-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
APP = {"Authorization": f"Bearer {APP_TOKEN}"}
ACTOR = {"actor": "ops@dataface", "reason": "ticket 42"}
# An operator of the support console, signing in with a token of their own.
OPERATOR_TOKEN = "operator-token-of-alice"


def make_settings(database_url: str, task_queue: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "app_api_token": APP_TOKEN,
        "admin_api_token": ADMIN_TOKEN,
        "console_operator_tokens": {"alice": OPERATOR_TOKEN},
        "task_queue": task_queue,
        "temporal_address": f"127.0.0.1:{closed_port()}",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def harness(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> AsyncIterator[Harness]:
    async with running_harness(workflow_env, session_factory) as h:
        yield h


@pytest.fixture
async def app(harness: Harness, database_url: str) -> AsyncIterator[FastAPI]:
    """The app, started, talking to the harness's Temporal (and so to the real workflow)."""
    app = create_app(
        make_settings(database_url, harness.task_queue), temporal_client=harness.client
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Anonymous: each request names its token, so a test reads as who is calling."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billing"
    ) as client:
        yield client


async def act(api: httpx.AsyncClient, account: str, action: str, **body: Any) -> httpx.Response:
    payload = {**ACTOR, **body}
    return await api.post(
        f"/admin/accounts/{account}/actions/{action}", json=payload, headers=ADMIN
    )


async def show(api: httpx.AsyncClient, account: str) -> dict[str, Any]:
    response = await api.get(f"/admin/accounts/{account}", headers=ADMIN)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def app_entitlements(
    api: httpx.AsyncClient, account: str, version: int | None = None
) -> dict[str, Any]:
    """What the Dataface app reads; with `version`, once the API serves that version (its
    answers follow the database's change log within a poll)."""

    async def read() -> dict[str, Any] | None:
        response = await api.get(f"/v1/accounts/{account}/entitlements", headers=APP)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer if version is None or answer["version"] == version else None

    return await wait_for(read, within=5, what=f"version {version} of {account}'s entitlements")


async def active_account(h: Harness, plan: str = "pro") -> tuple[str, str]:
    """An account whose workflow has applied one event: active on `plan`, version 1."""
    account, customer = h.new_account()
    h.stripe.subscriptions[customer] = subscription(customer, "active", plan=plan)
    event_id = await h.send(account, customer)
    await h.wait_for_entitlements(account, state="active", version=1)
    await h.wait_until_handled(account, event_id)
    return account, customer


def audit_rows(sessions: sessionmaker[Session], account: str) -> list[OperatorAction]:
    with sessions() as session:
        query = select(OperatorAction).where(OperatorAction.account_id == account)
        return list(session.scalars(query.order_by(OperatorAction.id)))


def seed_account(
    sessions: sessionmaker[Session],
    account: str,
    customer: str | None,
    lifecycle: Lifecycle,
    *,
    version: int = 1,
    cause: str = "seeded",
) -> None:
    """Rows as the workflow would have written them, without running it."""
    with sessions.begin() as session:
        if customer is not None:
            repository.link_customer(session, account, customer)
        repository.write_entitlements(
            session,
            account,
            version,
            entitlements_for(lifecycle, default_catalog()),
            LIFECYCLE_JSON.dump_python(lifecycle, mode="json"),
            cause,
            [],
        )


def stripe_event(event_id: str, event_type: str, customer: str, **metadata: str) -> dict:
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
                "metadata": metadata,
            }
        },
    }


async def post_webhook(api: httpx.AsyncClient, event: dict) -> httpx.Response:
    payload = json.dumps(event).encode()
    return await api.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": stripe_signature(payload, WEBHOOK_SECRET)},
    )


@pytest.fixture
async def offline_api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with Temporal unreachable (a lazy client to a closed port), as in an outage."""
    app = create_app(make_settings(database_url, "billing-admin-offline"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://billing") as c,
    ):
        yield c
