"""Inputs that once crashed a route (a 500, and the connection dropped): each is now a 4xx
whose body encodes and says what is wrong, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from db.models import UnroutableEvent
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, ClientFactory, RecordingTemporal, sign
from tests.api.routes.test_webhooks import subscription_event

pytestmark = pytest.mark.db

APP = {"Authorization": f"Bearer {APP_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def unroutable_event(**fields: Any) -> dict[str, Any]:
    """Names no account and a customer nobody linked: stored for operators if accepted."""
    return {**subscription_event(), **fields}


def stored_unroutable(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(UnroutableEvent)) or 0


async def post_signed(client: httpx.AsyncClient, payload: bytes) -> httpx.Response:
    return await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)}
    )


# --- the webhook ---------------------------------------------------------------------------


async def test_a_non_ascii_signature_header_is_400(client: httpx.AsyncClient) -> None:
    payload = json.dumps(unroutable_event()).encode()

    response = await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": "t=1,v1=é".encode()}
    )

    assert response.status_code == 400
    assert "Stripe signature" in response.json()["detail"]


@pytest.mark.parametrize("levels", [100_000, 65])
async def test_a_signed_body_nested_too_deep_is_400(
    make_client: ClientFactory,
    settings: Settings,
    session_factory: sessionmaker[Session],
    levels: int,
) -> None:
    before = stored_unroutable(session_factory)
    event = json.dumps(unroutable_event()).encode()
    # The nesting rides in the subscription's metadata, where a real event has its freedom.
    payload = event.replace(b'"metadata": {}', b'"metadata": ' + b"[" * levels + b"]" * levels)
    roomy = settings.model_copy(update={"webhook_max_body_bytes": 2 * len(payload)})

    async with make_client(temporal_client=RecordingTemporal(), settings=roomy) as client:
        response = await post_signed(client, payload)

    assert response.status_code == 400
    assert "nested" in response.json()["detail"]
    assert stored_unroutable(session_factory) == before


@pytest.mark.parametrize(
    ("text", "what"),
    [("a\u0000b", "NUL"), ("\ud800", "lone surrogate")],
    ids=["nul", "lone-surrogate"],
)
async def test_an_unstorable_string_in_an_unroutable_event_is_400(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session], text: str, what: str
) -> None:
    before = stored_unroutable(session_factory)
    event = unroutable_event()
    event["data"]["object"]["metadata"] = {"note": text}

    response = await post_signed(client, json.dumps(event).encode())

    assert response.status_code == 400
    assert what in response.json()["detail"]
    assert stored_unroutable(session_factory) == before


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (unroutable_event(id="evt_" + "x" * 300), "`id`"),
        (unroutable_event(type="customer." + "x" * 200), "`type`"),
        (unroutable_event(created=10**30), "`created`"),
    ],
    ids=["long-event-id", "long-event-type", "created-beyond-dates"],
)
async def test_an_event_field_beyond_its_bound_is_400_naming_it(
    client: httpx.AsyncClient, temporal: RecordingTemporal, event: dict[str, Any], field: str
) -> None:
    response = await post_signed(client, json.dumps(event).encode())

    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert temporal.calls == []


@pytest.mark.parametrize(
    "customer", ["cus_" + "x" * 300, "cus_é"], ids=["304-characters", "non-ascii"]
)
async def test_a_customer_id_stripe_would_never_send_is_400_naming_it(
    client: httpx.AsyncClient,
    temporal: RecordingTemporal,
    session_factory: sessionmaker[Session],
    customer: str,
) -> None:
    before = stored_unroutable(session_factory)
    # Routed by metadata: before, the id went to the workflow, which could not link it.
    event = unroutable_event()
    event["data"]["object"].update(customer=customer, metadata={"account_id": "acct_bounds"})

    response = await post_signed(client, json.dumps(event).encode())

    assert response.status_code == 400
    assert "`data.object.customer`" in response.json()["detail"]
    assert temporal.calls == []
    assert stored_unroutable(session_factory) == before


@pytest.mark.parametrize("number", [b"1e309", b"NaN", b"-Infinity"])
async def test_a_non_finite_number_in_a_signed_event_is_400(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session], number: bytes
) -> None:
    before = stored_unroutable(session_factory)
    event = json.dumps(unroutable_event()).encode()
    payload = event.replace(b'"metadata": {}', b'"metadata": {"amount": ' + number + b"}")

    response = await post_signed(client, payload)

    assert response.status_code == 400
    assert stored_unroutable(session_factory) == before


async def test_an_unroutable_but_valid_event_is_still_acknowledged(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    before = stored_unroutable(session_factory)

    response = await post_signed(client, json.dumps(unroutable_event()).encode())

    assert response.status_code == 200
    assert response.json() == {"status": "unroutable"}
    assert stored_unroutable(session_factory) == before + 1


# --- the other routes ----------------------------------------------------------------------

JSON_ROUTES = [
    pytest.param("/v1/accounts/acct_numbers/checkout", APP, id="checkout"),
    pytest.param("/v1/accounts/acct_numbers/plan", APP, id="plan"),
    pytest.param("/admin/accounts/acct_numbers/actions/lock", ADMIN, id="admin-action"),
]


@pytest.mark.parametrize("number", ["1e309", "NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("path", "headers"), JSON_ROUTES)
async def test_a_non_finite_number_in_a_body_is_a_422_that_encodes(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], number: str
) -> None:
    body = f'{{"plan": {number}, "seats": {number}, "actor": {number}, "reason": {number}}}'

    response = await client.post(
        path, content=body, headers={**headers, "Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize(("path", "headers"), JSON_ROUTES)
async def test_a_body_beyond_the_api_limit_is_413(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    body = json.dumps({"plan": "team", "padding": "x" * 70_000})

    response = await client.post(
        path, content=body, headers={**headers, "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["detail"]


async def test_a_streamed_body_beyond_the_api_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"plan": "team", "padding": "'
        for _ in range(10):
            yield b"x" * 8 * 1024
        yield b'"}'

    response = await client.post(
        "/v1/accounts/acct_numbers/checkout",
        content=chunked(),
        headers={**APP, "Content-Type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_a_customer_filter_stripe_would_never_send_is_422(
    client: httpx.AsyncClient,
) -> None:
    # PostgreSQL refuses NUL in a query parameter: this was a 500.
    response = await client.get(
        "/admin/unroutable-events", params={"customer_id": "cus_\x00"}, headers=ADMIN
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "customer_id"]
