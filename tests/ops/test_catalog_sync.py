"""Publishing catalog.toml to Stripe (the simulator): plan, apply, and apply again."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import stripe

from domain.catalog import Catalog, parse_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer


@pytest.fixture
def client() -> Iterator[stripe.StripeClient]:
    with SimulatorServer() as sim:
        yield stripe.StripeClient("sk_test_catalog", base_addresses={"api": sim.url})


def catalog_data() -> dict[str, Any]:
    text = resources.files("domain").joinpath("catalog.toml").read_text()
    return tomllib.loads(text)


def sync(client: stripe.StripeClient, catalog: Catalog) -> list[str]:
    changes = plan_catalog_changes(client, catalog)
    apply_catalog_changes(client, catalog, changes)
    return [f"{c.action} {c.target}" for c in changes]


def active_price(client: stripe.StripeClient, lookup_key: str) -> Any:
    [price] = client.v1.prices.list(params={"lookup_keys": [lookup_key], "active": True}).data
    return price


def test_first_apply_creates_products_and_prices_and_the_second_is_a_no_op(
    client: stripe.StripeClient,
) -> None:
    catalog = parse_catalog(catalog_data())

    applied = sync(client, catalog)

    assert sorted(applied) == [
        "create_price pro_annual",
        "create_price pro_monthly",
        "create_price team_annual_per_seat",
        "create_price team_monthly_per_seat",
        "create_product pro",
        "create_product team",
    ]
    price = active_price(client, "team_monthly_per_seat")
    assert (price.unit_amount, price.recurring.interval, price.currency) == (1500, "month", "usd")
    assert plan_catalog_changes(client, catalog) == []


def test_a_new_amount_becomes_a_new_price_that_takes_the_lookup_key(
    client: stripe.StripeClient,
) -> None:
    sync(client, parse_catalog(catalog_data()))
    old = active_price(client, "pro_monthly")
    data = copy.deepcopy(catalog_data())
    data["plans"]["pro"]["prices"]["month"]["unit_amount"] = 3900

    assert sync(client, parse_catalog(data)) == ["replace_price pro_monthly"]

    new = active_price(client, "pro_monthly")
    assert (new.id != old.id, new.unit_amount) == (True, 3900)
    assert client.v1.prices.retrieve(old.id).active is False  # archived, never deleted
    assert plan_catalog_changes(client, parse_catalog(data)) == []


def test_a_price_dropped_from_the_catalog_is_archived(client: stripe.StripeClient) -> None:
    sync(client, parse_catalog(catalog_data()))
    data = copy.deepcopy(catalog_data())
    del data["plans"]["pro"]["prices"]["year"]
    annual = active_price(client, "pro_annual")

    assert sync(client, parse_catalog(data)) == ["archive_price pro_annual"]
    assert client.v1.prices.retrieve(annual.id).active is False


def test_prices_not_managed_by_the_service_are_left_alone(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Consulting"})
    client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 50000,
            "lookup_key": "consulting_day",
        }
    )
    changes = plan_catalog_changes(client, parse_catalog(catalog_data()))
    assert all(change.target != "consulting_day" for change in changes)
