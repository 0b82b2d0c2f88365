"""Idempotency as Stripe's: the first result of a POST with an ``Idempotency-Key`` is saved
once the endpoint started executing and replayed, errors included; the same key with other
parameters, or on another endpoint, is an ``idempotency_error``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import events, make_customer


def test_a_success_is_replayed_with_stripes_headers(sim: SimulatorServer) -> None:
    def create() -> httpx.Response:
        return httpx.post(
            f"{sim.url}/v1/customers",
            auth=("sk_test_x", ""),
            data={"email": "x@example.com"},
            headers={"Idempotency-Key": "key-1"},
        )

    first, again = create(), create()
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["Idempotency-Key"] == "key-1"
    assert first.headers["Original-Request"] == first.headers["Request-Id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Original-Request"] == first.headers["Request-Id"]
    assert again.headers["Request-Id"] != first.headers["Request-Id"]


def test_a_card_decline_is_replayed_not_charged_again(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": catalog["pro"].id}]}
    )
    invoice_id = sub.latest_invoice
    assert isinstance(invoice_id, str)
    failures = len(events(client, "invoice.payment_failed"))

    def pay() -> Any:
        with pytest.raises(stripe.CardError) as info:
            client.v1.invoices.pay(invoice_id, options={"idempotency_key": "pay-1"})
        return info.value

    first = pay()
    attempts = client.v1.invoices.retrieve(invoice_id).attempt_count
    assert len(events(client, "invoice.payment_failed")) == failures + 1
    # A good card now: the retry with the same key still answers the first result.
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    good = client.v1.customers.payment_methods.list(cust.id).data[0]
    client.v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": good.id}}
    )
    again = pay()
    assert again.http_status == 402
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json_body == first.json_body
    assert client.v1.invoices.retrieve(invoice_id).attempt_count == attempts
    assert len(events(client, "invoice.payment_failed")) == failures + 1
    # A new key is a new request.
    paid = client.v1.invoices.pay(
        invoice_id, params={"payment_method": good.id}, options={"idempotency_key": "pay-2"}
    )
    assert paid.status == "paid"


def test_an_error_of_the_executing_endpoint_is_replayed(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    params: Any = {"customer": cust.id, "items": [{"price": catalog["pro"].id}]}

    def create() -> Any:
        return client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-1"})

    with pytest.raises(stripe.InvalidRequestError) as first:
        create()
    assert "no attached payment source" in first.value.user_message
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    with pytest.raises(stripe.InvalidRequestError) as again:
        create()
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert again.value.json_body == first.value.json_body


def test_a_request_refused_by_validation_is_not_saved(client: stripe.StripeClient) -> None:
    bad: Any = {"email": "x@example.com", "not_a_param": "1"}
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create(params=bad, options={"idempotency_key": "cus-1"})
    assert info.value.code == "parameter_unknown"
    # Nothing was saved: the corrected request with the same key runs.
    cust = client.v1.customers.create(
        params={"email": "x@example.com"}, options={"idempotency_key": "cus-1"}
    )
    assert cust.email == "x@example.com"


def test_same_key_other_parameters_or_endpoint_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    cust = client.v1.customers.create(
        params={"email": "x@example.com"}, options={"idempotency_key": "key-2"}
    )
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create(
            params={"email": "other@example.com"}, options={"idempotency_key": "key-2"}
        )
    assert info.value.http_status == 400
    assert info.value.error.type == "idempotency_error"
    assert info.value.user_message == (
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with. Try using a key other than 'key-2' if you meant to execute a "
        "different request."
    )
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.update(
            cust.id, params={"email": "x@example.com"}, options={"idempotency_key": "key-2"}
        )
    assert info.value.user_message == (
        "Keys for idempotent requests can only be used for the same endpoint they were first "
        f"used for ('/v1/customers/{cust.id}' vs '/v1/customers'). Try using a key other than "
        "'key-2' if you meant to execute a different request."
    )
    assert len(client.v1.customers.list().data) == 1


def test_a_key_is_new_again_after_24_hours(
    sim: SimulatorServer, client: stripe.StripeClient
) -> None:
    first = client.v1.customers.create(params={"name": "a"}, options={"idempotency_key": "old"})
    with sim.store.lock:
        for saved in sim.store.idempotency.values():
            saved.saved_at -= 24 * 3600 + 1
    second = client.v1.customers.create(params={"name": "a"}, options={"idempotency_key": "old"})
    assert second.id != first.id
