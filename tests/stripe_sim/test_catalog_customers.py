"""Products, prices, customers and payment methods (Stripe's test cards)."""

from __future__ import annotations

import pytest
import stripe


def test_prices_lookup_keys_transfer_and_archive(
    client: stripe.StripeClient, catalog: dict[str, stripe.Price]
) -> None:
    pro = catalog["pro"]
    assert pro.recurring.interval == "month"
    assert pro.type == "recurring"
    assert pro.lookup_key == "pro_monthly"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            params={
                "product": pro.product,
                "unit_amount": 2500,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": "pro_monthly",
            }
        )
    assert info.value.param == "lookup_key"
    new = client.v1.prices.create(
        params={
            "product": pro.product,
            "unit_amount": 2500,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "transfer_lookup_key": True,
            "metadata": {"tier": "pro"},
        }
    )
    assert client.v1.prices.retrieve(pro.id).lookup_key is None
    found = client.v1.prices.list(params={"lookup_keys": ["pro_monthly", "team_monthly"]})
    assert {p.id for p in found.data} == {new.id, catalog["team"].id}
    archived = client.v1.prices.update(pro.id, params={"active": False})
    assert archived.active is False
    active_ids = {p.id for p in client.v1.prices.list(params={"active": True}).data}
    assert pro.id not in active_ids


def test_products(client: stripe.StripeClient) -> None:
    prod = client.v1.products.create(params={"name": "Pro", "metadata": {"plan": "pro"}})
    assert prod.id.startswith("prod_")
    assert prod.object == "product"
    prod = client.v1.products.update(prod.id, params={"name": "Pro+"})
    assert prod.name == "Pro+"
    assert client.v1.products.list(params={"active": True}).data[0].id == prod.id


def test_customer_search_by_metadata(client: stripe.StripeClient) -> None:
    a = client.v1.customers.create(
        params={"email": "a@example.com", "metadata": {"account_id": "acc_a"}}
    )
    client.v1.customers.create(
        params={"email": "b@example.com", "metadata": {"account_id": "acc_b"}}
    )
    result = client.v1.customers.search(params={"query": "metadata['account_id']:'acc_a'"})
    assert [c.id for c in result.data] == [a.id]
    assert (
        client.v1.customers.list(params={"email": "b@example.com"}).data[0].email == "b@example.com"
    )


def test_attaching_magic_id_creates_a_new_payment_method(client: stripe.StripeClient) -> None:
    cust = client.v1.customers.create(params={"email": "a@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa"
    assert pm.customer == cust.id
    assert pm.card.brand == "visa" and pm.card.last4 == "4242"
    other = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    assert other.id != pm.id
    listed = client.v1.customers.payment_methods.list(cust.id)
    assert {p.id for p in listed.data} == {pm.id, other.id}
    cust = client.v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    assert cust.invoice_settings.default_payment_method == pm.id
    client.v1.payment_methods.detach(pm.id)
    assert client.v1.customers.retrieve(cust.id).invoice_settings.default_payment_method is None


@pytest.mark.parametrize(
    ("magic", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
def test_declined_cards_are_refused_at_attach(
    client: stripe.StripeClient, magic: str, code: str, decline_code: str
) -> None:
    cust = client.v1.customers.create(params={"email": "a@example.com"})
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_methods.attach(magic, params={"customer": cust.id})
    assert info.value.http_status == 402
    assert info.value.code == code
    assert info.value.error.decline_code == decline_code
    assert client.v1.customers.payment_methods.list(cust.id).data == []


def test_declined_card_refused_when_creating_customer(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError):
        client.v1.customers.create(params={"payment_method": "pm_card_chargeDeclined"})
    assert client.v1.customers.list().data == []


@pytest.mark.parametrize(
    ("card", "attaches"),
    [
        ({"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}, True),
        ({"number": "4000000000000341", "exp_month": 12, "exp_year": 2034}, True),
        ({"number": "4000002760003184", "exp_month": 12, "exp_year": 2034}, True),
        ({"number": "4000000000000002", "exp_month": 12, "exp_year": 2034}, False),
        ({"token": "tok_visa"}, True),
        ({"token": "tok_chargeDeclined"}, False),
    ],
)
def test_card_numbers_and_tokens(
    client: stripe.StripeClient, card: dict[str, object], attaches: bool
) -> None:
    cust = client.v1.customers.create(params={"email": "a@example.com"})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": card})
    assert pm.customer is None
    if attaches:
        assert (
            client.v1.payment_methods.attach(pm.id, params={"customer": cust.id}).customer
            == cust.id
        )
    else:
        with pytest.raises(stripe.CardError):
            client.v1.payment_methods.attach(pm.id, params={"customer": cust.id})


def test_customer_delete(client: stripe.StripeClient) -> None:
    cust = client.v1.customers.create(params={"email": "a@example.com"})
    deleted = client.v1.customers.delete(cust.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cust.id).deleted is True
