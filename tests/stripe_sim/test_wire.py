"""Wire format: auth, errors, form encoding, lists and pagination, expand, idempotency."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import make_customer


def test_missing_key_is_401(sim: SimulatorServer) -> None:
    response = httpx.get(f"{sim.url}/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in response.json()["error"]["message"]


def test_live_key_is_refused(sim: SimulatorServer) -> None:
    client = stripe.StripeClient(
        "sk_live_nope1234567", base_addresses={"api": sim.url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()


def test_basic_auth_as_curl_sends_it(sim: SimulatorServer) -> None:
    response = httpx.get(f"{sim.url}/v1/account", auth=("sk_test_curl", ""))
    assert response.status_code == 200
    assert response.json()["object"] == "account"


def test_unknown_url_is_stripe_404(sim: SimulatorServer) -> None:
    response = httpx.get(f"{sim.url}/v1/nothing_here", auth=("sk_test_x", ""))
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL")


def test_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.retrieve("cus_missing")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    assert info.value.param == "id"
    assert info.value.user_message == "No such customer: 'cus_missing'"


def test_a_missing_object_named_in_a_parameter_is_a_400_naming_it(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    """404 is for the object the URL names; an object a parameter names makes the request
    bad: 400, same code and message, ``param`` the parameter."""
    cust = make_customer(client, clock)
    pro = catalog["pro"].id

    def refused(call: Any) -> tuple[int | None, str | None, str | None, str]:
        with pytest.raises(stripe.InvalidRequestError) as info:
            call()
        error = info.value
        return error.http_status, error.code, error.param, error.user_message or ""

    assert refused(
        lambda: client.v1.subscriptions.create(
            params={"customer": "cus_nope", "items": [{"price": pro}]}
        )
    ) == (400, "resource_missing", "customer", "No such customer: 'cus_nope'")
    assert refused(
        lambda: client.v1.subscriptions.create(
            params={"customer": cust.id, "items": [{"price": "price_nope"}]}
        )
    ) == (400, "resource_missing", "items[0][price]", "No such price: 'price_nope'")
    assert refused(
        lambda: client.v1.subscriptions.create(
            params={
                "customer": cust.id,
                "items": [{"price": pro}],
                "default_payment_method": "pm_nope",
            }
        )
    ) == (400, "resource_missing", "default_payment_method", "No such PaymentMethod: 'pm_nope'")
    assert refused(
        lambda: client.v1.payment_methods.attach("pm_nope", params={"customer": cust.id})
    ) == (404, "resource_missing", "id", "No such PaymentMethod: 'pm_nope'")
    assert refused(
        lambda: client.v1.payment_methods.attach("pm_card_visa", params={"customer": "cus_nope"})
    ) == (400, "resource_missing", "customer", "No such customer: 'cus_nope'")
    assert refused(lambda: client.v1.subscriptions.retrieve("sub_nope")) == (
        404,
        "resource_missing",
        "id",
        "No such subscription: 'sub_nope'",
    )
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []


def test_missing_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(params={"currency": "usd", "unit_amount": 5})
    assert info.value.http_status == 400
    assert info.value.param == "product"


def test_bad_integer_is_400_not_500(sim: SimulatorServer) -> None:
    response = httpx.post(
        f"{sim.url}/v1/test_helpers/test_clocks",
        auth=("sk_test_x", ""),
        data={"frozen_time": "soon"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "frozen_time"


def get_account(sim: SimulatorServer, version: str | None) -> httpx.Response:
    headers = {"Stripe-Version": version} if version is not None else {}
    return httpx.get(f"{sim.url}/v1/account", auth=("sk_test_x", ""), headers=headers)


def test_the_pinned_version_and_no_version_are_served(sim: SimulatorServer) -> None:
    for version in (stripe.api_version, None):
        ok = get_account(sim, version)
        assert ok.status_code == 200
        assert ok.headers["Stripe-Version"] == "2026-10-28.endive" == stripe.api_version
        assert ok.headers["Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    "version", ["2024-06-20", "2099-01-01", "2025-03-31.basil", "2026-10-28.endive; beta=v1"]
)
def test_another_version_is_refused_naming_the_one_rendered(
    sim: SimulatorServer, version: str
) -> None:
    refused = get_account(sim, version)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "api_version_not_implemented_by_simulator"
    assert "renders API version 2026-10-28.endive only" in error["message"]
    assert version in error["message"]


@pytest.mark.parametrize("version", ["banana", "yesterday", "2026-13-45", "2019-2-19"])
def test_a_nonsense_version_is_stripes_invalid_version(sim: SimulatorServer, version: str) -> None:
    refused = get_account(sim, version)
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "type": "invalid_request_error",
        "message": f"Invalid Stripe API version: {version}",
        "request_log_url": refused.json()["error"]["request_log_url"],
    }


def test_a_client_pinned_to_another_version_is_told(
    sim: SimulatorServer, client: stripe.StripeClient
) -> None:
    other = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": sim.url},
        stripe_version="2024-06-20",
        max_network_retries=0,
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        other.v1.customers.create(params={"email": "x@example.com"})
    assert info.value.code == "api_version_not_implemented_by_simulator"
    assert client.v1.customers.list().data == []


def test_account(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.retrieve_current()
    assert account.id.startswith("acct_")
    assert account.charges_enabled is True


def test_nested_form_encoding_and_metadata(
    client: stripe.StripeClient, catalog: dict[str, stripe.Price]
) -> None:
    cust = client.v1.customers.create(
        params={"email": "a@example.com", "metadata": {"account_id": "acc_1", "plan": "pro"}}
    )
    assert cust.metadata.to_dict() == {"account_id": "acc_1", "plan": "pro"}
    cust = client.v1.customers.update(cust.id, params={"metadata": {"plan": ""}})
    assert cust.metadata.to_dict() == {"account_id": "acc_1"}


def test_pagination_newest_first(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(7)]
    page = client.v1.customers.list(params={"limit": 3})
    assert page.object == "list"
    assert page.url == "/v1/customers"
    assert [c.id for c in page.data] == ids[::-1][:3]
    assert page.has_more is True
    after = client.v1.customers.list(params={"limit": 3, "starting_after": page.data[-1].id})
    assert [c.id for c in after.data] == ids[::-1][3:6]
    before = client.v1.customers.list(params={"limit": 2, "ending_before": after.data[0].id})
    assert [c.id for c in before.data] == ids[::-1][1:3]
    walked = [c.id for c in client.v1.customers.list(params={"limit": 2}).auto_paging_iter()]
    assert walked == ids[::-1]


def test_expand(client: stripe.StripeClient, catalog: dict[str, stripe.Price]) -> None:
    prices = client.v1.prices.list(
        params={"lookup_keys": ["pro_monthly"], "expand": ["data.product"]}
    )
    assert len(prices.data) == 1
    assert prices.data[0].product.name == "Pro"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.retrieve(catalog["pro"].id, params={"expand": ["nonsense"]})


def test_bad_expand_on_write_changes_nothing(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, stripe.Price]
) -> None:
    cust = make_customer(client, clock)
    with pytest.raises(stripe.InvalidRequestError) as info:
        # At this API version an invoice has no payment_intent (it is in invoice.payments).
        client.v1.subscriptions.create(
            params={
                "customer": cust.id,
                "items": [{"price": catalog["pro"].id}],
                "expand": ["latest_invoice.payment_intent"],
            }
        )
    assert info.value.param == "expand"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    sub = client.v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": catalog["pro"].id}],
            "expand": [
                "customer",
                "items.data.price.product",
                "latest_invoice.payments",
                "default_payment_method",
                "latest_invoice.confirmation_secret",
            ],
        }
    )
    assert sub.customer.id == cust.id
    assert sub["items"].data[0].price.product.name == "Pro"
    intent_id = sub.latest_invoice.payments.data[0].payment.payment_intent
    assert client.v1.payment_intents.retrieve(intent_id).status == "succeeded"


def test_idempotent_replay(sim: SimulatorServer, client: stripe.StripeClient) -> None:
    first = client.v1.customers.create(
        params={"email": "x@example.com"}, options={"idempotency_key": "key-1"}
    )
    again = client.v1.customers.create(
        params={"email": "x@example.com"}, options={"idempotency_key": "key-1"}
    )
    assert again.id == first.id
    assert len(client.v1.customers.list().data) == 1
    raw = httpx.post(
        f"{sim.url}/v1/customers",
        auth=("sk_test_simulator", ""),
        data={"email": "x@example.com"},
        headers={"Idempotency-Key": "key-1"},
    )
    assert raw.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create(
            params={"email": "other@example.com"}, options={"idempotency_key": "key-1"}
        )
    assert info.value.http_status == 400
    assert info.value.error.type == "idempotency_error"
