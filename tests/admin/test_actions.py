"""Each operator action through the admin API, against the real account workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.workflows.harness import Harness, subscription

from .conftest import ADMIN, APP, act, active_account, app_entitlements, audit_rows, show


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_comp_is_applied_audited_and_visible_to_the_app(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    until = in_days(30)

    response = await act(api, account, "grant_comp", plan="enterprise", until=until)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["action"] == "grant_comp"
    assert answer["entitlements"]["version"] == 2
    assert (answer["entitlements"]["effective_state"], answer["entitlements"]["plan"]) == (
        "comped",
        "enterprise",
    )
    assert answer["workflow"]["status"] == "running"
    app_view = await app_entitlements(api, account, version=2)
    assert app_view == answer["entitlements"]

    [audit] = audit_rows(session_factory, account)
    assert (audit.action, audit.actor, audit.reason) == ("grant_comp", "ops@dataface", "ticket 42")
    detail = await show(api, account)
    assert detail["overrides"]["comp"]["plan"] == "enterprise"
    assert datetime.fromisoformat(detail["overrides"]["comp"]["until"]) == (
        datetime.fromisoformat(until)
    )
    [entry] = detail["operator_actions"]
    assert entry["before"]["comp"] is None
    assert entry["after"]["comp"]["plan"] == "enterprise"
    assert detail["entitlement_changes"][0]["cause"] == "operator:grant_comp"


async def test_revoking_a_comp_returns_to_the_paid_plan(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    granted = await act(api, account, "grant_comp", plan="team", until=in_days(10))
    assert granted.status_code == 200, granted.text

    revoked = await act(api, account, "revoke_comp")

    assert revoked.status_code == 200, revoked.text
    entitlements = revoked.json()["entitlements"]
    assert (entitlements["effective_state"], entitlements["plan"]) == ("active", "pro")
    assert (await app_entitlements(api, account, entitlements["version"]))["plan"] == "pro"
    assert [a.action for a in audit_rows(session_factory, account)] == [
        "grant_comp",
        "revoke_comp",
    ]


async def test_lock_then_unlock(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)

    locked = await act(api, account, "lock", reason="card testing fraud")
    assert locked.status_code == 200, locked.text
    app_view = await app_entitlements(api, account, locked.json()["entitlements"]["version"])
    assert (app_view["access"], app_view["effective_state"], app_view["message"]) == (
        "none",
        "locked",
        "contact_support",
    )
    lock = (await show(api, account))["overrides"]["lock"]
    assert lock == {"actor": "ops@dataface", "reason": "card testing fraud"}

    unlocked = await act(api, account, "unlock")
    assert unlocked.status_code == 200, unlocked.text
    version = unlocked.json()["entitlements"]["version"]
    assert (await app_entitlements(api, account, version))["access"] == "full"
    assert [a.action for a in audit_rows(session_factory, account)] == ["lock", "unlock"]


async def test_extend_grace_moves_the_grace_end(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = await active_account(harness)
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    past_due = await harness.wait_for_entitlements(account, state="past_due")
    new_end = in_days(20)

    response = await act(api, account, "extend_grace", until=new_end)

    assert response.status_code == 200, response.text
    app_view = await app_entitlements(api, account, response.json()["entitlements"]["version"])
    assert app_view["billing_state"] == "past_due"
    assert datetime.fromisoformat(app_view["grace_ends_at"]) == datetime.fromisoformat(new_end)
    assert past_due.grace_ends_at is not None
    assert datetime.fromisoformat(app_view["grace_ends_at"]) > past_due.grace_ends_at
    [audit] = audit_rows(session_factory, account)
    assert audit.action == "extend_grace"


async def test_resync_applies_what_stripe_says_now(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = await active_account(harness)
    # Stripe changed without a webhook reaching us (a disabled endpoint, say).
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team", seats=4)

    response = await act(api, account, "resync", reason="missed webhooks")

    assert response.status_code == 200, response.text
    entitlements = response.json()["entitlements"]
    assert (entitlements["plan"], entitlements["seats"], entitlements["version"]) == ("team", 4, 2)
    assert [a.action for a in audit_rows(session_factory, account)] == ["resync"]


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("explode", {}, "unknown action 'explode'"),
    ("grant_comp", {"until": "2030-01-01T00:00:00Z"}, "a comp needs a plan and an end date"),
    ("grant_comp", {"plan": "enterprise"}, "a comp needs a plan and an end date"),
    ("grant_comp", {"plan": "platinum", "until": "2030-01-01T00:00:00Z"}, "unknown plan"),
    ("grant_comp", {"plan": "free", "until": "2030-01-01T00:00:00Z"}, "unknown plan 'free'"),
    ("grant_comp", {"plan": "team", "until": "2030-01-01T00:00:00"}, "timezone"),
    ("grant_comp", {"plan": "team", "until": "2020-01-01T00:00:00Z"}, "not in the future"),
    ("grant_comp", {"plan": "team", "until": "next week"}, "until"),
    ("extend_grace", {}, "needs the new end date"),
    ("lock", {"until": "2030-01-01T00:00:00Z"}, "lock takes no end date"),
    ("resync", {"plan": "team"}, "resync takes no plan"),
    ("lock", {"actor": "   "}, "actor"),
    ("lock", {"reason": ""}, "reason"),
    ("lock", {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("action", "body", "problem"), BAD_REQUESTS)
async def test_bad_input_is_refused_with_422_and_changes_nothing(
    harness: Harness,
    api: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    action: str,
    body: dict[str, Any],
    problem: str,
) -> None:
    account, _ = await active_account(harness)

    response = await act(api, account, action, **body)

    assert response.status_code == 422
    assert problem in str(response.json()["detail"])
    assert (await app_entitlements(api, account))["version"] == 1
    assert audit_rows(session_factory, account) == []


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        ("unlock", {}, "the account is not locked"),
        ("revoke_comp", {}, "the account has no comp to revoke"),
        ("extend_grace", {"until": in_days(5)}, "no grace period to extend in state active"),
    ],
)
async def test_what_the_workflow_refuses_is_409_with_its_reason(
    harness: Harness,
    api: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    action: str,
    body: dict[str, Any],
    reason: str,
) -> None:
    account, _ = await active_account(harness)

    response = await act(api, account, action, **body)

    assert response.status_code == 409
    assert response.json()["detail"] == reason
    assert (await app_entitlements(api, account))["version"] == 1
    assert audit_rows(session_factory, account) == []


ADMIN_ROUTES = [
    ("GET", "/admin/accounts/acct_x", None),
    ("GET", "/admin/accounts?state=past_due", None),
    ("POST", "/admin/accounts/acct_x/actions/lock", {"actor": "a", "reason": "b"}),
    ("GET", "/admin/unroutable-events", None),
    (
        "POST",
        "/admin/unroutable-events/link",
        {"customer_id": "cus_x", "account_id": "acct_x", "actor": "a", "reason": "b"},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
@pytest.mark.parametrize("headers", [APP, {}, {"Authorization": "Bearer wrong"}])
async def test_admin_routes_refuse_anything_but_the_admin_token(
    offline_api: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> None:
    response = await offline_api.request(method, path, json=body, headers=headers)

    assert response.status_code == 401
    assert audit_rows(session_factory, "acct_x") == []


async def test_the_admin_token_is_not_an_app_token(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.get("/v1/accounts/acct_x/entitlements", headers=ADMIN)
    assert response.status_code == 401


async def test_a_retried_action_with_the_same_idempotency_key_applies_once(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    body = {"actor": "ops@dataface", "reason": "ticket 42"}
    headers = {**ADMIN, "Idempotency-Key": "ticket-42-lock"}

    first = await api.post(f"/admin/accounts/{account}/actions/lock", json=body, headers=headers)
    again = await api.post(f"/admin/accounts/{account}/actions/lock", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["entitlements"]["version"] == first.json()["entitlements"]["version"]
    assert [row.action for row in audit_rows(session_factory, account)] == ["lock"]
