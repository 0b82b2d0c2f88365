"""The in-process server's helpers, the control endpoints and ``python -m stripe_sim``."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import stripe

from stripe_sim.server import SimulatorServer
from tests.signing import stripe_signature
from tests.stripe_sim.conftest import Receiver

ROOT = Path(__file__).resolve().parents[2]


def test_objects_on_real_time_are_processed(
    sim: SimulatorServer, client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    sim.settings.incomplete_expiry_seconds = 0
    cust = client.v1.customers.create(
        params={
            "payment_method": "pm_card_authenticationRequired",
            "invoice_settings": {"default_payment_method": "pm_card_authenticationRequired"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": catalog["pro"].id}]}
    )
    assert sub.status == "incomplete"
    sim.tick()
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"


def test_control_endpoints(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    assert httpx.get(f"{sim.url}/_sim/health").json() == {"ok": True}
    changed = httpx.post(
        f"{sim.url}/_sim/settings",
        json={"faults": {"duplicate_rate": 1.0}, "retry_schedule_days": [1, 2]},
    )
    assert changed.json()["faults"]["duplicate_rate"] == 1.0
    assert sim.settings.retry_schedule_days == (1, 2)
    client.v1.customers.create(params={"email": "a@example.com"})
    assert httpx.get(f"{sim.url}/_sim/idle", params={"timeout": 5}).json() == {"idle": True}
    assert len(receiver.deliveries) == 2
    assert httpx.post(f"{sim.url}/_sim/settings", json={"nope": 1}).status_code == 400


def test_a_control_sets_the_secret_an_endpoint_signs_with(
    sim: SimulatorServer, client: stripe.StripeClient, receiver: Receiver, endpoint: Any
) -> None:
    control = f"{sim.url}/_sim/webhook_endpoints/{endpoint.id}/secret"
    assert httpx.post(control, json={"secret": "whsec_chosen"}).status_code == 200

    client.v1.customers.create(params={"email": "a@example.com"})
    sim.wait_idle()

    [delivery] = receiver.deliveries
    timestamp = delivery.headers["Stripe-Signature"].split(",")[0].removeprefix("t=")
    assert delivery.headers["Stripe-Signature"] == stripe_signature(
        delivery.body, "whsec_chosen", int(timestamp)
    )
    unknown = f"{sim.url}/_sim/webhook_endpoints/we_nobody/secret"
    assert httpx.post(unknown, json={"secret": "whsec_x"}).status_code == 404
    assert httpx.post(control, json={"secret": ""}).status_code == 400


def test_public_url_for_hosted_pages(client: stripe.StripeClient) -> None:
    with SimulatorServer(public_url="https://stripe-sim.example/") as sim:
        other = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": sim.url}, max_network_retries=0
        )
        cust = other.v1.customers.create()
        session = other.v1.billing_portal.sessions.create(params={"customer": cust.id})
        assert session.url.startswith("https://stripe-sim.example/portal/bps_")


def test_module_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stripe_sim", "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server logs its URL once it is ready
            if "ready at" in line:
                assert f"http://127.0.0.1:{port}" in line
                break
        else:
            raise AssertionError("the simulator exited without becoming ready")
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": f"http://127.0.0.1:{port}"}, max_network_retries=0
        )
        assert client.v1.accounts.retrieve_current().object == "account"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
