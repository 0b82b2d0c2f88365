"""Signed webhook delivery, retries, fault injection and the Events API."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import DAY, JAN_1, Receiver, advance, events, make_customer


def subscribe(client: stripe.StripeClient, cust: Any, price: Any) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}]}
    )


def test_deliveries_are_signed_like_stripe(
    sim: SimulatorServer,
    client: stripe.StripeClient,
    receiver: Receiver,
    endpoint: Any,
    clock: Any,
    catalog: dict[str, Any],
) -> None:
    assert endpoint.secret.startswith("whsec_")
    subscribe(client, make_customer(client, clock), catalog["pro"])
    sim.wait_idle()
    assert receiver.deliveries
    for delivery in receiver.deliveries:
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], endpoint.secret
        )
        assert event.object == "event" and event.livemode is False
        assert event.api_version == "2026-10-28.endive"
        assert event.id.startswith("evt_")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            receiver.deliveries[0].body,
            receiver.deliveries[0].headers["Stripe-Signature"],
            "whsec_wrong",
        )
    # Every listed event was delivered exactly once, in the order it happened.
    delivered = [d.event["id"] for d in receiver.deliveries]
    assert sorted(delivered) == sorted(e.id for e in events(client))
    assert [t for t in receiver.types() if not t.startswith("payment_intent.")][-7:] == [
        "customer.created",
        "payment_method.attached",
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    assert all(e.pending_webhooks == 0 for e in events(client))


def test_enabled_events_filter(
    sim: SimulatorServer,
    client: stripe.StripeClient,
    receiver: Receiver,
    clock: Any,
    catalog: dict[str, Any],
) -> None:
    client.v1.webhook_endpoints.create(
        params={
            "url": receiver.url,
            "enabled_events": ["invoice.paid", "customer.subscription.created"],
        }
    )
    subscribe(client, make_customer(client, clock), catalog["pro"])
    sim.wait_idle()
    assert receiver.types() == ["customer.subscription.created", "invoice.paid"]


def test_failed_deliveries_are_retried(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    receiver.statuses = [500, 503]
    client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()
    assert receiver.types() == ["customer.created"]
    attempts = [r.status for r in sim.deliveries]
    assert attempts == [500, 503, 200]
    assert events(client)[0].pending_webhooks == 0


def test_retries_are_bounded(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    receiver.statuses = [500] * 10
    client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()
    assert len(sim.deliveries) == sim.settings.webhook_max_attempts
    assert receiver.deliveries == []


def test_unreachable_endpoint_does_not_block(
    sim: SimulatorServer, client: stripe.StripeClient
) -> None:
    client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/nothing", "enabled_events": ["*"]}
    )
    client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()
    assert all(r.status is None for r in sim.deliveries)


def test_duplicates(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    sim.settings.faults.duplicate_rate = 1.0
    client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()
    ids = [d.event["id"] for d in receiver.deliveries]
    assert len(ids) == 2 and len(set(ids)) == 1


def test_drops_stay_listable(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    sim.settings.faults.drop_rate = 1.0
    cust = client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()
    assert receiver.deliveries == []
    listed = client.v1.events.list(params={"type": "customer.created"}).data
    assert listed[0].data.object.id == cust.id


def test_reordering_within_a_window(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    sim.settings.faults.reorder_window = 6
    sim.reseed_faults()
    created = [client.v1.customers.create(params={"name": str(i)}).id for i in range(6)]
    sim.wait_idle()
    delivered = [d.event["data"]["object"]["id"] for d in receiver.deliveries]
    assert sorted(delivered) == sorted(created)
    assert delivered != created


def test_delay(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    sim.settings.faults.delay_seconds = 0.5
    client.v1.customers.create(params={"email": "a@example.com"})
    assert receiver.deliveries == []
    sim.wait_idle()
    assert receiver.types() == ["customer.created"]


def test_events_api_filters(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    advance(client, clock, JAN_1 + 32 * DAY)
    paid = client.v1.events.list(params={"type": "invoice.paid"}).data
    assert len(paid) == 2
    assert paid[0].created > paid[1].created  # newest first
    some = client.v1.events.list(params={"types": ["invoice.paid", "invoice.created"]}).data
    assert {e.type for e in some} == {"invoice.paid", "invoice.created"}
    wildcard = client.v1.events.list(params={"type": "customer.subscription.*"}).data
    assert {e.type for e in wildcard} == {
        "customer.subscription.created",
        "customer.subscription.updated",
    }
    later = client.v1.events.list(params={"created": {"gt": JAN_1}, "type": "invoice.*"}).data
    assert later and all(e.created > JAN_1 for e in later)
    first = client.v1.events.retrieve(paid[-1].id)
    assert first.data.object.parent.subscription_details.subscription == sub.id
    updated = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert "previous_attributes" in updated.data


def test_webhook_endpoint_crud(client: stripe.StripeClient, receiver: Receiver) -> None:
    created = client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["invoice.paid"]}
    )
    assert created.id.startswith("we_") and created.status == "enabled"
    fetched = client.v1.webhook_endpoints.retrieve(created.id)
    assert fetched.url == receiver.url and "secret" not in fetched
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [created.id]
    assert client.v1.webhook_endpoints.delete(created.id).deleted is True
    assert client.v1.webhook_endpoints.list().data == []
