"""What operators read: one account's whole story, and accounts by state. Database only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
from sqlalchemy.orm import Session, sessionmaker

from db import repository
from db.models import EmailDelivery, UnroutableEvent
from domain.catalog import default_catalog
from domain.entitlements import entitlements_for
from domain.lifecycle import BillingState, Comp, Lifecycle, Lock
from tests.workflows.harness import Harness, subscription

from .conftest import ACTOR, ADMIN, act, active_account, seed_account, show

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def lifecycle(
    state: BillingState, customer: str, *, comp: Comp | None = None, lock: Lock | None = None
) -> Lifecycle:
    sub = None if state is BillingState.FREE else subscription(customer, "active")
    grace = WHEN + timedelta(days=7) if state is BillingState.PAST_DUE else None
    return Lifecycle(state=state, subscription=sub, grace_ends_at=grace, comp=comp, lock=lock)


async def test_an_account_shows_changes_events_emails_audit_and_the_live_workflow(
    harness: Harness, api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = await active_account(harness)
    [first_event] = (await show(api, account))["stripe_events"]
    with session_factory.begin() as session:
        session.add(
            EmailDelivery(
                key=f"{account}:cycle1:payment_failed",
                account_id=account,
                kind="payment_failed",
                recipient="billing@example.com",
                subject="Your payment failed",
                status="sent",
                attempts=2,
                created_at=WHEN,
                sent_at=WHEN + timedelta(minutes=5),
            )
        )
    locked = await act(api, account, "lock")
    assert locked.status_code == 200, locked.text

    detail = await show(api, account)

    assert detail["account_id"] == account
    assert detail["stripe_customer_id"] == customer
    assert detail["entitlements"]["effective_state"] == "locked"
    assert [c["version"] for c in detail["entitlement_changes"]] == [2, 1]
    newest = detail["entitlement_changes"][0]
    assert (newest["cause"], newest["access"], newest["notices"]) == ("operator:lock", "none", [])
    assert detail["entitlement_changes"][1]["notices"] == ["subscription_started"]
    assert first_event["event_type"] == "customer.subscription.updated"
    # The workflow may send its own emails (subscription_started); ours is the one we added.
    [email] = [e for e in detail["emails"] if e["key"] == f"{account}:cycle1:payment_failed"]
    assert (email["kind"], email["status"], email["attempts"]) == ("payment_failed", "sent", 2)
    assert email["sent_at"] is not None
    assert "recipient" not in email
    [audit] = detail["operator_actions"]
    assert (audit["action"], audit["actor"], audit["reason"]) == ("lock", *ACTOR.values())
    assert (audit["before"]["locked"], audit["after"]["locked"]) == (False, True)
    assert audit["after"]["state"] == "active"
    assert detail["workflow"] == {
        "status": "running",
        "billing_state": "active",
        "plan": "pro",
        "entitlement_version": 2,
        "customer_id": customer,
        "sync_error": None,
        "error": None,
    }


async def test_reads_keep_working_while_temporal_is_down(
    offline_api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = f"acct_{uuid4().hex[:10]}", f"cus_{uuid4().hex[:10]}"
    seed_account(session_factory, account, customer, lifecycle(BillingState.ACTIVE, customer))
    # 55 changes: only the newest 50 are shown.
    past_due = lifecycle(BillingState.PAST_DUE, customer)
    with session_factory.begin() as session:
        for version in range(2, 56):
            repository.write_entitlements(
                session,
                account,
                version,
                entitlements_for(past_due, default_catalog()),
                {},
                f"stripe:evt_{version}",
                ["payment_failed"],
            )

    response = await offline_api.get(f"/admin/accounts/{account}", headers=ADMIN)

    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["entitlements"]["version"] == 55
    versions = [c["version"] for c in detail["entitlement_changes"]]
    assert versions == list(range(55, 5, -1))
    assert detail["workflow"]["status"] == "unavailable"
    listed = await offline_api.get(
        "/admin/accounts", params={"state": "past_due", "after": account[:-1]}, headers=ADMIN
    )
    assert listed.status_code == 200
    assert account in [a["account_id"] for a in listed.json()["accounts"]]


async def test_actions_while_temporal_is_down_are_503_and_change_nothing(
    offline_api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = f"acct_{uuid4().hex[:10]}", f"cus_{uuid4().hex[:10]}"
    seed_account(session_factory, account, customer, lifecycle(BillingState.ACTIVE, customer))

    response = await offline_api.post(
        f"/admin/accounts/{account}/actions/lock", json=ACTOR, headers=ADMIN
    )

    assert response.status_code == 503
    assert "may still apply" in response.json()["detail"]
    detail = (await offline_api.get(f"/admin/accounts/{account}", headers=ADMIN)).json()
    assert (detail["entitlements"]["version"], detail["operator_actions"]) == (1, [])


async def test_linking_while_temporal_is_down_keeps_the_events_for_a_retry(
    offline_api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account, customer = f"acct_{uuid4().hex[:10]}", f"cus_{uuid4().hex[:10]}"
    with session_factory.begin() as session:
        repository.store_unroutable_event(
            session, f"evt_{customer}", "invoice.paid", customer, {"created": 1}
        )
    body = {"customer_id": customer, "account_id": account, **ACTOR}

    response = await offline_api.post("/admin/unroutable-events/link", json=body, headers=ADMIN)

    assert response.status_code == 503
    assert "repeat the call" in response.json()["detail"]
    with session_factory() as session:
        assert repository.account_for_customer(session, customer) == account
        stored = session.get_one(UnroutableEvent, f"evt_{customer}")
        assert stored.resolved_at is None


async def test_unknown_account_is_404(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.get("/admin/accounts/acct_never_seen", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown account acct_never_seen"


async def test_accounts_by_state_page_by_account_id(
    offline_api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    prefix = f"acct_list_{uuid4().hex[:8]}_"
    until = datetime.now(UTC) + timedelta(days=30)
    seeded = {
        "a": lifecycle(BillingState.PAST_DUE, "cus_a"),
        "b": lifecycle(BillingState.ACTIVE, "cus_b"),
        "c": lifecycle(BillingState.PAST_DUE, "cus_c"),
        "d": lifecycle(BillingState.RESTRICTED, "cus_d"),
        "e": lifecycle(BillingState.PAST_DUE, "cus_e", lock=Lock("fraud", "ops")),
        "f": lifecycle(BillingState.ACTIVE, "cus_f", comp=Comp("enterprise", until, "vip", "ops")),
        "g": lifecycle(BillingState.PAST_DUE, "cus_g"),
    }
    for suffix, seeded_lifecycle in seeded.items():
        seed_account(session_factory, prefix + suffix, None, seeded_lifecycle)

    async def listed(state: str, limit: int) -> list[list[str]]:
        """Every page of accounts of ours in `state`, starting at our prefix."""
        pages, after = [], prefix
        while after is not None:
            response = await offline_api.get(
                "/admin/accounts",
                params={"state": state, "limit": limit, "after": after},
                headers=ADMIN,
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert len(answer["accounts"]) <= limit
            ours = [a["account_id"] for a in answer["accounts"] if a["account_id"] < prefix + "~"]
            if ours:
                pages.append(ours)
            if len(ours) < len(answer["accounts"]):
                break  # past our accounts
            after = answer["next_after"]
        return pages

    # A locked account is still past due underneath: billing states match below overrides.
    assert await listed("past_due", 2) == [
        [prefix + "a", prefix + "c"],
        [prefix + "e", prefix + "g"],
    ]
    assert await listed("restricted", 10) == [[prefix + "d"]]
    assert await listed("locked", 10) == [[prefix + "e"]]
    assert await listed("comped", 10) == [[prefix + "f"]]


async def test_listing_refuses_an_unknown_state(offline_api: httpx.AsyncClient) -> None:
    response = await offline_api.get("/admin/accounts", params={"state": "zombie"}, headers=ADMIN)
    assert response.status_code == 422
    assert "unknown state 'zombie'" in response.json()["detail"]
