from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from db import repository
from db.models import UnroutableEvent
from tests.api.conftest import (
    TASK_QUEUE,
    ClientFactory,
    RecordingTemporal,
    post_event,
    sign,
)
from workflows.account import (
    AccountBillingWorkflow,
    AccountWorkflowInput,
    StripeEventSignal,
    workflow_id_for,
)

pytestmark = pytest.mark.db


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:12]}"


def subscription_event(
    *,
    account_id: str | None = None,
    customer_id: str | None = None,
    event_type: str = "customer.subscription.updated",
) -> dict[str, Any]:
    subscription: dict[str, Any] = {
        "id": new_id("sub"),
        "object": "subscription",
        "customer": customer_id or new_id("cus"),
        "status": "active",
        "metadata": {"account_id": account_id} if account_id else {},
    }
    return {
        "id": new_id("evt"),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": subscription},
    }


def unroutable_count(sessions: sessionmaker[Session], event_id: str) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).where(UnroutableEvent.event_id == event_id)) or 0


async def test_routed_event_signals_the_account_workflow(
    client: httpx.AsyncClient, temporal: RecordingTemporal
) -> None:
    account_id, customer_id = new_id("acct"), new_id("cus")
    event = subscription_event(account_id=account_id, customer_id=customer_id)

    response = await post_event(client, event)

    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "account_id": account_id}
    [call] = temporal.calls
    assert call["workflow"] == AccountBillingWorkflow.run
    assert call["arg"] == AccountWorkflowInput(account_id=account_id)
    assert call["id"] == workflow_id_for(account_id) == f"billing-account-{account_id}"
    assert call["task_queue"] == TASK_QUEUE
    assert call["start_signal"] == "stripe_event"
    assert call["start_signal_args"] == [
        StripeEventSignal(
            event_id=event["id"],
            event_type="customer.subscription.updated",
            created=event["created"],
            customer_id=customer_id,
        )
    ]


async def test_event_routed_through_the_linked_customer(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
) -> None:
    account_id, customer_id = new_id("acct"), new_id("cus")
    with session_factory.begin() as session:
        repository.link_customer(session, account_id, customer_id)
    invoice_event = {
        "id": new_id("evt"),
        "type": "invoice.payment_failed",
        "created": 1_700_000_000,
        "data": {"object": {"id": new_id("in"), "object": "invoice", "customer": customer_id}},
    }

    response = await post_event(client, invoice_event)

    assert response.json() == {"status": "accepted", "account_id": account_id}
    [call] = temporal.calls
    assert call["id"] == workflow_id_for(account_id)
    assert call["start_signal_args"][0].customer_id == customer_id


async def test_unhandled_event_type_is_ignored(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
) -> None:
    event = subscription_event(event_type="charge.refunded")

    response = await post_event(client, event)

    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert temporal.calls == []
    assert unroutable_count(session_factory, event["id"]) == 0


async def test_unroutable_event_is_stored_once_and_not_signalled(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
) -> None:
    customer_id = new_id("cus")
    event = subscription_event(customer_id=customer_id)

    first = await post_event(client, event)
    redelivery = await post_event(client, event)

    assert first.status_code == redelivery.status_code == 200
    assert first.json() == redelivery.json() == {"status": "unroutable"}
    assert temporal.calls == []
    assert unroutable_count(session_factory, event["id"]) == 1
    with session_factory() as session:
        stored = session.get_one(UnroutableEvent, event["id"])
    assert (stored.event_type, stored.customer_id, stored.payload) == (
        "customer.subscription.updated",
        customer_id,
        event,
    )


def rejected_request(kind: str, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    if kind == "bad signature":
        return payload, {"Stripe-Signature": sign(payload, secret="whsec_someone_else")}
    if kind == "missing signature":
        return payload, {}
    if kind == "expired timestamp":
        return payload, {"Stripe-Signature": sign(payload, timestamp=int(time.time()) - 301)}
    if kind == "body changed after signing":
        return payload.replace(b'"active"', b'"canceled"'), {"Stripe-Signature": sign(payload)}
    if kind == "malformed JSON":
        garbage = b'{"id": "evt_1", "type": '
        return garbage, {"Stripe-Signature": sign(garbage)}
    if kind == "not an event":
        other = json.dumps({"id": event["id"], "type": event["type"]}).encode()
        return other, {"Stripe-Signature": sign(other)}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bad signature", "invalid Stripe signature"),
        ("missing signature", "missing Stripe-Signature header"),
        ("expired timestamp", "tolerance"),
        ("body changed after signing", "invalid Stripe signature"),
        ("malformed JSON", "not JSON"),
        ("not an event", "not a Stripe event"),
    ],
)
async def test_rejected_request_is_400_and_leaves_no_trace(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
    kind: str,
    reason: str,
) -> None:
    # Unroutable if it got through, so it would show up in the database.
    event = subscription_event()
    body, headers = rejected_request(kind, event)

    response = await client.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert temporal.calls == []
    assert unroutable_count(session_factory, event["id"]) == 0


async def test_oversized_body_is_413(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
) -> None:
    event = subscription_event()
    event["data"]["object"]["metadata"]["padding"] = "x" * 70_000
    payload = json.dumps(event).encode()

    response = await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)}
    )

    assert response.status_code == 413
    assert temporal.calls == []
    assert unroutable_count(session_factory, event["id"]) == 0


async def test_oversized_body_without_content_length_is_413(
    client: httpx.AsyncClient, temporal: RecordingTemporal
) -> None:
    payload = json.dumps(subscription_event(account_id=new_id("acct"))).encode()

    async def chunked() -> AsyncIterator[bytes]:
        yield payload
        for _ in range(10):
            yield b" " * 8 * 1024

    response = await client.post(
        "/webhooks/stripe", content=chunked(), headers={"Stripe-Signature": sign(payload)}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert temporal.calls == []


@pytest.mark.parametrize(
    "failure",
    [
        RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""),
        ConnectionError("connection refused"),
    ],
    ids=["rpc-error", "connection-error"],
)
async def test_temporal_failure_is_503_so_stripe_retries(
    make_client: ClientFactory, failure: BaseException
) -> None:
    async with make_client(temporal_client=RecordingTemporal(failure=failure)) as client:
        response = await post_event(client, subscription_event(account_id=new_id("acct")))

    assert response.status_code == 503


async def test_unreachable_temporal_server_is_503(make_client: ClientFactory) -> None:
    # No client passed in: the app connects lazily to `temporal_address`, where nothing listens.
    async with make_client(temporal_client=None) as client:
        response = await post_event(client, subscription_event(account_id=new_id("acct")))

    assert response.status_code == 503
