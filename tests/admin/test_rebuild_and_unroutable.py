"""Repairs: a terminated workflow rebuilt by `resync`; unroutable events linked and replayed."""

from __future__ import annotations

from uuid import uuid4

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus

from tests.workflows.harness import Harness, subscription

from .conftest import (
    ACTOR,
    ADMIN,
    act,
    active_account,
    app_entitlements,
    audit_rows,
    post_webhook,
    show,
    stripe_event,
)


async def test_terminated_workflow_is_rebuilt_by_resync(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = await active_account(harness)
    await harness.terminate_when_idle(account, reason="operator cleanup from the Web UI")
    assert (await show(api, account))["workflow"]["status"] == "terminated"
    # While no run exists, Stripe moves on: the payment failed.
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")

    response = await act(api, account, "resync", reason="rebuild after terminate")

    assert response.status_code == 200, response.text
    entitlements = response.json()["entitlements"]
    # The new run continued from the stored version, and took Stripe's word for the state.
    assert (entitlements["billing_state"], entitlements["version"]) == ("past_due", 2)
    assert entitlements["grace_ends_at"] is not None
    assert (await app_entitlements(api, account, version=2))["billing_state"] == "past_due"
    description = await harness.handle(account).describe()
    assert description.status is WorkflowExecutionStatus.RUNNING
    detail = await show(api, account)
    assert detail["workflow"]["status"] == "running"
    assert detail["workflow"]["customer_id"] == customer
    assert [a.action for a in audit_rows(session_factory, account)] == ["resync"]


async def unroutable(api: httpx.AsyncClient, **params: str) -> list[dict]:
    response = await api.get("/admin/unroutable-events", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    events: list[dict] = response.json()["events"]
    return events


async def test_unroutable_events_are_linked_replayed_and_resolved(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = harness.new_account()
    harness.accounts.add(account)
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team", seats=3)
    # A subscription created outside our checkout: no account id anywhere in the event.
    first = stripe_event(f"evt_{uuid4().hex[:8]}", "customer.subscription.created", customer)
    second = stripe_event(f"evt_{uuid4().hex[:8]}", "invoice.paid", customer)
    for event in (first, second):
        response = await post_webhook(api, event)
        assert response.json() == {"status": "unroutable"}

    waiting = await unroutable(api, resolved="false", customer_id=customer)
    assert [(e["event_id"], e["resolved"]) for e in waiting] == [
        (first["id"], False),
        (second["id"], False),
    ]
    assert (await app_entitlements(api, account))["plan"] == "free"

    body = {"customer_id": customer, "account_id": account, **ACTOR}
    linked = await api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)

    assert linked.status_code == 200, linked.text
    assert linked.json() == {
        "account_id": account,
        "customer_id": customer,
        "newly_linked": True,
        "replayed": 2,
        "replayed_event_ids": [first["id"], second["id"]],
    }
    handled = await harness.wait_until_handled(account, second["id"])
    entitlements = await app_entitlements(api, account, handled.entitlement_version)
    assert (entitlements["billing_state"], entitlements["plan"], entitlements["seats"]) == (
        "active",
        "team",
        3,
    )
    assert await unroutable(api, resolved="false", customer_id=customer) == []
    resolved = await unroutable(api, resolved="true", customer_id=customer)
    assert {e["resolved_account_id"] for e in resolved} == {account}
    [audit] = audit_rows(session_factory, account)
    assert (audit.action, audit.actor, audit.reason) == ("link_customer", *ACTOR.values())
    assert audit.before == {"stripe_customer_id": None}
    assert audit.after == {
        "stripe_customer_id": customer,
        "replayed_event_ids": [first["id"], second["id"]],
    }
    taken_in = {e["event_id"] for e in (await show(api, account))["stripe_events"]}
    assert taken_in == {first["id"], second["id"]}

    # Once more: nothing left to do, nothing done.
    again = await api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)
    assert again.status_code == 200
    assert (again.json()["newly_linked"], again.json()["replayed"]) == (False, 0)
    assert len(audit_rows(session_factory, account)) == 1
    # And from now on the customer's events route straight to the account.
    later = stripe_event(f"evt_{uuid4().hex[:8]}", "invoice.finalized", customer)
    assert (await post_webhook(api, later)).json() == {"status": "accepted", "account_id": account}
    await harness.wait_until_handled(account, later["id"])


async def test_linking_a_customer_owned_by_another_account_is_409(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    owner, customer = await active_account(harness)
    other, _ = harness.new_account()
    body = {"customer_id": customer, "account_id": other, **ACTOR}

    response = await api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)

    assert response.status_code == 409
    assert response.json()["detail"] == f"customer {customer} is already linked to account {owner}"
    assert audit_rows(session_factory, other) == []
    found = await api.get(f"/admin/accounts/{other}", headers=ADMIN)
    assert found.status_code == 404


async def test_link_refuses_malformed_ids(api: httpx.AsyncClient) -> None:
    body = {"customer_id": "not a customer", "account_id": "acct/../x", **ACTOR}
    response = await api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert {error["loc"][-1] for error in response.json()["detail"]} == {
        "customer_id",
        "account_id",
    }


async def test_a_link_the_running_workflow_does_not_know_is_flagged_until_resynced(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    """A customer linked without stored events: the running workflow learns of it at its next
    sync; until then `show` says so."""
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team")
    assert (await act(api, account, "lock")).status_code == 200  # starts a run without customer
    body = {"customer_id": customer, "account_id": account, **ACTOR}
    linked = await api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)
    assert linked.json()["replayed"] == 0

    detail = await show(api, account)
    [warning] = detail["warnings"]
    assert warning == (
        f"the workflow knows customer none, the database links {customer}: resync the account"
    )

    rebuilt = await act(api, account, "resync")
    assert rebuilt.json()["entitlements"]["plan"] == "team"
    assert (await show(api, account))["warnings"] == []
