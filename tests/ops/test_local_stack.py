"""The local stack sets up its Stripe simulator with the production deploy steps' code."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.config import Settings
from core.stripe_client import make_stripe_client
from domain.stripe_events import HANDLED_EVENT_TYPES
from ops.local_stack import (
    LocalPorts,
    prepare_data_dir,
    start_stripe_simulator,
    startup_summary,
    stripe_state_file,
)
from tests.signing import stripe_signature
from tests.stripe_sim.conftest import Receiver, receiver  # noqa: F401 (the fixture)


def test_the_simulator_gets_the_catalog_and_an_endpoint_signing_with_the_configured_secret(
    receiver: Receiver,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    # The receiver stands where the API listens.
    api_port = urlsplit(receiver.url).port
    assert api_port is not None
    ports = LocalPorts(api=api_port, stripe_simulator=0)
    configured = Settings(_env_file=None)
    with ExitStack() as stack:
        settings = start_stripe_simulator(configured, ports, tmp_path, stack)
        client = make_stripe_client(settings)

        [endpoint] = client.v1.webhook_endpoints.list().data
        prices = client.v1.prices.list(params={"lookup_keys": ["team_monthly_per_seat"]}).data
        customer = client.v1.customers.create(params={"email": "local@example.com"})
        client.v1.customers.delete(customer.id)  # an event the endpoint is subscribed to
        idle = httpx.get(f"{settings.stripe_simulator_url}/_sim/idle", params={"timeout": 10})
        assert idle.json() == {"idle": True}

    [delivery] = receiver.deliveries
    assert delivery.event["type"] == "customer.deleted"
    # Signed as the README's hand-signed example signs: with the documented default secret.
    timestamp = int(delivery.headers["Stripe-Signature"].split(",")[0].removeprefix("t="))
    expected = stripe_signature(delivery.body, "whsec_local_development", timestamp)
    assert delivery.headers["Stripe-Signature"] == expected
    assert endpoint.url == f"http://127.0.0.1:{api_port}/webhooks/stripe"
    assert sorted(endpoint.enabled_events) == sorted(HANDLED_EVENT_TYPES)
    assert settings.stripe_webhook_secret == configured.stripe_webhook_secret
    assert [price.active for price in prices] == [True]


def test_a_restart_keeps_stripe_s_customers_without_duplicating_the_setup(tmp_path: Path) -> None:
    ports = LocalPorts(api=8123, stripe_simulator=0)
    with ExitStack() as stack:
        client = make_stripe_client(
            start_stripe_simulator(Settings(_env_file=None), ports, tmp_path, stack)
        )
        customer = client.v1.customers.create(params={"email": "kept@example.com"})

    with ExitStack() as stack:
        client = make_stripe_client(
            start_stripe_simulator(Settings(_env_file=None), ports, tmp_path, stack)
        )
        assert client.v1.customers.retrieve(customer.id).email == "kept@example.com"
        assert len(client.v1.webhook_endpoints.list().data) == 1
        prices = client.v1.prices.list(params={"lookup_keys": ["team_monthly_per_seat"]}).data
        assert len(prices) == 1

    prepare_data_dir(tmp_path, reset_stripe=True)  # ./scripts/run --reset-stripe
    assert not stripe_state_file(tmp_path).exists()
    with ExitStack() as stack:
        client = make_stripe_client(
            start_stripe_simulator(Settings(_env_file=None), ports, tmp_path, stack)
        )
        assert client.v1.customers.list().data == []


def test_the_start_up_block_names_every_address_credential_and_the_next_step() -> None:
    settings = Settings(_env_file=None, app_api_token="app-tok", admin_api_token="admin-tok")
    ports = LocalPorts(api=8001, temporal_ui=8234, stripe_simulator=12112)
    simulated = settings.model_copy(update={"stripe_simulator_url": "http://127.0.0.1:12112"})

    block = startup_summary(simulated, ports, Path(".data"))

    assert block.splitlines() == [
        "",
        "Dataface Billing is up.",
        "  API              http://127.0.0.1:8001  (OpenAPI docs: http://127.0.0.1:8001/docs)",
        "  support console  http://127.0.0.1:8001/console  (sign in with the admin token and a "
        "name)",
        "  Temporal Web UI  http://127.0.0.1:8234",
        "  Stripe           http://127.0.0.1:12112  (simulator; any sk_test_ key, state in "
        ".data/stripe_sim.pickle)",
        "  app token        app-tok  (APP_API_TOKEN)",
        "  admin token      admin-tok  (ADMIN_API_TOKEN)",
        "  webhook secret   whsec_local_development  (STRIPE_WEBHOOK_SECRET)",
        "  emails           .data/mail/*.eml",
        "Try it: docs/walkthrough.md, or",
        "  curl -s -H 'Authorization: Bearer app-tok' "
        "http://127.0.0.1:8001/v1/accounts/acct_demo/entitlements",
    ]


def test_against_real_stripe_the_block_names_no_simulator() -> None:
    settings = Settings(_env_file=None, stripe_secret_key="sk_test_real")
    block = startup_summary(settings, LocalPorts(), Path(".data"))
    assert "  Stripe           real Stripe (STRIPE_SECRET_KEY)" in block.splitlines()
    assert "12111" not in block
