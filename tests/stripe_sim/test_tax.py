"""Tax rates, customer addresses and tax ids, and tax on subscription invoices and Checkout,
through stripe-python."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

FEB_1 = JAN_1 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
BERLIN = {"line1": "Unter den Linden 1", "postal_code": "10117", "city": "Berlin", "country": "DE"}


def subscribe(client: stripe.StripeClient, cust: Any, price: Any, **extra: Any) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}], **extra}
    )


def invoices_oldest_first(client: stripe.StripeClient, sub: Any) -> list[Any]:
    return list(reversed(client.v1.invoices.list(params={"subscription": sub.id}).data))


def tax_rate(client: stripe.StripeClient, percentage: float, inclusive: bool = False) -> Any:
    return client.v1.tax_rates.create(
        params={
            "display_name": "Sales tax",
            "percentage": percentage,
            "inclusive": inclusive,
            "country": "US",
            "state": "CA",
            "jurisdiction": "US - CA",
            "tax_type": "sales_tax",
        }
    )


# tax rates -------------------------------------------------------------------------------------
def test_tax_rate_create_update_list_and_events(client: stripe.StripeClient) -> None:
    rate = tax_rate(client, 8.25)
    assert (rate.percentage, rate.inclusive, rate.active, rate.country) == (8.25, False, True, "US")
    assert rate.id.startswith("txr_")
    assert client.v1.tax_rates.retrieve(rate.id).display_name == "Sales tax"
    inclusive = tax_rate(client, 19, inclusive=True)
    updated = client.v1.tax_rates.update(
        rate.id, params={"active": False, "display_name": "CA tax", "metadata": {"k": "v"}}
    )
    assert (updated.active, updated.display_name, updated.metadata.to_dict()) == (
        False,
        "CA tax",
        {"k": "v"},
    )
    listed = client.v1.tax_rates.list(params={"active": True})
    assert [r.id for r in listed.data] == [inclusive.id]
    assert [r.id for r in client.v1.tax_rates.list(params={"inclusive": False}).data] == [rate.id]
    assert [e.type for e in events(client, "tax_rate.created", "tax_rate.updated")] == [
        "tax_rate.created",
        "tax_rate.created",
        "tax_rate.updated",
    ]
    [update] = events(client, "tax_rate.updated")
    assert update.data.previous_attributes["active"] is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 19})
    assert missing.value.param == "inclusive"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.tax_rates.retrieve("txr_missing")
    assert gone.value.http_status == 404


# manual rates on invoices ----------------------------------------------------------------------
def test_exclusive_rate_is_charged_on_the_discounted_line_rounded_half_up(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    rate = tax_rate(client, 8.25)
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "forever"})
    cust = make_customer(client, clock)
    sub = subscribe(
        client,
        cust,
        catalog["pro"],
        default_tax_rates=[rate.id],
        discounts=[{"coupon": coupon.id}],
    )
    assert [r.id for r in sub.default_tax_rates] == [rate.id]
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    # $20.00 - 25% = $15.00; 8.25% of it is 123.75 cents, rounded half up to 124.
    assert (inv.subtotal, inv.total_excluding_tax, inv.total) == (2000, 1500, 1624)
    assert inv.amount_paid == 1624
    [tax] = inv.total_taxes
    assert (tax.amount, tax.taxable_amount, tax.tax_behavior) == (124, 1500, "exclusive")
    assert tax.tax_rate_details.tax_rate == rate.id
    [line_tax] = inv.lines.data[0].taxes
    assert (line_tax.amount, line_tax.taxable_amount) == (124, 1500)
    assert [r.id for r in inv.default_tax_rates] == [rate.id]


def test_inclusive_item_rate_is_taken_out_of_the_amount(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    rate = tax_rate(client, 19, inclusive=True)
    cust = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": catalog["pro"].id, "tax_rates": [rate.id]}],
        }
    )
    assert [r.id for r in sub["items"].data[0].tax_rates] == [rate.id]
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    # 2000 / 1.19 = 1680.67 -> 1681 net, 319 tax; the customer pays 2000.
    assert (inv.total, inv.total_excluding_tax, inv.subtotal_excluding_tax) == (2000, 1681, 1681)
    [tax] = inv.total_taxes
    assert (tax.amount, tax.taxable_amount, tax.tax_behavior) == (319, 1681, "inclusive")
    assert inv.amount_paid == 2000


# automatic tax ---------------------------------------------------------------------------------
def test_automatic_tax_by_the_customers_country_across_a_renewal(
    client: stripe.StripeClient, sim: SimulatorServer, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, address=BERLIN)
    assert cust.address.country == "DE"
    sub = subscribe(client, cust, catalog["pro"], automatic_tax={"enabled": True})
    assert sub.automatic_tax.enabled is True
    assert sub.automatic_tax.liability.type == "self"
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.automatic_tax.enabled, first.automatic_tax.status) == (True, "complete")
    assert (first.subtotal, first.total, first.amount_paid) == (2000, 2380, 2380)
    [tax] = first.total_taxes
    assert (tax.amount, tax.taxability_reason) == (380, "standard_rated")
    rate = client.v1.tax_rates.retrieve(tax.tax_rate_details.tax_rate)
    assert (rate.country, rate.percentage, rate.inclusive) == ("DE", 19.0, False)
    assert first.customer_address.country == "DE"
    # The rate table is a run-time setting: Germany's rate changes before the renewal.
    answer = httpx.post(
        f"{sim.url}/_sim/settings", json={"tax_rates_by_country": {"DE": 7, "FR": 20}}
    )
    assert answer.status_code == 200
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = invoices_oldest_first(client, sub)[1]
    assert (renewal.status, renewal.total, renewal.amount_paid) == ("paid", 2140, 2140)
    # A country the table does not list is one the account does not collect tax in.
    client.v1.customers.update(cust.id, params={"address": {**BERLIN, "country": "US"}})
    advance(client, clock, MAR_1 + 2 * HOUR)
    third = invoices_oldest_first(client, sub)[2]
    assert (third.total, third.total_taxes) == (2000, [])


def test_automatic_tax_on_a_tax_inclusive_price_is_taken_out_of_it(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    price = client.v1.prices.create(
        params={
            "product": catalog["pro"].product,
            "unit_amount": 2380,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "tax_behavior": "inclusive",
        }
    )
    cust = make_customer(client, clock, address=BERLIN)
    sub = subscribe(client, cust, price, automatic_tax={"enabled": True})
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (inv.total, inv.total_excluding_tax, inv.amount_paid) == (2380, 2000, 2380)
    [tax] = inv.total_taxes
    assert (tax.amount, tax.taxable_amount, tax.tax_behavior) == (380, 2000, "inclusive")


def test_automatic_tax_needs_a_customer_location(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscribe(client, cust, catalog["pro"], automatic_tax={"enabled": True})
    assert refused.value.code == "customer_tax_location_invalid"
    assert client.v1.subscriptions.list(params={"customer": cust.id}).data == []
    sub = subscribe(client, cust, catalog["pro"])
    with pytest.raises(stripe.InvalidRequestError) as on_update:
        client.v1.subscriptions.update(sub.id, params={"automatic_tax": {"enabled": True}})
    assert on_update.value.code == "customer_tax_location_invalid"
    client.v1.customers.update(cust.id, params={"address": {"country": "FR"}})
    updated = client.v1.subscriptions.update(sub.id, params={"automatic_tax": {"enabled": True}})
    assert updated.automatic_tax.enabled is True
    # Stripe validates the location of a customer with automatic-tax subscriptions.
    with pytest.raises(stripe.InvalidRequestError) as unlocated:
        client.v1.customers.update(cust.id, params={"address": ""})
    assert unlocated.value.code == "customer_tax_location_invalid"
    advance(client, clock, FEB_1 + 2 * HOUR)
    assert invoices_oldest_first(client, sub)[1].total == 2400


def test_plan_change_on_a_taxed_subscription_taxes_the_prorations(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, address=BERLIN)
    sub = subscribe(client, cust, catalog["pro"], automatic_tax={"enabled": True})
    advance(client, clock, JAN_1 + 15 * DAY + 12 * HOUR)  # half of January is left
    item = sub["items"].data[0]
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": catalog["team"].id}],
            "proration_behavior": "always_invoice",
        },
    )
    inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    # -$10.00 unused Pro, +$25.00 remaining Team: $15.00 net, 19% of each line.
    assert [line.amount for line in inv.lines.data] == [-1000, 2500]
    assert [line.taxes[0].amount for line in inv.lines.data] == [-190, 475]
    assert (inv.subtotal, inv.total, inv.amount_paid) == (1500, 1785, 1785)


# tax ids ---------------------------------------------------------------------------------------
def test_customer_tax_ids_create_list_delete_and_events(
    client: stripe.StripeClient, clock: Any
) -> None:
    cust = make_customer(client, clock)
    vat = client.v1.customers.tax_ids.create(
        cust.id, params={"type": "eu_vat", "value": "DE123456789"}
    )
    assert (vat.country, vat.customer, vat.type, vat.value) == (
        "DE",
        cust.id,
        "eu_vat",
        "DE123456789",
    )
    assert vat.owner.type == "customer" and vat.owner.customer == cust.id
    assert vat.verification.status == "pending"
    ein = client.v1.customers.tax_ids.create(
        cust.id, params={"type": "us_ein", "value": "12-3456789"}
    )
    assert ein.verification.status == "unavailable"
    listed = client.v1.customers.tax_ids.list(cust.id)
    assert {t.id for t in listed.data} == {vat.id, ein.id}
    assert client.v1.customers.tax_ids.retrieve(cust.id, vat.id).value == "DE123456789"
    included = client.v1.customers.retrieve(cust.id, params={"expand": ["tax_ids"]})
    assert [t.id for t in included.tax_ids.data] == [vat.id, ein.id]
    assert "tax_ids" not in client.v1.customers.retrieve(cust.id)
    deleted = client.v1.customers.tax_ids.delete(cust.id, vat.id)
    assert deleted.deleted is True
    assert [t.id for t in client.v1.customers.tax_ids.list(cust.id).data] == [ein.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.tax_ids.retrieve(cust.id, vat.id)
    assert [(e.type, e.data.object.id) for e in events(client, "customer.tax_id.*")] == [
        ("customer.tax_id.created", vat.id),
        ("customer.tax_id.created", ein.id),
        ("customer.tax_id.deleted", vat.id),
    ]
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.customers.tax_ids.create(cust.id, params={"type": "gb_vat", "value": "12"})
    assert (bad.value.code, bad.value.param) == ("tax_id_invalid", "value")
    with pytest.raises(stripe.InvalidRequestError) as unimplemented:
        client.v1.customers.tax_ids.create(cust.id, params={"type": "in_gst", "value": "x"})
    assert unimplemented.value.code == "parameter_not_implemented_by_simulator"


# checkout --------------------------------------------------------------------------------------
def taxed_session(client: stripe.StripeClient, price: Any, **extra: Any) -> Any:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://app.example/done?session={CHECKOUT_SESSION_ID}",
            "automatic_tax": {"enabled": True},
            "tax_id_collection": {"enabled": True},
            **extra,
        }
    )


def test_checkout_collects_the_address_and_tax_id_and_taxes_the_subscription(
    client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    session = taxed_session(
        client,
        catalog["pro"],
        customer_email="ada@example.com",
        billing_address_collection="required",
    )
    assert session.automatic_tax.enabled is True
    assert session.automatic_tax.status == "requires_location_inputs"
    assert session.tax_id_collection.enabled is True
    assert session.billing_address_collection == "required"
    page = httpx.get(session.url)
    assert 'name="address[country]"' in page.text and 'name="tax_id[value]"' in page.text
    # Without an address the page refuses and the session stays open.
    refused = httpx.post(session.url, data={"payment_method": "pm_card_visa"})
    assert refused.status_code == 400
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    paid = httpx.post(
        session.url,
        data={
            "payment_method": "pm_card_visa",
            "address[country]": "DE",
            "address[line1]": "Unter den Linden 1",
            "address[postal_code]": "10117",
            "tax_id[type]": "eu_vat",
            "tax_id[value]": "DE123456789",
        },
    )
    assert paid.status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
    assert done.status == "complete"
    assert done.automatic_tax.status == "complete"
    assert done.customer_details.address.country == "DE"
    assert [(t.type, t.value) for t in done.customer_details.tax_ids] == [("eu_vat", "DE123456789")]
    assert (done.amount_subtotal, done.total_details.amount_tax, done.amount_total) == (
        2000,
        380,
        2380,
    )
    assert done.subscription.automatic_tax.enabled is True
    cust = client.v1.customers.retrieve(done.customer)
    assert cust.address.line1 == "Unter den Linden 1"
    assert [t.value for t in client.v1.customers.tax_ids.list(cust.id).data] == ["DE123456789"]
    inv = client.v1.invoices.retrieve(done.subscription.latest_invoice)
    assert (inv.total, inv.amount_paid, inv.status) == (2380, 2380, "paid")
    assert [(t.type, t.value) for t in inv.customer_tax_ids] == [("eu_vat", "DE123456789")]


def test_checkout_for_an_existing_customer_saves_the_address_only_when_asked(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    with pytest.raises(stripe.InvalidRequestError) as no_address:
        taxed_session(
            client, catalog["pro"], customer=cust.id, tax_id_collection={"enabled": False}
        )
    assert "`customer_update[address]` to 'auto'" in no_address.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as no_name:
        taxed_session(client, catalog["pro"], customer=cust.id, customer_update={"address": "auto"})
    assert "`customer_update[name]` to `auto`" in no_name.value.user_message
    session = taxed_session(
        client,
        catalog["pro"],
        customer=cust.id,
        customer_update={"address": "auto", "name": "auto"},
    )
    form = {"payment_method": "pm_card_visa", "address[country]": "FR", "name": "Ada SARL"}
    assert httpx.post(session.url, data=form).status_code == 303
    saved = client.v1.customers.retrieve(cust.id)
    assert (saved.address.country, saved.name) == ("FR", "Ada SARL")
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.total_details.amount_tax, done.amount_total) == (400, 2400)
    assert done.customer_details.tax_ids == []


def test_checkout_taxes_the_discounted_amount(
    client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    """A promotion code and automatic tax: the tax is on what is left after the discount,
    on the session as on the invoice it pays."""
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "QUARTER"}
    )
    session = taxed_session(
        client, catalog["pro"], customer_email="eve@example.com", allow_promotion_codes=True
    )
    paid = httpx.post(
        session.url,
        data={
            "payment_method": "pm_card_visa",
            "promotion_code": "QUARTER",
            "address[country]": "DE",
        },
    )
    assert paid.status_code == 303, paid.text
    done = client.v1.checkout.sessions.retrieve(session.id)
    # 2000 − 500 discount = 1500, 19 % of it = 285.
    assert (
        done.amount_subtotal,
        done.total_details.amount_discount,
        done.total_details.amount_tax,
        done.amount_total,
    ) == (2000, 500, 285, 1785)
    invoice = client.v1.invoices.retrieve(done.invoice)
    assert (invoice.total, invoice.amount_paid) == (1785, 1785)
    with pytest.raises(stripe.InvalidRequestError, match="breakdown of a taxed Checkout"):
        client.v1.checkout.sessions.retrieve(
            session.id, params={"expand": ["total_details.breakdown"]}
        )
