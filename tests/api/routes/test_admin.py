"""The operator routes (`/admin`) with the account workflows faked (`FakeAccountWorkflows`):
what each route checks before asking the workflow, what it sends, and how it answers a
refusal or an outage. The same routes against the real workflow, with the CLI on top, are
tests/admin/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from api.account_workflows import LiveWorkflow
from api.edge import MAY_STILL_APPLY, TemporalUnavailable
from core.config import Settings
from domain.lifecycle import BillingState, Lifecycle
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, post_event
from tests.api.routes.conftest import (
    DISAGREEING_LIVE_VIEW,
    FakeAccountWorkflows,
    api_with,
    seed_account,
)
from tests.api.routes.test_webhooks import subscription_event
from tests.workflows.harness import subscription

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACTOR = {"actor": "ops@dataface.test", "reason": "ticket 42"}


@pytest.fixture
async def api(
    settings: Settings, workflows: FakeAccountWorkflows
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(settings, workflows) as api:
        yield api


def new_account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def new_customer() -> str:
    return f"cus_{uuid4().hex[:12]}"


def active(customer_id: str) -> Lifecycle:
    return Lifecycle(state=BillingState.ACTIVE, subscription=subscription(customer_id))


async def act(
    api: httpx.AsyncClient,
    account: str,
    action: str,
    *,
    headers: dict[str, str] = ADMIN,
    **body: Any,
) -> httpx.Response:
    return await api.post(
        f"/admin/accounts/{account}/actions/{action}", json={**ACTOR, **body}, headers=headers
    )


async def test_every_admin_route_needs_the_admin_token(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    account = new_account()
    app_token = {"Authorization": f"Bearer {APP_TOKEN}"}
    answers = [
        await api.get(f"/admin/accounts/{account}", headers=app_token),
        await api.get("/admin/accounts"),
        await api.get("/admin/unroutable-events", headers=app_token),
        await act(api, account, "lock", headers=app_token),
        await api.post("/admin/unroutable-events/link", json={}, headers=app_token),
    ]

    assert [a.status_code for a in answers] == [401] * 5
    assert workflows.calls == []


# --- operator actions ----------------------------------------------------------------------


async def test_an_action_goes_to_the_workflow_with_its_idempotency_key(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    account, customer = new_account(), new_customer()
    seed_account(session_factory, account, active(customer), customer_id=customer)
    until = datetime.now(UTC) + timedelta(days=30)

    response = await api.post(
        f"/admin/accounts/{account}/actions/grant_comp",
        json={**ACTOR, "plan": "team", "until": until.isoformat()},
        headers={**ADMIN, "Idempotency-Key": "ticket-42-comp"},
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["action"] == "grant_comp"
    assert answer["entitlements"]["account_id"] == account
    assert answer["workflow"] == {
        "status": "running",
        "billing_state": "active",
        "plan": "pro",
        "entitlement_version": 2,
        "customer_id": None,
        "sync_error": None,
        "error": None,
    }
    [call] = workflows.calls
    assert (call.method, call.account_id) == ("operator_action", account)
    assert (call.argument.action, call.argument.plan, call.argument.until) == (
        "grant_comp",
        "team",
        until,
    )
    assert (call.argument.actor, call.argument.reason) == (ACTOR["actor"], ACTOR["reason"])
    assert call.options == {"idempotency_key": "ticket-42-comp"}


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        ("delete_everything", {}, "unknown action 'delete_everything'; one of: "),
        ("lock", {"plan": "team"}, "lock takes no plan"),
        (
            "grant_comp",
            {"plan": "platinum", "until": "2099-01-01T00:00:00+00:00"},
            "unknown plan 'platinum'; comp one of: ",
        ),
        ("extend_grace", {"until": "2020-01-01T00:00:00+00:00"}, "is not in the future"),
    ],
)
async def test_an_action_checked_wrong_here_is_422_and_asks_nothing(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    action: str,
    body: dict[str, Any],
    reason: str,
) -> None:
    response = await act(api, new_account(), action, **body)

    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert workflows.calls == []


async def test_an_action_the_workflow_refuses_is_409_with_its_reason(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    workflows.failure = WorkflowUpdateFailedError(
        ApplicationError("the account is not locked", type="InvalidRequest")
    )

    response = await act(api, new_account(), "unlock")

    assert response.status_code == 409
    assert response.json() == {"detail": "the account is not locked"}


async def test_an_action_temporal_does_not_confirm_is_a_503_that_may_still_apply(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    workflows.failure = TemporalUnavailable(MAY_STILL_APPLY)

    response = await act(api, new_account(), "lock")

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json() == {"detail": MAY_STILL_APPLY}


# --- reads ---------------------------------------------------------------------------------


async def test_an_account_the_database_does_not_know_is_404_without_asking_temporal(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    account = new_account()

    response = await api.get(f"/admin/accounts/{account}", headers=ADMIN)

    assert response.status_code == 404
    assert response.json() == {"detail": f"unknown account {account}"}
    assert workflows.calls == []


async def test_an_account_shows_the_live_workflow_and_warns_where_it_disagrees(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    account, customer = new_account(), new_customer()
    seed_account(session_factory, account, active(customer), customer_id=customer)
    workflows.live = DISAGREEING_LIVE_VIEW

    response = await api.get(f"/admin/accounts/{account}", headers=ADMIN)

    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["workflow"]["status"] == "running"
    assert detail["workflow"]["customer_id"] == "cus_other"
    assert detail["warnings"] == [
        f"the workflow knows customer cus_other, the database links {customer}: resync the account",
        "the last Stripe sync failed: Stripe refused: no such price",
    ]


async def test_without_temporal_an_account_still_reads_from_the_database(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    account, customer = new_account(), new_customer()
    seed_account(session_factory, account, active(customer), customer_id=customer)
    workflows.live = LiveWorkflow("unavailable", error="Failed client connect")

    response = await api.get(f"/admin/accounts/{account}", headers=ADMIN)

    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["entitlements"]["billing_state"] == "active"
    assert detail["workflow"]["status"] == "unavailable"
    assert detail["workflow"]["error"] == "Failed client connect"
    assert detail["warnings"] == []


async def test_listing_by_an_unknown_state_is_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/admin/accounts", params={"state": "bankrupt"}, headers=ADMIN)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("unknown state 'bankrupt'; one of: ")


# --- linking unroutable events -------------------------------------------------------------


async def unresolved(api: httpx.AsyncClient, customer_id: str) -> list[str]:
    response = await api.get(
        "/admin/unroutable-events",
        params={"customer_id": customer_id, "resolved": False},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    return [event["event_id"] for event in response.json()["events"]]


async def test_a_replay_temporal_does_not_confirm_is_a_503_and_a_repeat_finishes_it(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    account, customer = new_account(), new_customer()
    # An event naming no account, for a customer no account is linked to: stored.
    event = subscription_event(customer_id=customer)
    assert (await post_event(api, event)).json() == {"status": "unroutable"}
    link = {"customer_id": customer, "account_id": account, **ACTOR}
    workflows.signals_unavailable = True

    cut_short = await api.post("/admin/unroutable-events/link", json=link, headers=ADMIN)

    assert cut_short.status_code == 503
    assert int(cut_short.headers["Retry-After"]) > 0
    assert cut_short.json() == {
        "detail": f"{customer} is linked to {account}, but Temporal did not confirm the replay "
        "of its events: repeat the call"
    }
    assert await unresolved(api, customer) == [event["id"]]

    workflows.signals_unavailable = False
    repeated = await api.post("/admin/unroutable-events/link", json=link, headers=ADMIN)

    assert repeated.status_code == 200, repeated.text
    assert repeated.json() == {
        "account_id": account,
        "customer_id": customer,
        # The first call linked it before replaying.
        "newly_linked": False,
        "replayed": 1,
        "replayed_event_ids": [event["id"]],
    }
    assert await unresolved(api, customer) == []
    sent = workflows.called("send_stripe_event")
    assert [(c.account_id, c.argument.event_id) for c in sent] == [(account, event["id"])] * 2
