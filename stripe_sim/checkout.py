"""Checkout Sessions in subscription mode, and their completion (from the hosted page or a
headless ``POST`` to the session URL)."""

from __future__ import annotations

from typing import Any

from stripe_sim import checkout_discounts, objects
from stripe_sim.billing import ItemPlan
from stripe_sim.customers import attach
from stripe_sim.errors import invalid
from stripe_sim.events import emit, tracked
from stripe_sim.listing import LIST_PARAMS, paginate
from stripe_sim.params import as_dict, as_int, as_list, as_str, merge_metadata
from stripe_sim.render import list_object, public, render_expanded
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj
from stripe_sim.subscriptions import _quantity, _recurring_price, subscribe
from stripe_sim.tax import (
    CHECKOUT_TAX_PARAMS,
    checkout_location,
    checkout_tax_fields,
    checkout_tax_id,
    complete_checkout_tax,
    save_checkout_details,
)

router = Router()


def _line_items(ctx: Ctx) -> list[dict[str, Any]]:
    raw_items = as_list(ctx.params, "line_items")
    if not raw_items:
        raise invalid(
            "Missing required param: line_items.", param="line_items", code="parameter_missing"
        )
    items = []
    for i, raw in enumerate(raw_items):
        raw = raw if isinstance(raw, dict) else {}
        price = _recurring_price(ctx.store, raw.get("price"), f"line_items[{i}][price]")
        items.append(
            {"price": price["id"], "quantity": _quantity(raw, f"line_items[{i}][quantity]")}
        )
    return items


@router.route(
    "POST",
    "/v1/checkout/sessions",
    implements=(
        "mode=subscription",
        "ui_mode=hosted_page",
        "customer",
        "customer_email",
        "success_url",
        "cancel_url",
        "client_reference_id",
        # Not expires_at: sessions are not expired by time (only by /expire), so a chosen
        # expiry would be a promise the simulator does not keep.
        "locale",  # kept and shown; the simulated page is in English whatever it says
        "metadata",
        "payment_method_collection=always",
        "line_items.price",
        "line_items.quantity",
        "subscription_data.metadata",
        "subscription_data.trial_period_days",
        "subscription_data.trial_end",
        "subscription_data.description",
        "subscription_data.trial_settings.end_behavior.missing_payment_method",
        *CHECKOUT_TAX_PARAMS,
        "allow_promotion_codes",
        "discounts.coupon",
        "discounts.promotion_code",
        "expand",
    ),
)
def create_session(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    mode = as_str(params, "mode", required=True)
    if mode != "subscription":
        raise invalid("The simulator supports Checkout in mode=subscription only.", param="mode")
    cust_id = as_str(params, "customer")
    cust = store.require_referenced("customer", cust_id, "customer") if cust_id else None
    if cust_id and params.get("customer_email"):
        raise invalid(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    success_url = as_str(params, "success_url")
    if not success_url:
        raise invalid(
            "Missing required param: success_url.", param="success_url", code="parameter_missing"
        )
    items = _line_items(ctx)
    sub_data = as_dict(params, "subscription_data")
    now = store.clock_now(None)
    amount = sum(store.objects[i["price"]]["unit_amount"] * i["quantity"] for i in items)
    tax_fields = checkout_tax_fields(store, params, cust)
    currency = store.objects[items[0]["price"]]["currency"]
    allow_promotion_codes, discounts = checkout_discounts.read_create_params(
        store,
        params,
        cust=cust,
        amounts=[store.objects[i["price"]]["unit_amount"] * i["quantity"] for i in items],
        currency=currency,
        at=now,
    )
    session_id = store.new_id("cs_test_", 58)
    session = store.insert(
        {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": allow_promotion_codes,
            "allowed_payment_method_types": None,
            "amount_subtotal": amount,
            "amount_total": amount,
            "branding_settings": None,
            "cancel_url": as_str(params, "cancel_url"),
            "client_reference_id": as_str(params, "client_reference_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": cust["id"] if cust else None,
            "customer_account": None,
            "customer_creation": None if cust else "always",
            "customer_details": None,
            "customer_email": as_str(params, "customer_email"),
            "discounts": discounts,
            "excluded_payment_method_types": None,
            "expires_at": now + 24 * 3600,
            "integration_identifier": None,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": as_str(params, "locale"),
            "managed_payments": None,
            "metadata": merge_metadata({}, params),
            "mode": "subscription",
            "name_collection": None,
            "optional_items": None,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": as_str(params, "payment_method_collection") or "always",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "permissions": None,
            "phone_number_collection": {"enabled": False},
            "presentment_details": None,
            "recovered_from": None,
            "redirect_on_completion": None,
            "return_url": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": f"{store.base_url}/checkout/{session_id}",
            "wallet_options": None,
            **tax_fields,
            "_line_items": items,
            "_subscription_data": {
                "metadata": merge_metadata({}, sub_data),
                "trial_period_days": as_int(
                    sub_data, "trial_period_days", param="subscription_data[trial_period_days]"
                ),
                "trial_end": as_int(sub_data, "trial_end", param="subscription_data[trial_end]"),
                "description": sub_data.get("description"),
                "trial_settings": sub_data.get("trial_settings"),
            },
            "_discount_ids": [],  # the subscription's, once the customer has paid
        }
    )
    checkout_discounts.show_discount(store, session)
    return _render(ctx, session)


def _render(ctx: Ctx, session: Obj) -> Obj:
    included = ("line_items", "total_details.breakdown")
    out = render_expanded(ctx.store, session, [p for p in ctx.expand if p not in included])
    if "line_items" in ctx.expand:
        out["line_items"] = line_items_list(ctx, session)
    if "total_details.breakdown" in ctx.expand:
        out["total_details"]["breakdown"] = checkout_discounts.breakdown(ctx.store, session)
    return out


def line_items_list(ctx: Ctx, session: Obj) -> Obj:
    data = []
    discounts = checkout_discounts.line_discounts(ctx.store, session)
    for n, item in enumerate(session["_line_items"]):
        price = ctx.store.objects[item["price"]]
        amount = price["unit_amount"] * item["quantity"]
        data.append(
            {
                "id": f"li_{session['id'][8:30]}{n}",
                "object": "item",
                "adjustable_quantity": None,
                "amount_discount": discounts[n],
                "amount_subtotal": amount,
                "amount_tax": 0,
                "amount_total": amount - discounts[n],
                "currency": price["currency"],
                "description": ctx.engine.product_name(price),
                "metadata": {},
                "price": public(price),
                "quantity": item["quantity"],
            }
        )
    return list_object(f"/v1/checkout/sessions/{session['id']}/line_items", data)


@router.route("GET", "/v1/checkout/sessions/{cs_id}", implements=("expand",))
def retrieve_session(ctx: Ctx, cs_id: str) -> Obj:
    return _render(ctx, ctx.store.require("checkout.session", cs_id))


@router.route("GET", "/v1/checkout/sessions/{cs_id}/line_items", implements=())
def list_line_items(ctx: Ctx, cs_id: str) -> Obj:
    return line_items_list(ctx, ctx.store.require("checkout.session", cs_id))


@router.route(
    "GET",
    "/v1/checkout/sessions",
    implements=(*LIST_PARAMS, "customer", "subscription", "status", "payment_intent"),
)
def list_sessions(ctx: Ctx) -> Obj:
    sessions = ctx.store.of_kind("checkout.session")
    for key in ("customer", "subscription", "status", "payment_intent"):
        if ctx.params.get(key):
            sessions = [s for s in sessions if s.get(key) == ctx.params[key]]
    return paginate(ctx.store, sessions, ctx.params, "/v1/checkout/sessions", public)


@router.route("POST", "/v1/checkout/sessions/{cs_id}/expire", implements=())
def expire_session(ctx: Ctx, cs_id: str) -> Obj:
    session = ctx.store.require("checkout.session", cs_id)
    if session["status"] != "open":
        raise invalid(
            f"Only Checkout Sessions with a status of `open` can be expired. This "
            f"session has a status of `{session['status']}`."
        )
    session["status"] = "expired"
    emit(ctx.store, "checkout.session.expired", session)
    return public(session)


def complete(
    ctx: Ctx,
    session: Obj,
    pm_ref: str,
    email: str | None = None,
    name: str | None = None,
    *,
    address: Any = None,
    tax_id: Any = None,
) -> str:
    """What the hosted page does when the customer pays: customer, card, subscription, first
    invoice, ``checkout.session.completed``. Returns the success URL to redirect to.
    ``address`` and ``tax_id``: the billing address and tax id typed in (hashes as the form
    sends them). Raises StripeError (card errors, a missing address) and leaves the session
    open when the card fails."""
    store = ctx.store
    if session["status"] != "open":
        raise invalid(f"This Checkout Session is {session['status']}.")
    cust = store.get(session["customer"], "customer")
    billing_address = checkout_location(session, cust, address)
    collected_tax_id = checkout_tax_id(session, tax_id)
    created = cust is None
    if cust is not None and cust["email"]:
        # Stripe: a customer's email is prefilled and cannot be changed on the page.
        email = cust["email"]
    else:
        email = email or session["customer_email"]
    if cust is None:
        at = store.clock_now(None)
        cust = store.insert(objects.customer(store, now=at, clock=None))
        cust.update(email=email, name=name)
        emit(store, "customer.created", cust, at=at)
        session["customer"] = cust["id"]
    at = store.now_for(cust)
    if email and not cust["email"]:
        # Stripe: "If the Customer does not have a valid email, Checkout will set the email
        # entered during the session on the Customer."
        with tracked(store, cust, "customer.updated", at=at):
            cust["email"] = email
    ctx.touched_clocks.add(cust["test_clock"])
    save_checkout_details(
        store, session, cust, billing_address, collected_tax_id, name, created=created, at=at
    )
    pm = attach(store, pm_ref, cust, at)
    plan = ItemPlan()
    for item in session["_line_items"]:
        plan.items.append((None, store.objects[item["price"]], item["quantity"]))
    data = session["_subscription_data"]
    params: dict[str, Any] = {"metadata": data["metadata"], "default_payment_method": pm["id"]}
    if data["trial_period_days"]:
        params["trial_period_days"] = str(data["trial_period_days"])
    if data["trial_end"]:
        params["trial_end"] = str(data["trial_end"])
    if data["description"]:
        params["description"] = data["description"]
    if data["trial_settings"]:
        params["trial_settings"] = data["trial_settings"]
    if session["automatic_tax"]["enabled"]:
        params["automatic_tax"] = {"enabled": "true"}
    if session["discounts"]:
        params["discounts"] = checkout_discounts.subscription_discounts(session)
    sub = subscribe(ctx, cust, plan, params, "error_if_incomplete", at, on_session=True)
    invoice = store.objects[sub["latest_invoice"]]
    session.update(
        _discount_ids=list(sub["discounts"]),
        status="complete",
        payment_status="paid" if invoice["amount_due"] > 0 else "no_payment_required",
        subscription=sub["id"],
        invoice=invoice["id"],
        customer_details={
            "address": None,
            "business_name": None,
            "email": email,
            "individual_name": None,
            "name": name or cust["name"],
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
    )
    complete_checkout_tax(
        store, session, cust, billing_address, checkout_discounts.line_discounts(store, session)
    )
    emit(store, "checkout.session.completed", session, at=at)
    success = session["success_url"] or session["url"]
    return success.replace("{CHECKOUT_SESSION_ID}", session["id"])
