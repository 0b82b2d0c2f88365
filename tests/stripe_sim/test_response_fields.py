"""Responses complete at the pinned API version: every object the simulator returns carries
every field stripe-python's resource class declares and no other (``response_schema.json``),
nested objects included.

One realistic session through stripe-python records every response body it receives; each
object in them (and every event's ``data.object``) is checked against the table."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import stripe
from stripe._http_client import new_default_http_client

from stripe_sim.app import _match, served_routes
from stripe_sim.response_schema_gen import (
    RENDERED,
    SCHEMA_PATH,
    build_table,
)
from stripe_sim.schema_tables import render_table
from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import DAY, JAN_1, Receiver, advance, make_customer

TABLE: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())["objects"]
LIST_FIELDS = {"object", "data", "has_more", "url"}
SEARCH_FIELDS = {"object", "data", "has_more", "next_page", "url"}
DELETED_FIELDS = {"id", "object", "deleted"}


def test_table_is_up_to_date() -> None:
    """response_schema.json is what response_schema_gen makes from this stripe-python."""
    assert SCHEMA_PATH.read_text() == render_table(build_table())


# The checker --------------------------------------------------------------------------------
class Checker:
    def __init__(self) -> None:
        self.problems: set[str] = set()
        self.seen: dict[str, int] = {}
        self.routes: set[tuple[str, str]] = set()  # (method, pattern) answered with 2xx

    def response(self, body: Any, where: str) -> None:
        if isinstance(body, dict) and body.get("object") in ("list", "search_result"):
            self.envelope(body, None, where)
        elif isinstance(body, dict) and "object" in body and "error" not in body:
            self.obj(body, body["object"], where)

    def envelope(self, value: Any, kind: str | None, where: str) -> None:
        expected = LIST_FIELDS if value.get("object") == "list" else SEARCH_FIELDS
        self.keys(set(value), expected, set(), where)
        for item in value.get("data", []):
            self.obj(item, kind or item.get("object"), f"{where}.data[]")

    def obj(self, value: Any, kind: str | None, where: str) -> None:
        if not isinstance(value, dict) or kind is None:
            return
        if value.get("object") != kind:
            self.problems.add(f"{where}: object {value.get('object')!r}, expected {kind!r}")
            return
        if value.get("deleted") is True:
            self.keys(set(value), DELETED_FIELDS, set(), f"{where} (deleted {kind})")
            return
        spec = TABLE.get(kind)
        if spec is None:
            self.problems.add(f"{where}: {kind!r} is not in response_schema.json")
            return
        self.seen[kind] = self.seen.get(kind, 0) + 1
        # Problems are named by the object type and the path inside it, not by the response.
        self.fields(value, spec, set(spec.get("omitted", ())), kind)
        if kind == "event":
            inner = value["data"]["object"]
            self.obj(inner, inner.get("object"), "event.data.object")

    def keys(self, present: set[str], expected: set[str], omitted: set[str], where: str) -> None:
        missing = sorted(expected - omitted - present)
        extra = sorted(present - expected)
        if missing:
            self.problems.add(f"{where}: missing {missing}")
        if extra:
            self.problems.add(f"{where}: extra {extra}")

    def fields(
        self, value: dict[str, Any], node: dict[str, Any], omitted: set[str], where: str
    ) -> None:
        """``node``: a table object node; ``omitted``: dotted paths left out, relative to it."""
        fields = node["object"]
        left_out = {path for path in omitted if "." not in path}
        if node.get("sparse"):
            left_out |= set(fields)
        if "by_type" in node:  # only the sub-hash of the object's own type
            left_out |= set(node["by_type"]) - {value.get("type")}
            self.keys(
                set(value) & set(node["by_type"]),
                {value.get("type")} & set(fields),
                set(),
                f"{where} (type {value.get('type')!r})",
            )
        self.keys(set(value), set(fields), left_out, where)
        for name, child in fields.items():
            if name in value:
                inner = {p.split(".", 1)[1] for p in omitted if p.startswith(name + ".")}
                self.node(value[name], child, f"{where}.{name}", inner)

    def node(self, value: Any, node: Any, where: str, omitted: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        if value is None or node == "value":
            return
        if "object" in node and isinstance(value, dict):
            self.fields(value, node, omitted, where)
        elif "resource" in node:
            self.obj(value, node["resource"], where)
        elif "expandable" in node and isinstance(value, dict):
            if node["expandable"] in TABLE:
                self.obj(value, node["expandable"], where)
        elif "list" in node and isinstance(value, dict):
            self.envelope(value, node["list"], where)
        elif "array" in node and isinstance(value, list):
            for item in value:
                self.node(item, node["array"], f"{where}[]")
        elif "map" in node and isinstance(value, dict):
            for key, item in value.items():
                self.node(item, node["map"], f"{where}[{key}]")


def test_checker_names_missing_and_extra_fields(client: stripe.StripeClient) -> None:
    body = client.v1.customers.create(params={"email": "x@example.com"}).to_dict()
    checker = Checker()
    checker.obj(body, "customer", "ok")
    assert checker.problems == set()
    del body["email"]
    body["invoice_settings"]["bogus"] = 1
    checker.obj(body, "customer", "bad")
    assert checker.problems == {
        "customer: missing ['email']",
        "customer.invoice_settings: extra ['bogus']",
    }
    pm = client.v1.payment_methods.retrieve("pm_card_visa").to_dict()
    pm["sepa_debit"] = None  # a sub-hash of another type
    checker = Checker()
    checker.obj(pm, "payment_method", "pm")
    assert checker.problems == {"payment_method (type 'card'): extra ['sepa_debit']"}


def recording_client(sim: SimulatorServer, checker: Checker) -> stripe.StripeClient:
    base = type(new_default_http_client())

    class Recording(base):  # type: ignore[misc, valid-type]
        def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
            content, status, response_headers = super().request(method, url, headers, post_data)
            if status < 400:
                path = urlsplit(url).path
                matched = _match(method.upper(), path)
                assert matched is not None
                route, _ = matched
                checker.routes.add((route.method, route.pattern))
                checker.response(json.loads(content), f"{method.upper()} {path}")
            return content, status, response_headers

    return stripe.StripeClient(
        "sk_test_simulator",
        base_addresses={"api": sim.url},
        max_network_retries=0,
        http_client=Recording(),
    )


# The session ----------------------------------------------------------------------------------
def test_every_object_has_exactly_stripes_fields(sim: SimulatorServer, receiver: Receiver) -> None:
    checker = Checker()
    client = recording_client(sim, checker)
    v1 = client.v1
    v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    v1.webhook_endpoints.list()
    spare = v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    v1.webhook_endpoints.update(spare.id, params={"description": "spare"})
    v1.webhook_endpoints.retrieve(spare.id)
    v1.webhook_endpoints.delete(spare.id)
    clock = v1.test_helpers.test_clocks.create(params={"frozen_time": JAN_1, "name": "fields"})
    v1.test_helpers.test_clocks.list()
    product = v1.products.create(params={"name": "Pro", "metadata": {"tier": "pro"}})
    v1.products.update(product.id, params={"description": "The Pro plan"})
    monthly = v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 2000,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
        }
    )
    v1.prices.create(params={"product": product.id, "unit_amount": 500, "currency": "usd"})
    v1.prices.retrieve(monthly.id, params={"expand": ["product"]})
    v1.prices.update(monthly.id, params={"metadata": {"plan": "pro"}})
    v1.products.retrieve(product.id)
    v1.prices.list()
    v1.products.list()
    v1.products.search(params={"query": "active:'true'"})
    v1.prices.search(params={"query": "active:'true'"})

    # A paying customer, then a renewal that fails and is retried, an upgrade, a cancel.
    cust = make_customer(client, clock, name="Ada")
    v1.customers.update(cust.id, params={"metadata": {"account_id": "acc_1"}})
    v1.customers.retrieve(
        cust.id, params={"expand": ["test_clock", "invoice_settings.default_payment_method"]}
    )
    v1.customers.list()
    v1.customers.search(params={"query": "email:'ada@example.com'"})
    v1.customers.payment_methods.list(cust.id)
    sub = v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": monthly.id}],
            "metadata": {"account_id": "acc_1"},
            "expand": ["latest_invoice.payments"],
        }
    )
    v1.subscriptions.retrieve(sub.id, params={"expand": ["customer", "items.data.price.product"]})
    v1.subscriptions.list(params={"status": "all"})
    v1.subscriptions.search(params={"query": "status:'active'"})
    # Coupons and promotion codes; a discounted subscription whose `once` discount ends at
    # the renewal below (customer.discount.deleted).
    coupon = v1.coupons.create(
        params={"percent_off": 25, "duration": "once", "id": "FIELDS25", "max_redemptions": 5}
    )
    v1.coupons.update(coupon.id, params={"name": "Quarter off", "metadata": {"k": "v"}})
    v1.coupons.retrieve(coupon.id)
    v1.coupons.list()
    v1.coupons.delete(
        v1.coupons.create(params={"amount_off": 500, "currency": "usd", "duration": "forever"}).id
    )
    promo = v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "WELCOME",
            "restrictions": {"minimum_amount": 1000, "minimum_amount_currency": "usd"},
        }
    )
    v1.promotion_codes.update(promo.id, params={"metadata": {"campaign": "spring"}})
    v1.promotion_codes.retrieve(promo.id, params={"expand": ["promotion.coupon"]})
    v1.promotion_codes.list(params={"code": "WELCOME"})
    bea = make_customer(client, clock, name="Bea")
    discounted = v1.subscriptions.create(
        params={
            "customer": bea.id,
            "items": [{"price": monthly.id}],
            "discounts": [{"promotion_code": promo.id}],
            "expand": ["discounts", "latest_invoice.discounts"],
        }
    )
    assert discounted.latest_invoice.total == 1500
    # Subscription schedules: one from a subscription, with a dearer phase after it that
    # ends (released) during the advances below; one that starts then and is released; one
    # canceled at once.
    cal = make_customer(client, clock, name="Cal")
    on_schedule = v1.subscriptions.create(
        params={"customer": cal.id, "items": [{"price": monthly.id}]}
    )
    sched = v1.subscription_schedules.create(params={"from_subscription": on_schedule.id})
    v1.subscription_schedules.update(
        sched.id,
        params={
            "metadata": {"k": "v"},
            "phases": [
                {
                    "items": [{"price": monthly.id}],
                    "start_date": sched.phases[0].start_date,
                    "end_date": sched.phases[0].end_date,
                },
                {"items": [{"price": monthly.id, "quantity": 2}], "end_date": JAN_1 + 33 * DAY},
            ],
        },
    )
    v1.subscription_schedules.retrieve(sched.id, params={"expand": ["subscription", "customer"]})
    v1.subscription_schedules.list(params={"customer": cal.id})
    starts_later = v1.subscription_schedules.create(
        params={
            "customer": cal.id,
            "start_date": JAN_1 + 32 * DAY,
            "phases": [{"items": [{"price": monthly.id}]}],
        }
    )
    canceled_schedule = v1.subscription_schedules.create(
        params={
            "customer": cal.id,
            "start_date": "now",
            "phases": [{"items": [{"price": monthly.id}]}],
        }
    )
    v1.subscription_schedules.cancel(canceled_schedule.id)
    item = v1.subscription_items.list(params={"subscription": sub.id}).data[0]
    v1.subscription_items.retrieve(item.id)
    invoices = v1.invoices.list(params={"customer": cust.id}).data
    v1.invoices.retrieve(invoices[0].id, params={"expand": ["customer"]})
    v1.invoices.line_items.list(invoices[0].id)
    v1.invoice_payments.list(params={"invoice": invoices[0].id})
    intent = v1.invoice_payments.list(params={"invoice": invoices[0].id}).data[0]
    v1.payment_intents.retrieve(intent.payment.payment_intent)
    pm = v1.payment_methods.attach("pm_card_mastercard", params={"customer": cust.id})
    v1.payment_methods.retrieve(pm.id)
    v1.payment_methods.list(params={"customer": cust.id})
    v1.payment_methods.detach(pm.id)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    own = v1.payment_methods.create(
        params={"type": "card", "card": card, "billing_details": {"name": "Ada", "email": "a@b.c"}}
    )
    v1.payment_methods.update(own.id, params={"metadata": {"label": "own"}})
    v1.payment_methods.attach(own.id, params={"customer": cust.id})
    v1.customers.payment_methods.retrieve(cust.id, own.id)
    # The renewal is drafted at the period end, and finalized here by hand.
    advance(client, clock, JAN_1 + 31 * DAY)
    draft = v1.invoices.list(params={"customer": cust.id, "status": "draft"}).data[0]
    v1.invoices.finalize_invoice(draft.id)
    advance(client, clock, JAN_1 + 31 * DAY + 2 * 3600)
    v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 2}],
            "proration_behavior": "create_prorations",
        },
    )
    # A change whose payment fails waits as a pending update.
    failing = v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cust.id})
    v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
    )
    pending = v1.invoice_items.list(params={"customer": cust.id})
    v1.invoice_items.retrieve(pending.data[0].id)
    v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void"}})
    v1.subscriptions.update(sub.id, params={"pause_collection": ""})
    v1.subscriptions.update(
        sub.id,
        params={
            "cancel_at_period_end": True,
            "cancellation_details": {"comment": "too dear", "feedback": "too_expensive"},
        },
    )
    v1.subscriptions.cancel(sub.id)

    # An anchored subscription: billing_cycle_anchor_config and a prorated first invoice.
    anchored = make_customer(client, clock, email="c@example.com")
    v1.subscriptions.create(
        params={
            "customer": anchored.id,
            "items": [{"price": monthly.id}],
            "billing_cycle_anchor_config": {"day_of_month": 15, "hour": 12},
        }
    )

    # A card that needs 3DS: an incomplete subscription with an open invoice.
    strict = make_customer(
        client, clock, pm="pm_card_authenticationRequired", email="b@example.com"
    )
    v1.subscriptions.create(
        params={
            "customer": strict.id,
            "items": [{"price": monthly.id}],
            "payment_behavior": "allow_incomplete",
        }
    )
    open_invoice = v1.invoices.list(params={"customer": strict.id, "status": "open"}).data[0]
    v1.invoices.pay(open_invoice.id, params={"payment_method": "pm_card_visa"})
    for email, write_off in (
        ("c@example.com", v1.invoices.void_invoice),
        ("e@example.com", v1.invoices.mark_uncollectible),
    ):
        other = make_customer(client, clock, pm="pm_card_authenticationRequired", email=email)
        v1.subscriptions.create(
            params={
                "customer": other.id,
                "items": [{"price": monthly.id}],
                "payment_behavior": "allow_incomplete",
            }
        )
        write_off(v1.invoices.list(params={"customer": other.id}).data[0].id)

    # A trial without a payment method pauses; resumed once a card is there.
    later = make_customer(client, clock, pm=None, email="d@example.com")
    paused = v1.subscriptions.create(
        params={
            "customer": later.id,
            "items": [{"price": monthly.id}],
            "trial_period_days": 1,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        }
    )
    advance(client, clock, JAN_1 + 33 * DAY)
    v1.subscription_schedules.release(starts_later.id)
    v1.payment_methods.attach("pm_card_visa", params={"customer": later.id})
    card_id = v1.customers.payment_methods.list(later.id).data[0].id
    v1.customers.update(later.id, params={"invoice_settings": {"default_payment_method": card_id}})
    v1.subscriptions.resume(paused.id, params={"billing_cycle_anchor": {"type": "now"}})

    # Checkout, then the billing portal.
    session = v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": monthly.id, "quantity": 1}],
            "customer_email": "new@example.com",
            "success_url": "https://app.example/done",
            "cancel_url": "https://app.example/billing",
            "allow_promotion_codes": True,
        }
    )
    v1.checkout.sessions.line_items.list(session.id)
    trial = v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": monthly.id, "quantity": 1}],
            "customer_email": "trial@example.com",
            "subscription_data": {"trial_period_days": 7, "metadata": {"account_id": "acc_7"}},
            "success_url": "https://app.example/done",
        }
    )
    assert httpx.post(trial.url, data={"payment_method": "pm_card_visa"}).status_code == 303
    paid = httpx.post(
        session.url,
        data={"payment_method": "pm_card_visa", "name": "N", "promotion_code": "WELCOME"},
    )
    assert paid.status_code == 303
    done = v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["line_items", "total_details.breakdown"]}
    )
    assert done.total_details.amount_discount == 500
    assert done.total_details.breakdown.discounts[0].amount == 500
    taxed_session = v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": monthly.id, "quantity": 1}],
            "success_url": "https://app.example/done",
            "automatic_tax": {"enabled": True},
            "billing_address_collection": "required",
            "tax_id_collection": {"enabled": True},
        }
    )
    collected = {
        "payment_method": "pm_card_visa",
        "address[country]": "DE",
        "tax_id[type]": "eu_vat",
        "tax_id[value]": "DE123456789",
    }
    assert httpx.post(taxed_session.url, data=collected).status_code == 303
    v1.checkout.sessions.retrieve(taxed_session.id)
    v1.checkout.sessions.list()
    expired = v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": monthly.id, "quantity": 1}],
            "customer": cust.id,
            "success_url": "https://app.example/done",
            "discounts": [{"coupon": coupon.id}],
        }
    )
    v1.checkout.sessions.expire(expired.id)
    v1.billing_portal.sessions.create(
        params={"customer": done.customer, "return_url": "https://app.example"}
    )

    # Tax: manual rates, a customer's address and tax ids, automatic tax.
    rate = v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": 19, "inclusive": False, "country": "DE"}
    )
    v1.tax_rates.update(rate.id, params={"description": "German VAT"})
    v1.tax_rates.retrieve(rate.id)
    v1.tax_rates.list()
    address = {"line1": "Unter den Linden 1", "postal_code": "10117", "country": "DE"}
    taxed = make_customer(client, clock, email="tax@example.com", address=address)
    vat = v1.customers.tax_ids.create(taxed.id, params={"type": "eu_vat", "value": "DE123456789"})
    v1.customers.tax_ids.retrieve(taxed.id, vat.id)
    v1.customers.tax_ids.list(taxed.id)
    v1.customers.retrieve(taxed.id, params={"expand": ["tax_ids"]})
    v1.subscriptions.create(
        params={"customer": taxed.id, "items": [{"price": monthly.id, "tax_rates": [rate.id]}]}
    )
    automatic = v1.subscriptions.create(
        params={
            "customer": taxed.id,
            "items": [{"price": monthly.id}],
            "automatic_tax": {"enabled": True},
        }
    )
    assert v1.invoices.retrieve(automatic.latest_invoice).total_taxes
    v1.customers.tax_ids.delete(taxed.id, vat.id)

    # Deletions and the rest.
    v1.products.delete(v1.products.create(params={"name": "Gone"}).id)
    v1.customers.delete(v1.customers.create(params={"email": "gone@example.com"}).id)
    sim.wait_idle()
    for event in v1.events.list(params={"limit": 100}).auto_paging_iter():
        v1.events.retrieve(event.id)
    v1.accounts.retrieve_current()
    v1.accounts.retrieve(sim.store.settings.account_id)
    v1.test_helpers.test_clocks.delete(clock.id)
    for delivery in receiver.deliveries:
        checker.obj(delivery.event, "event", "webhook")

    assert not checker.problems, "\n".join(sorted(checker.problems))
    assert set(served_routes()) - checker.routes == set()
    assert set(RENDERED) <= set(checker.seen), set(RENDERED) - set(checker.seen)
