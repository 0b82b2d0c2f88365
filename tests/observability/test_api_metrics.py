"""`GET /metrics` on the API: requests by route template, webhook outcomes, accounts by state.

Counters are process-wide (other tests count too), so each test compares a scrape before and
after what it does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import AccountsByStateCollector
from db import repository
from domain.catalog import default_catalog
from domain.entitlements import free_entitlements
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, post_event
from tests.api.routes.test_webhooks import subscription_event

pytestmark = pytest.mark.db

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SCRAPER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_webhook_outcomes_and_requests_are_counted(client: httpx.AsyncClient) -> None:
    before = await scrape(client)

    accepted = await post_event(client, subscription_event(account_id=f"acct_{uuid4().hex[:8]}"))
    ignored_event = {**subscription_event(), "type": "customer.tax_id.created"}
    ignored = await post_event(client, ignored_event)
    unroutable = await post_event(client, subscription_event())
    forged = await client.post(
        "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
    )

    assert [r.status_code for r in (accepted, ignored, unroutable, forged)] == [200, 200, 200, 400]
    after = await scrape(client)
    events = "billing_webhook_events_total"
    updated = "customer.subscription.updated"
    assert grew(before, after, events, event_type=updated, outcome="accepted") == 1
    assert grew(before, after, events, event_type=updated, outcome="unroutable") == 1
    ignored_type = "customer.tax_id.created"
    assert grew(before, after, events, event_type=ignored_type, outcome="ignored") == 1
    assert grew(before, after, events, event_type="unverified", outcome="rejected") == 1

    requests, route = "billing_http_requests_total", "/webhooks/stripe"
    assert grew(before, after, requests, method="POST", route=route, status="200") == 3
    assert grew(before, after, requests, method="POST", route=route, status="400") == 1
    latency = "billing_http_request_duration_seconds_count"
    assert grew(before, after, latency, method="POST", route=route) == 4


async def test_webhook_refused_while_temporal_is_down_is_counted_unavailable(
    client: httpx.AsyncClient, temporal
) -> None:
    temporal.failure = RuntimeError("Failed client connect")
    before = await scrape(client)

    response = await post_event(client, subscription_event(account_id="acct_metrics_down"))

    assert response.status_code == 503
    after = await scrape(client)
    labels = {"event_type": "customer.subscription.updated", "outcome": "unavailable"}
    assert grew(before, after, "billing_webhook_events_total", **labels) == 1


async def test_routes_are_labelled_by_template_not_by_path(client: httpx.AsyncClient) -> None:
    before = await scrape(client)

    for account in ("acct_one", "acct_two"):
        await client.get(
            f"/v1/accounts/{account}/entitlements",
            headers={"Authorization": f"Bearer {APP_TOKEN}"},
        )
    await client.get("/no/such/path/123")

    after = await scrape(client)
    requests = "billing_http_requests_total"
    template = "/v1/accounts/{account_id}/entitlements"
    assert grew(before, after, requests, method="GET", route=template, status="200") == 2
    assert grew(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert not any("acct_one" in dict(labels).get("route", "") for _, labels in after)


async def test_accounts_by_billing_state_are_read_from_the_database(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    before = await scrape(client)

    free = free_entitlements(default_catalog())
    for state in ("active", "active", "past_due"):
        entitlements = replace(free, billing_state=state, effective_state=state)
        with session_factory.begin() as session:
            repository.write_entitlements(
                session, f"acct_{uuid4().hex[:10]}", 1, entitlements, {}, "test", []
            )

    after = await scrape(client)
    assert grew(before, after, "billing_accounts", billing_state="active") == 2
    assert grew(before, after, "billing_accounts", billing_state="past_due") == 1


async def test_metrics_never_show_tokens_or_event_bodies(client: httpx.AsyncClient) -> None:
    event = subscription_event(account_id="acct_metrics_secret")
    await post_event(client, event)

    text = (await client.get("/metrics", headers=SCRAPER)).text

    assert event["id"] not in text
    assert "acct_metrics_secret" not in text
    assert json.dumps(event["data"]) not in text


@pytest.mark.parametrize("token", [None, APP_TOKEN, "wrong"])
async def test_metrics_need_the_admin_token(client: httpx.AsyncClient, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert "billing_" not in response.text


def test_accounts_are_counted_by_the_database_in_one_grouped_query(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        for _ in range(3):
            account = f"acct_{uuid4().hex[:10]}"
            entitlements = free_entitlements(default_catalog())
            repository.write_entitlements(session, account, 1, entitlements, {}, "test", [])
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = session_factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        [family] = AccountsByStateCollector(session_factory).collect()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(statements) == 1
    assert "GROUP BY" in statements[0] and "count(" in statements[0]
    assert sum(sample.value for sample in family.samples) >= 3
