from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from domain.catalog import CatalogError, default_catalog, parse_catalog


def raw_catalog() -> dict:
    return tomllib.loads(resources.files("domain").joinpath("catalog.toml").read_text())


def test_default_catalog_has_the_four_plans() -> None:
    catalog = default_catalog()
    assert list(catalog.plans) == ["free", "pro", "team", "enterprise"]
    assert not catalog.plan("free").self_serve
    assert not catalog.plan("enterprise").self_serve
    assert catalog.plan("team").per_seat
    assert catalog.plan("team").min_seats == 2


@pytest.mark.parametrize("plan", ["pro", "team"])
@pytest.mark.parametrize("interval", ["month", "year"])
def test_every_self_serve_price_is_found_by_its_lookup_key(plan: str, interval: str) -> None:
    catalog = default_catalog()
    price = catalog.price(plan, interval)
    assert catalog.price_by_lookup_key(price.lookup_key) == price


def test_grace_days_per_interval() -> None:
    catalog = default_catalog()
    assert (catalog.grace_days_for("month"), catalog.grace_days_for("year")) == (7, 14)
    assert catalog.grace_days_for(None) == 7


def test_lookups_of_unknown_plans_and_prices_are_refused() -> None:
    catalog = default_catalog()
    with pytest.raises(CatalogError, match="unknown plan"):
        catalog.plan("platinum")
    with pytest.raises(CatalogError, match="no 'month' price"):
        catalog.price("enterprise", "month")
    assert catalog.price_by_lookup_key("nope") is None


def test_duplicate_lookup_keys_are_refused() -> None:
    data = raw_catalog()
    data["plans"]["team"]["prices"]["month"]["lookup_key"] = "pro_monthly"
    with pytest.raises(CatalogError, match="unique"):
        parse_catalog(data)


def test_a_catalog_without_the_free_plan_is_refused() -> None:
    data = raw_catalog()
    del data["plans"]["free"]
    with pytest.raises(CatalogError, match="free plan"):
        parse_catalog(data)


def test_unknown_intervals_are_refused() -> None:
    data = raw_catalog()
    data["plans"]["pro"]["prices"]["week"] = {"lookup_key": "pro_weekly", "unit_amount": 700}
    with pytest.raises(CatalogError, match="unknown intervals"):
        parse_catalog(data)
