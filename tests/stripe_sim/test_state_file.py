"""A simulator given a state file keeps Stripe's state across restarts, kill -9 included."""

from __future__ import annotations

from pathlib import Path

import pytest
import stripe

from stripe_sim import store as store_module
from stripe_sim.server import SimulatorServer


def stripe_client(sim: SimulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_simulator", base_addresses={"api": sim.url}, max_network_retries=0
    )


def subscribe(client: stripe.StripeClient, price_id: str) -> tuple[str, str]:
    customer = client.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price_id}]}
    )
    return customer.id, subscription.id


def test_customers_subscriptions_and_counters_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "stripe_sim.pickle"
    with SimulatorServer(state_path=state) as first:
        client = stripe_client(first)
        product = client.v1.products.create(params={"name": "Pro"})
        price = client.v1.prices.create(
            params={
                "product": product.id,
                "unit_amount": 2000,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        )
        old_customer, old_subscription = subscribe(client, price.id)
        old_invoice = client.v1.invoices.list(params={"customer": old_customer}).data[0]
        coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})

    with SimulatorServer(state_path=state) as second:
        client = stripe_client(second)
        assert client.v1.subscriptions.retrieve(old_subscription).status == "active"
        assert client.v1.customers.retrieve(old_customer).id == old_customer
        assert client.v1.coupons.retrieve(coupon.id).percent_off == 10
        new_customer, new_subscription = subscribe(client, price.id)
        new_invoice = client.v1.invoices.list(params={"customer": new_customer}).data[0]

        # Newest first, as before the restart: the insertion counter went on counting.
        listed = [c.id for c in client.v1.customers.list().data]
        subscriptions = [s.id for s in client.v1.subscriptions.list().data]
    assert listed == [new_customer, old_customer]
    assert subscriptions == [new_subscription, old_subscription]
    assert old_invoice.status == new_invoice.status == "paid"
    assert new_invoice.id != old_invoice.id


def test_a_write_is_on_disk_before_its_answer_so_a_killed_simulator_loses_nothing(
    tmp_path: Path,
) -> None:
    state = tmp_path / "stripe_sim.pickle"
    with SimulatorServer(state_path=state) as running:
        customer = stripe_client(running).v1.customers.create(params={"email": "a@example.com"})
        # Read back while the first is still running: nothing was saved on a stop.
        with SimulatorServer(state_path=state) as restarted:
            found = stripe_client(restarted).v1.customers.retrieve(customer.id)
    assert found.email == "a@example.com"


def test_a_state_file_saved_by_code_that_indexed_less_is_indexed_on_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "stripe_sim.pickle"
    with SimulatorServer(state_path=state) as before:
        customer = stripe_client(before).v1.customers.create(params={"email": "a@example.com"})

    # Newer code indexes customers by email: the restored store must answer that lookup.
    monkeypatch.setitem(store_module._INDEXED_FIELDS, "customer", ("email",))
    with SimulatorServer(state_path=state) as after, after.store.lock:
        found = after.store.where("customer", "email", "a@example.com")
    assert [obj["id"] for obj in found] == [customer.id]
