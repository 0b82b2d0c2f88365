"""The local stack sets up its Stripe simulator with the production deploy steps' code."""

from __future__ import annotations

from contextlib import ExitStack

from core.config import Settings
from core.stripe_client import make_stripe_client
from domain.stripe_events import HANDLED_EVENT_TYPES
from ops.local_stack import LocalPorts, start_stripe_simulator


def test_the_simulator_gets_the_catalog_and_an_endpoint_whose_secret_the_api_is_given() -> None:
    ports = LocalPorts(api=8123, stripe_simulator=0)
    with ExitStack() as stack:
        settings = start_stripe_simulator(Settings(_env_file=None), ports, stack)
        client = make_stripe_client(settings)

        [endpoint] = client.v1.webhook_endpoints.list().data
        prices = client.v1.prices.list(params={"lookup_keys": ["team_monthly_per_seat"]}).data

    assert endpoint.url == "http://127.0.0.1:8123/webhooks/stripe"
    assert sorted(endpoint.enabled_events) == sorted(HANDLED_EVENT_TYPES)
    assert settings.stripe_webhook_secret.startswith("whsec_")
    assert settings.stripe_webhook_secret != Settings(_env_file=None).stripe_webhook_secret
    assert [price.active for price in prices] == [True]
