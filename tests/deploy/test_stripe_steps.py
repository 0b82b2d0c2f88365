"""The deploy steps that set up Stripe (README, "Deploying" 3 and 4), run as the CLI runs them,
against the Stripe simulator: `catalog apply` publishes the catalog once, and
`webhook-endpoint ensure --url …` creates the endpoint once (printing the secret Stripe shows
only then), finds it afterwards, and sets an existing one right."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

import cli
from core.config import Settings, get_settings
from domain.stripe_events import HANDLED_EVENT_TYPES
from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import Receiver, receiver  # noqa: F401 (the fixture)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    """The simulator, and the settings (read from the environment, as the CLI does) aimed at it."""
    with SimulatorServer() as server:
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.setenv("STRIPE_SIMULATOR_URL", server.url)
        get_settings.cache_clear()
        yield server
        get_settings.cache_clear()


@pytest.fixture
def stripe_client(sim: SimulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_deploy", base_addresses={"api": sim.url})


def run(*argv: str) -> None:
    """A command as the CLI runs it once the settings are read."""
    args = cli.build_parser().parse_args(argv)
    args.handler(args)


def ensure(url: str) -> None:
    run("webhook-endpoint", "ensure", "--url", url)


def test_catalog_apply_publishes_the_catalog_and_a_second_run_has_nothing_to_do(
    stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    run("catalog", "apply")
    assert "applied" in capsys.readouterr().out

    run("catalog", "apply")

    assert capsys.readouterr().out == "Stripe matches the catalog: nothing to do.\n"
    prices = stripe_client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data
    assert [price.active for price in prices] == [True]


def test_the_first_run_creates_the_endpoint_and_prints_the_secret_that_signs_its_deliveries(
    sim: SimulatorServer,
    stripe_client: stripe.StripeClient,
    receiver: Receiver,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    ensure(receiver.url)

    out, err = capsys.readouterr()
    name, _, secret = out.strip().partition("=")
    assert name == "STRIPE_WEBHOOK_SECRET" and secret.startswith("whsec_")
    assert "STRIPE_WEBHOOK_SECRET" in err
    [endpoint] = stripe_client.v1.webhook_endpoints.list().data
    assert endpoint.url == receiver.url
    assert sorted(endpoint.enabled_events) == sorted(HANDLED_EVENT_TYPES)
    assert endpoint.api_version == stripe.api_version

    # An event the gateway handles arrives signed with that secret; one it does not, never.
    customer = stripe_client.v1.customers.create()
    stripe_client.v1.customers.delete(customer.id)
    sim.wait_idle()
    [delivery] = receiver.deliveries
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["Stripe-Signature"], secret
    )
    assert event.type == "customer.deleted"


def test_a_second_run_finds_the_endpoint_and_says_where_the_secret_is(
    stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://billing.example.com/webhooks/stripe"
    ensure(url)
    capsys.readouterr()

    ensure(url)

    out, err = capsys.readouterr()
    assert out == ""
    assert "exists (up to date)" in err and "Dashboard" in err and "roll" in err
    assert len(stripe_client.v1.webhook_endpoints.list().data) == 1


def test_an_existing_endpoint_is_subscribed_to_our_events_and_enabled_keeping_its_secret(
    stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://billing.example.com/webhooks/stripe"
    made_by_hand = stripe_client.v1.webhook_endpoints.create(
        params={"url": url, "enabled_events": ["*"]}
    )
    stripe_client.v1.webhook_endpoints.update(made_by_hand.id, params={"disabled": True})

    ensure(url)

    out, err = capsys.readouterr()
    assert out == ""
    assert "updated" in err and "enabled again" in err
    [endpoint] = stripe_client.v1.webhook_endpoints.list().data
    assert endpoint.id == made_by_hand.id and endpoint.status == "enabled"
    assert sorted(endpoint.enabled_events) == sorted(HANDLED_EVENT_TYPES)


def test_an_endpoint_on_another_api_version_is_reported_as_needing_replacement(
    sim: SimulatorServer, stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://billing.example.com/webhooks/stripe"
    endpoint = stripe_client.v1.webhook_endpoints.create(
        params={"url": url, "enabled_events": sorted(HANDLED_EVENT_TYPES)}
    )
    # An endpoint made earlier on another version: the simulator renders only the pinned one,
    # so it refuses to create such an endpoint; the test puts one in its state instead.
    with sim.store.lock:
        sim.store.objects[endpoint.id]["api_version"] = "2025-03-31.basil"

    ensure(url)

    err = capsys.readouterr().err
    assert "exists (up to date)" in err
    assert "warning: it renders events as API version 2025-03-31.basil" in err
    assert "delete it and run this again" in err


def test_several_endpoints_for_the_url_are_refused_naming_them(
    stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://billing.example.com/webhooks/stripe"
    made = [
        stripe_client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]})
        for _ in range(2)
    ]

    with pytest.raises(SystemExit) as exited:
        ensure(url)

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert all(endpoint.id in err for endpoint in made)
    assert len(stripe_client.v1.webhook_endpoints.list().data) == 2
