"""The client against the real API on a loopback port: a webhook's plan change reaching the
cache, resuming across a disconnect, and the service going away and coming back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from entitlements_client import EntitlementsClient, EntitlementsUnavailable
from tests.conftest import wait_for
from tests.entitlements_client.conftest import FakeClock, RecordingTransport
from tests.feed_changes import new_account, newest_cursor, write_change
from tests.live_api import LiveApi
from tests.signing import stripe_signature
from tests.workflows.harness import Harness, running_harness, subscription

pytestmark = pytest.mark.db

APP_TOKEN = "client-app-token"
WEBHOOK_SECRET = "whsec_client_tests"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        app_api_token=APP_TOKEN,
        stripe_webhook_secret=WEBHOOK_SECRET,
    )


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveApi]:
    live = LiveApi(settings)
    live.start()
    yield live
    live.stop()


def following(
    url: str, pages: list[dict[str, Any]], reads: list[str] | None = None, **options: Any
) -> EntitlementsClient:
    """A started client whose feed answers are recorded in `pages`, its API reads in `reads`."""
    options = {"wait_seconds": 1, "backoff_seconds": (0.05, 0.2), **options}
    reads = [] if reads is None else reads
    return EntitlementsClient(
        url, APP_TOKEN, make_transport=lambda: RecordingTransport(pages, reads), **options
    ).start()


async def feed_connected(client: EntitlementsClient) -> None:
    await wait_for(lambda: client.connected and client.cursor is not None, what="feed connected")


@pytest.fixture
async def harness(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> AsyncIterator[Harness]:
    async with running_harness(workflow_env, session_factory) as h:
        yield h


async def test_a_plan_change_from_a_webhook_reaches_the_cache_through_the_feed(
    harness: Harness, settings: Settings
) -> None:
    live = LiveApi(
        settings.model_copy(update={"task_queue": harness.task_queue}),
        temporal_target=harness.client.service_client.config.target_host,
    )
    pages: list[dict[str, Any]] = []
    reads: list[str] = []
    account, customer = harness.new_account()
    harness.accounts.add(account)
    with live:
        # A long wait: the change must come back on the poll that is waiting for it.
        client = following(live.url, pages, reads, wait_seconds=25)
        try:
            await feed_connected(client)
            assert client.get(account).plan == "free"

            harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="pro")
            event = {
                "id": f"evt_{account}",
                "object": "event",
                "type": "customer.subscription.created",
                "created": 1_764_000_000,
                "data": {
                    "object": {
                        "id": f"sub_{customer}",
                        "object": "subscription",
                        "customer": customer,
                        "metadata": {"account_id": account},
                    }
                },
            }
            payload = json.dumps(event).encode()
            async with httpx.AsyncClient(base_url=live.url) as stripe_side:
                response = await stripe_side.post(
                    "/webhooks/stripe",
                    content=payload,
                    headers={"Stripe-Signature": stripe_signature(payload, WEBHOOK_SECRET)},
                )
            assert response.status_code == 200
            polls_before = len(pages)

            await wait_for(
                lambda: client.get(account).plan == "pro", within=20, what="pro in the cache"
            )
        finally:
            client.close()

    # Feed answers since the webhook: the waiting poll (perhaps one more, if the change
    # landed between two); the entitlement API was read once, on the first miss.
    assert len(pages) - polls_before <= 2
    assert reads == [f"/v1/accounts/{account}/entitlements"]
    assert any(c["account_id"] == account for p in pages[polls_before:] for c in p["changes"])


async def test_a_client_disconnected_across_100_changes_resumes_with_none_missed_or_repeated(
    live_api: LiveApi, session_factory: sessionmaker[Session]
) -> None:
    accounts = [new_account() for _ in range(10)]
    pages: list[dict[str, Any]] = []
    client = following(live_api.url, pages, page_size=7)
    try:
        await feed_connected(client)
        for account in accounts:
            assert client.get(account).version == 0
        for version in (1, 2, 3):
            for account in accounts:
                write_change(session_factory, account, version)
        await wait_for(
            lambda: client.cursor == newest_cursor(session_factory), what="30 changes followed"
        )

        live_api.stop()
        await wait_for(lambda: not client.connected, what="the client to notice")
        for version in range(4, 11):
            for account in accounts:
                write_change(session_factory, account, version)
        live_api.start()
        await wait_for(
            lambda: client.cursor == newest_cursor(session_factory), what="100 changes followed"
        )
        assert all(client.get(account).version == 10 for account in accounts)
    finally:
        client.close()

    received = [c for page in pages for c in page["changes"]]
    cursors = [c["cursor"] for c in received]
    assert cursors == sorted(set(cursors)), "changes repeated or out of order"
    ours = [(c["account_id"], c["version"]) for c in received if c["account_id"] in accounts]
    assert len(ours) == 100
    assert set(ours) == {(a, v) for a in accounts for v in range(1, 11)}


async def test_with_the_service_down_the_client_serves_cached_state_and_says_how_old(
    live_api: LiveApi, session_factory: sessionmaker[Session]
) -> None:
    clock = FakeClock()
    account = new_account()
    client = following(live_api.url, [], clock=clock, stale_after_seconds=60)
    try:
        await feed_connected(client)
        client.get(account)
        write_change(session_factory, account, 1, plan="team")
        await wait_for(lambda: client.get(account).plan == "team", what="team in the cache")

        live_api.stop()
        await wait_for(lambda: not client.connected, what="the client to notice")
        clock.advance(300)
        down = client.get(account)
        with pytest.raises(EntitlementsUnavailable):
            client.get(new_account())

        live_api.start()
        await wait_for(lambda: client.connected, what="the client to reconnect")
        back = client.get(account)
    finally:
        client.close()

    assert (down.plan, down.version, down.stale) == ("team", 1, True)
    assert down.age_seconds >= 300
    assert (back.plan, back.stale, back.age_seconds) == ("team", False, 0)
