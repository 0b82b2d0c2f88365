"""The handler a user would write instead of our durable design: the bench's peer.

    uvicorn --factory bench.peer:create_app

One synchronous endpoint in the style of dj-stripe's webhook view: verify the signature, take
the account from the event, re-fetch the customer's subscriptions from Stripe, map them with
our own pure rules and write the entitlement row, all inside the request (a plain `def`
route, which FastAPI runs in its threadpool as Django runs a view). The read, the rules and
the write are ours, so what the benchmark compares is what durability costs: no Temporal, no
retries beyond the Stripe client's own, no grace timers, no emails. A failure answers 5xx
and leaves the rest to Stripe's redelivery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import stripe
from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings, get_settings
from core.stripe_client import make_stripe_client
from db import feed, repository
from db.engine import make_engine, make_session_factory
from db.repository import LIFECYCLE_JSON
from domain.catalog import Catalog, default_catalog
from domain.entitlements import entitlements_for
from domain.lifecycle import Lifecycle, state_for_subscription
from domain.stripe_events import metadata_account_id
from domain.subscriptions import (
    deciding_subscription,
    products_to_expand,
    snapshot_from_stripe,
    with_products,
)


@dataclass
class Peer:
    """What the endpoint needs, built once per process."""

    settings: Settings
    stripe: stripe.StripeClient
    sessions: sessionmaker[Session]
    catalog: Catalog


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The worker's engine settings: the same database work, the same pool.
        engine = make_engine(settings.database_url)
        app.state.peer = Peer(
            settings=settings,
            stripe=make_stripe_client(settings),
            sessions=make_session_factory(engine),
            catalog=default_catalog(),
        )
        yield
        engine.dispose()

    app = FastAPI(title="Dataface Billing bench peer", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/stripe")
    def receive_stripe_event(
        request: Request,
        payload: Annotated[bytes, Depends(raw_body)],
        stripe_signature: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        return handle_event(request.app.state.peer, payload, stripe_signature)

    return app


async def raw_body(request: Request) -> bytes:
    """The exact bytes Stripe signed (a plain `def` route cannot await them itself)."""
    return await request.body()


def handle_event(peer: Peer, payload: bytes, signature: str | None) -> dict[str, Any]:
    try:
        event = stripe.Webhook.construct_event(
            payload,
            signature,
            peer.settings.stripe_webhook_secret,
            tolerance=peer.settings.webhook_tolerance_seconds,
        )
    except (ValueError, stripe.SignatureVerificationError) as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid webhook: {err}") from err
    obj: dict[str, Any] = event.to_dict()["data"]["object"]
    account_id, customer_id = metadata_account_id(obj), obj.get("customer")
    if account_id is None or not isinstance(customer_id, str):
        return {"status": "ignored"}
    subscriptions = customer_subscriptions(peer.stripe, customer_id, peer.catalog)
    deciding = deciding_subscription(subscriptions, peer.catalog).deciding
    snapshot = None if deciding is None else snapshot_from_stripe(deciding, peer.catalog)
    lifecycle = Lifecycle(state=state_for_subscription(snapshot), subscription=snapshot)
    entitlements = entitlements_for(lifecycle, peer.catalog)
    with peer.sessions.begin() as session:
        # Taken before the version is read, as the write would take it anyway: two deliveries
        # for one account in the threadpool at once would otherwise both read version n, and
        # the second write of n + 1 would be dropped.
        feed.lock_change_log(session)
        stored = repository.stored_account(session, account_id)
        version = (stored.version if stored is not None else 0) + 1
        repository.link_customer(session, account_id, customer_id)
        repository.write_entitlements(
            session,
            account_id,
            version,
            entitlements,
            LIFECYCLE_JSON.dump_python(lifecycle, mode="json"),
            f"peer:{event.type}",
            [],
        )
    return {"status": "written", "account_id": account_id, "version": version}


def customer_subscriptions(
    client: stripe.StripeClient, customer_id: str, catalog: Catalog
) -> list[dict[str, Any]]:
    """Every subscription of the customer as plain JSON: the account workflow's read
    (`activities/stripe_sync.py`), blocking instead of on an event loop."""
    params: dict[str, Any] = {
        "customer": customer_id,
        "status": "all",
        "limit": 100,
        "expand": ["data.latest_invoice"],
    }
    subscriptions: list[dict[str, Any]] = []
    while True:
        page: dict[str, Any] = client.raw_request("get", "/v1/subscriptions", **params).data
        subscriptions.extend(page["data"])
        if not page["has_more"] or not page["data"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    product_ids = sorted(products_to_expand(subscriptions, catalog))
    if not product_ids:
        return subscriptions
    products: dict[str, dict[str, Any]] = {}
    for start in range(0, len(product_ids), 100):
        response = client.raw_request(
            "get", "/v1/products", ids=product_ids[start : start + 100], limit=100
        )
        products.update((p["id"], p) for p in response.data["data"])
    return with_products(subscriptions, products)
